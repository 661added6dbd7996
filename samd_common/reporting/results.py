"""The run record: one JSON per run, written atomically, read by every table, plot and script.

:class:`RunRecord` is what a results JSON holds and what ``experiment.run_experiment`` returns:
the config, the environment (versions, git commit), the metrics (keys as in
:mod:`~samd_common.reporting.keys`) of the distilled and of the undistilled student, the
evaluated dims, the timings, the training summary and the training curve (``history``, every
``log_every``-th step, :func:`~samd_common.training.history.thin_history`) of one run, plus a
method's own fields (``extra``: the corpus, SKD's dictionaries, …). Files written before this
type or before histories load too (fields they lack are empty). :func:`results_table` shows one
record: the suite's per-task table, or the MTEB table of a run scored with that protocol (SKD).
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from samd_common.data.tasks import TASKS
from samd_common.files import write_json_atomic
from samd_common.reporting.keys import key_dims, metric_key, parse_keys

SUITE_HEADS = frozenset(f"{t.name}/{t.main_score}" for t in TASKS.values())


@dataclass
class RunRecord:
    """One run's results JSON (``record_results`` writes it, ``load_record`` reads it)."""

    method: str  # registry key; "eval" for a plain evaluation (scripts/evaluate.py)
    model: str  # the evaluated model: the student of a distillation run
    config: dict[str, Any] = field(default_factory=dict)  # dataclasses.asdict of the run config
    metrics: dict[str, float] = field(default_factory=dict)  # the distilled student's scores
    metrics_before: dict[str, float] = field(default_factory=dict)  # the undistilled student's
    dims: list[int] = field(default_factory=list)  # evaluated Matryoshka dims of ``metrics``
    depths: list[int] = field(default_factory=list)  # layer counts of ``depth_grid`` (ESE)
    depth_grid: dict[str, float] = field(default_factory=dict)  # "{key}/L{k}" (ESE)
    teacher: str | None = None  # the teacher of a distillation run
    students: dict[str, str] = field(default_factory=dict)  # saved student folder(s) by name
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, peak RSS
    train: dict[str, Any] = field(default_factory=dict)  # steps, skipped_nonfinite, last step
    # The training curve: {"log_every": n, "steps": {"step": [...], "lr": [...], "loss": [...],
    # <each logged term>: [...]}} (training.history.thin_history); empty for older files.
    history: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)  # versions, device, git commit, time
    extra: dict[str, Any] = field(default_factory=dict)  # the method's own fields (top level)
    results_path: Path | None = None  # where the JSON lives (not written into it)

    def to_json(self) -> dict[str, Any]:
        """The JSON payload: every field at the top level, empty optional ones left out."""
        core = ("method", "model", "config", "env", "metrics", "timings")
        payload = {name: getattr(self, name) for name in core}
        payload.update(metrics_before=self.metrics_before, dims=self.dims)
        for name in ("depths", "depth_grid", "teacher", "students", "train", "history"):
            if getattr(self, name):
                payload[name] = getattr(self, name)
        return {**payload, **self.extra}

    @classmethod
    def from_json(cls, payload: dict[str, Any], path: str | Path | None = None) -> RunRecord:
        """A record from a results payload (any version); unknown keys go to ``extra``."""
        known = {f.name for f in fields(cls)} - {"extra", "results_path"}
        values = {k: v for k, v in payload.items() if k in known and v is not None}
        extra = {k: v for k, v in payload.items() if k not in known}
        values.setdefault("method", "run")
        values.setdefault("model", "")
        return cls(**values, extra=extra, results_path=None if path is None else Path(path))


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


def record_results(record: RunRecord, path: str | Path | None = None) -> Path:
    """Write ``record`` (with the current environment) as JSON, atomically; return its path.

    ``path`` defaults to ``record.results_path``, which is set to where the file went.
    """
    target = path or record.results_path
    if target is None:
        raise ValueError("record_results needs a path: pass path= or set record.results_path.")
    record.env = environment_info()
    record.results_path = write_json_atomic(target, record.to_json())
    return record.results_path


def load_record(path: str | Path) -> RunRecord:
    """Read a results JSON written by ``record_results`` (or an earlier version of it).

    Raises:
        ValueError: the file is not JSON (e.g. truncated) or not a results record.
    """
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(payload, dict) or not isinstance(payload.get("metrics"), dict):
        raise ValueError("not a results record (a JSON object with 'metrics')")
    try:
        return RunRecord.from_json(payload, path)
    except TypeError as err:  # a required field is missing
        raise ValueError(f"not a results record ({err})") from None


def is_suite(metrics: dict[str, float]) -> bool:
    """Whether ``metrics`` holds 9-task suite keys (an MTEB-protocol run holds MTEB keys)."""
    return any(k.head in SUITE_HEADS for _, k in parse_keys(metrics))


def suite_table(metrics: dict[str, float], dims: list[int] | None = None) -> pd.DataFrame:
    """Main score per task (rows, grouped by family, in-domain then OOD) × dim (columns)."""
    dims = dims or key_dims(metrics)

    def row(family: str, task: str, metric: str, head: str) -> dict[str, Any]:
        values = {str(d): metrics.get(metric_key(head, d)) for d in dims}
        return {"family": family, "task": task, "metric": metric, **values}

    rows = []
    for family in ("classification", "pair", "sts"):
        for ood in (False, True):
            for t in TASKS.values():
                head = f"{t.name}/{t.main_score}"
                if t.family == family and t.ood == ood and metric_key(head, dims[0]) in metrics:
                    rows.append(row(family, t.name + (" (OOD)" if ood else ""), t.main_score, head))
        for group in ("id", "ood"):
            if metric_key(f"avg/{family}/{group}", dims[0]) in metrics:
                rows.append(row(family, f"avg {family} {group}", "mean", f"avg/{family}/{group}"))
    for group in ("id", "ood"):
        if metric_key(f"avg/all/{group}", dims[0]) in metrics:
            rows.append(row("all", f"avg all {group}", "mean", f"avg/all/{group}"))
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


def mteb_table(record: RunRecord) -> pd.DataFrame:
    """Main-split MTEB accuracy per task: the undistilled student next to each scored encoder.

    Rows are tasks (``task/subset`` for multi-subset tasks); columns ``before@{dim}`` (keys
    ``student/…`` of ``metrics_before``) and ``{encoder}@{dim}`` for each prefix of ``metrics``
    (SKD: ``replace``, ``continuous``).
    """
    prefixes = [k.head.split("/", 1)[0] for _, k in parse_keys(record.metrics)]
    sources = [("student", "before", record.metrics_before)]
    sources += [(p, p, record.metrics) for p in dict.fromkeys(prefixes) if p != "avg"]
    rows: dict[str, dict[str, float]] = {}
    for prefix, column, metrics in sources:
        for key, k in parse_keys(metrics):
            if k.metric != "accuracy" or not k.name.startswith(f"{prefix}/"):
                continue
            task = k.name[len(prefix) + 1 :]
            if not task.startswith("avg/") and not task.endswith("/validation"):
                rows.setdefault(task, {})[f"{column}@{k.dim}"] = metrics[key]
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("task").round(2)


def results_table(record: RunRecord) -> pd.DataFrame:
    """The table of one run: :func:`comparison_table` for the suite, :func:`mteb_table` else."""
    if not is_suite(record.metrics):
        return mteb_table(record)
    dims = record.dims or key_dims(record.metrics)
    return comparison_table(record.metrics, record.metrics_before, dims, record.method)


def format_table(metrics: dict[str, float], dims: list[int] | None = None) -> str:
    """``suite_table`` as fixed-width text with two decimals."""
    table = suite_table(metrics, dims)
    return table.to_string(index=False, float_format=lambda v: f"{v:6.2f}", na_rep="-")
