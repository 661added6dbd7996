"""Learning curves and ablations of a dev-protocol sweep: score against the training budget.

    python scripts/learning_curve.py results/bench-dev/runs [--out results/bench-dev] [--dim 384]

Input: an archive of ``scripts/run_experiments.py`` runs whose tags name the budget,
``<method>+s<steps>`` (e.g. ``SAMD+s1000``, run with ``--tag s1000 --param max_steps=1000``) and
``<method>+s<steps>-<variant>`` for an ablation at that budget (``SAMD+s1000-no-span``); the
teacher's row, if present, from ``_reference/teacher-*.json`` (``scripts/evaluate.py --split
dev``). The undistilled student is every run's ``metrics_before``.

Output (in OUT, default the archive's parent):

* ``learning_curve.csv`` — one row per run: method, variant, steps, seed, avg ID / OOD at the
  dim, the undistilled student's, the gain and the share of the teacher–student gap recovered.
* ``learning_curve.png`` — avg ID and avg OOD against steps (log scale), one line per method,
  the undistilled student and the teacher as horizontal lines.
* ``learning_curve.md`` — the same numbers as a table (stdout too).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from samd_common.reporting.results import load_record  # noqa: E402
from samd_common.reporting.tables import to_markdown  # noqa: E402

log = logging.getLogger("learning_curve")
LABEL = re.compile(r"^(?P<method>[^+]+)\+s(?P<steps>\d+)(?:-(?P<variant>.+))?$")
AVERAGES = {"id": "avg/all/id@{dim}", "ood": "avg/all/ood@{dim}"}


def gap_share(value: float, before: float, teacher: float | None) -> float | None:
    """``(value − before) / (teacher − before)``: the share of the gap recovered (None: no gap).

    Example:
        >>> gap_share(80.0, 76.0, 84.0)
        0.5
    """
    if teacher is None or teacher == before:
        return None
    return (value - before) / (teacher - before)


def teacher_scores(archive: Path, dim: int) -> dict[str, float]:
    """The teacher's avg ID / OOD (at ``dim``, else its largest) from ``_reference``; {} if none."""
    for path in sorted((archive / "_reference").glob("teacher-*.json")):
        if path.stem.endswith("-mteb"):
            continue
        metrics = load_record(path).metrics
        out = {}
        for name, key in AVERAGES.items():
            keys = [k for k in metrics if k.startswith(key.split("@")[0] + "@")]
            exact = key.format(dim=dim)
            pick = exact if exact in metrics else max(keys, key=lambda k: int(k.split("@")[1]))
            out[name] = metrics[pick]
        return out
    return {}


def collect(archive: Path, dim: int) -> pd.DataFrame:
    """One row per budget-tagged run of ``archive`` (see the module docstring)."""
    teacher = teacher_scores(archive, dim)
    rows = []
    for path in sorted(archive.glob("*/seed*/results.json")):
        match = LABEL.match(path.parent.parent.name)
        if not match:
            continue
        record = load_record(path)
        row = {
            "method": match["method"],
            "variant": match["variant"] or "",
            "steps": int(match["steps"]),
            "seed": int(path.parent.name.removeprefix("seed")),
        }
        for name, key in AVERAGES.items():
            after = record.metrics[key.format(dim=dim)]
            before = (record.metrics_before or {}).get(key.format(dim=dim), float("nan"))
            row.update({name: after, f"{name}_before": before, f"{name}_gain": after - before})
            row[f"{name}_gap"] = gap_share(after, before, teacher.get(name))
        row["train_s"] = (record.timings or {}).get("train_s")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values(["variant", "method", "steps", "seed"], ignore_index=True)
    frame.attrs["teacher"] = teacher
    return frame


def plot(frame: pd.DataFrame, dim: int, path: Path) -> None:
    """Avg ID and OOD against steps, one line per method (plain variants only)."""
    plain = frame[frame["variant"] == ""]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for ax, name in zip(axes, AVERAGES, strict=True):
        for method, rows in plain.groupby("method"):
            mean = rows.groupby("steps")[name].mean()
            ax.plot(mean.index, mean.values, marker="o", label=method)
        ax.axhline(frame[f"{name}_before"].mean(), color="grey", ls="--", label="undistilled")
        if name in frame.attrs["teacher"]:
            ax.axhline(frame.attrs["teacher"][name], color="black", ls=":", label="teacher")
        ax.set(xscale="log", xlabel="optimizer steps", ylabel=f"avg {name.upper()} @{dim} (dev)")
        ax.set_xticks(
            sorted(frame["steps"].unique()), labels=map(str, sorted(frame["steps"].unique()))
        )
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Write the curve CSV, figure and table; exit code 2 when no budget-tagged run is found."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("archive", type=Path, help="folder of <method>+s<steps>/seed<k>/results.json")
    p.add_argument("--out", type=Path, help="output folder (default: the archive's parent)")
    p.add_argument("--dim", type=int, default=384, help="embedding dim of the averages")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    frame = collect(args.archive, args.dim)
    if frame.empty:
        log.error("no <method>+s<steps> runs under %s", args.archive)
        return 2
    out = args.out or args.archive.parent
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "learning_curve.csv", index=False, float_format="%.4f")
    plot(frame, args.dim, out / "learning_curve.png")
    cols = ["method", "variant", "steps", "seed", "id", "id_gain", "id_gap", "ood", "ood_gain"]
    cols += ["ood_gap", "train_s"]
    shown = frame[cols].map(lambda v: f"{v:.2f}" if isinstance(v, float) else v)
    shown = shown.fillna("-")
    table = to_markdown(shown.set_index("method"))
    teacher = frame.attrs["teacher"]
    head = f"Dev protocol, avg over tasks @{args.dim}; undistilled ID "
    head += f"{frame['id_before'].mean():.2f} / OOD {frame['ood_before'].mean():.2f}"
    head += f"; teacher ID {teacher['id']:.2f} / OOD {teacher['ood']:.2f}" if teacher else ""
    (out / "learning_curve.md").write_text(f"{head}\n\n{table}\n", encoding="utf-8")
    sys.stdout.write(f"{head}\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
