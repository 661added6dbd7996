"""Results: one JSON per run, written atomically, and the tables built from it.

A results JSON holds the config, the environment (versions, git commit), the metrics and the
timings of one run.
"""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from samd_common.data.tasks import TASKS
from samd_common.files import write_json_atomic


def git_commit() -> str | None:
    """Commit hash of the checkout holding this package (None outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info() -> dict[str, Any]:
    """Versions of python/torch/transformers/peft, the device and the git commit."""
    import torch
    import transformers

    try:
        import peft

        peft_version = peft.__version__
    except ImportError:
        peft_version = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft_version,
        "gpu": gpu,
        "cpu_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def record_results(
    path: str | Path,
    *,
    method: str,
    model: str,
    config: dict[str, Any],
    metrics: dict[str, float],
    timings: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write one run's results JSON (atomically) and return its path."""
    payload = {
        "method": method,
        "model": model,
        "config": config,
        "env": environment_info(),
        "metrics": metrics,
        "timings": timings or {},
        **(extra or {}),
    }
    return write_json_atomic(path, payload)


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results JSON written by ``record_results``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def suite_table(metrics: dict[str, float], dims: list[int] | None = None) -> pd.DataFrame:
    """Main score per task (rows, grouped by family, in-domain then OOD) × dim (columns)."""
    dims = dims or sorted({int(k.rsplit("@", 1)[1]) for k in metrics if "@" in k}, reverse=True)
    rows = []
    for family in ("classification", "pair", "sts"):
        for ood in (False, True):
            specs = [t for t in TASKS.values() if t.family == family and t.ood == ood]
            for t in specs:
                key = f"{t.name}/{t.main_score}"
                if f"{key}@{dims[0]}" in metrics:
                    rows.append(
                        {
                            "family": family,
                            "task": t.name + (" (OOD)" if ood else ""),
                            "metric": t.main_score,
                            **{str(d): metrics.get(f"{key}@{d}") for d in dims},
                        }
                    )
        for group in ("id", "ood"):
            avg = f"avg/{family}/{group}"
            if f"{avg}@{dims[0]}" in metrics:
                rows.append(
                    {
                        "family": family,
                        "task": f"avg {family} {group}",
                        "metric": "mean",
                        **{str(d): metrics.get(f"{avg}@{d}") for d in dims},
                    }
                )
    for group in ("id", "ood"):
        if f"avg/all/{group}@{dims[0]}" in metrics:
            rows.append(
                {
                    "family": "all",
                    "task": f"avg all {group}",
                    "metric": "mean",
                    **{str(d): metrics.get(f"avg/all/{group}@{d}") for d in dims},
                }
            )
    return pd.DataFrame(rows)


def comparison_table(
    after: dict[str, float], before: dict[str, float] | None, dims: list[int], method: str
) -> pd.DataFrame:
    """Main score per task × dim, ``before@d`` (undistilled student) next to ``{method}@d``."""
    keys = ["family", "task", "metric"]
    table = suite_table(after, dims).set_index(keys)
    table.columns = [f"{method}@{d}" for d in table.columns]
    if before:
        old = suite_table(before, dims).set_index(keys)
        old.columns = [f"before@{d}" for d in old.columns]
        order = [c for d in dims for c in (f"before@{d}", f"{method}@{d}")]
        table = old.join(table)[order]
    return table.round(2)


def format_table(metrics: dict[str, float], dims: list[int] | None = None) -> str:
    """``suite_table`` as fixed-width text with two decimals."""
    table = suite_table(metrics, dims)
    return table.to_string(index=False, float_format=lambda v: f"{v:6.2f}", na_rep="-")
