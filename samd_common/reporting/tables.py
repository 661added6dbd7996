"""Tables of an experiment sweep: results JSONs → long frame → mean ± std per label, task, dim.

Used by ``scripts/collect_results.py``. Each run is a ``{label, seed, record}`` dict whose record
is a :class:`~samd_common.reporting.results.RunRecord`. Rows are of three kinds: the teacher
(reference evaluations), the undistilled student (the runs' ``metrics_before``) and one label per
method or ablation (``SAMD+no-sam``), aggregated over seeds. Runs scored with the MTEB protocol
(SKD) get their own table (:func:`mteb_summary`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from samd_common.data.tasks import FAMILIES, TASKS
from samd_common.reporting.keys import key_dims, metric_key, parse_keys
from samd_common.reporting.results import RunRecord, is_suite, load_record

log = logging.getLogger(__name__)
TEACHER, STUDENT, DISTILLED = "teacher", "student", "distilled"
KIND_ORDER = {TEACHER: 0, STUDENT: 1, DISTILLED: 2}
STUDENT_LABEL = "student (undistilled)"
AVERAGES = ("avg ID", "avg OOD")
_TASKS = sorted(TASKS.values(), key=lambda t: (FAMILIES.index(t.family), t.ood))
TASK_COLUMNS = [(t.name + (" (OOD)" if t.ood else ""), f"{t.name}/{t.main_score}") for t in _TASKS]
COLUMNS = [
    *TASK_COLUMNS,
    *[(f"{f} {g.upper()}", f"avg/{f}/{g}") for f in FAMILIES for g in ("id", "ood")],
    *zip(AVERAGES, ("avg/all/id", "avg/all/ood"), strict=True),
]
KEY_TO_COLUMN = {key: name for name, key in COLUMNS}


def with_averages(metrics: dict[str, float]) -> dict[str, float]:
    """Copy of ``metrics`` with missing ``avg/{family|all}/{id|ood}@dim`` recomputed from tasks."""
    out = dict(metrics)
    for dim in key_dims(metrics):
        groups: dict[str, list[float]] = {}
        for t in _TASKS:
            value = metrics.get(metric_key(f"{t.name}/{t.main_score}", dim))
            if value is not None:
                group = "ood" if t.ood else "id"
                groups.setdefault(f"{t.family}/{group}", []).append(value)
                groups.setdefault(f"all/{group}", []).append(value)
        for group, values in groups.items():
            out.setdefault(metric_key(f"avg/{group}", dim), float(np.mean(values)))
    return out


def _read(path: Path) -> RunRecord | None:
    try:
        return load_record(path)
    except ValueError as err:  # truncated JSON, or not a results record
        log.warning("skip %s: unreadable, not counted (%s)", path, err)
        return None


def load_runs(results_dir: Path) -> list[dict]:
    """``{label, seed, record}`` per ``<label>/seed<k>/results.json`` (``_*`` folders skipped)."""
    runs = []
    for path in sorted(results_dir.glob("*/seed*/results.json")):
        label, seed = path.parent.parent.name, path.parent.name.removeprefix("seed")
        if label.startswith("_") or not seed.isdigit():
            continue
        if (record := _read(path)) is not None:
            runs.append({"label": label, "seed": int(seed), "record": record})
    return runs


def load_references(results_dir: Path) -> list[RunRecord]:
    """Reference evaluations ``_reference/*.json`` (``"method": "eval"``); other files ignored."""
    refs = [_read(p) for p in sorted((results_dir / "_reference").glob("*.json"))]
    return [r for r in refs if r and r.method == "eval" and r.metrics]


def records(metrics: dict[str, float], *, kind: str, label: str, seed: int) -> list[dict]:
    """One row (kind, label, seed, task, dim, value) per main-table value of one evaluation."""
    rows = []
    filled = with_averages(metrics)
    for key, k in parse_keys(filled):
        if k.head in KEY_TO_COLUMN:
            task = KEY_TO_COLUMN[k.head]
            rows.append(
                dict(kind=kind, label=label, seed=seed, task=task, dim=k.dim, value=filled[key])
            )
    return rows


def collect(runs: list[dict], refs: list[RunRecord]) -> pd.DataFrame:
    """Long frame of every suite value: teachers, undistilled students, distilled runs."""
    rows = []
    for ref in refs:
        rows += records(ref.metrics, kind=TEACHER, label=f"teacher ({ref.model})", seed=0)
    for run in runs:
        record, seed = run["record"], run["seed"]
        if is_suite(record.metrics):
            rows += records(record.metrics, kind=DISTILLED, label=run["label"], seed=seed)
            rows += records(record.metrics_before, kind=STUDENT, label=STUDENT_LABEL, seed=seed)
    return pd.DataFrame(rows, columns=["kind", "label", "seed", "task", "dim", "value"])


def summarize(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof=1, NaN for one seed) and n per (kind, label, task, dim), in table order."""
    out = long.groupby(["kind", "label", "task", "dim"])["value"]
    out = out.agg(mean="mean", std="std", n="count").reset_index()
    order = {name: i for i, (name, _) in enumerate(COLUMNS)}
    keys = [out.kind.map(KIND_ORDER), out.label.str.lower(), out.task.map(order), -out.dim]
    out = out.iloc[np.lexsort(keys[::-1])].reset_index(drop=True)
    spread = out.loc[out.kind == STUDENT, "std"].max()
    if spread > 0.01:
        log.warning("undistilled student scores differ across runs (std up to %.2f)", spread)
    return out


def at_dim(summary: pd.DataFrame, dim: int) -> pd.DataFrame:
    """Rows of ``summary`` at ``dim``; a teacher lacking ``dim`` shows its own largest dim."""
    parts = []
    for (kind, label), part in summary.groupby(["kind", "label"], sort=False):
        use = dim if kind != TEACHER or dim in set(part.dim) else int(part.dim.max())
        part = part[part.dim == use].copy()
        part["label"] = label if use == dim else f"{label} @{use}"
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def gap_share(value: float, before: float, teacher: float) -> float:
    """``100·(value − before) / (teacher − before)``: the share of the teacher's lead recovered.

    NaN where the teacher is not ahead of the undistilled student (nothing to recover, and a
    ratio over a negative lead would read a loss as a gain). Negative: the student lost ground.
    """
    gap = teacher - before
    return 100 * (value - before) / gap if gap > 0 else math.nan


def gap_table(summary: pd.DataFrame, dim: int) -> pd.DataFrame:
    """Per distilled label: avg ID / OOD at ``dim`` and the share of the gap it recovered.

    ``gap % = 100·(distilled − undistilled) / (teacher − undistilled)`` per average, from the
    seed means (:func:`gap_share`); the teacher is the first teacher row (at its own largest dim
    when it lacks ``dim``, as in :func:`at_dim`).

    Returns:
        Frame indexed by label with ``avg ID``, ``avg ID gap %``, ``avg OOD``, ``avg OOD gap %``;
        empty without a teacher and an undistilled row at ``dim``.
    """
    data = at_dim(summary, dim)
    data = data[data.task.isin(AVERAGES)]
    teachers = data[data.kind == TEACHER]
    teacher = teachers[teachers.label == teachers.label.iloc[0]] if len(teachers) else teachers
    student = data[data.kind == STUDENT]
    ref = {TEACHER: teacher.groupby("task")["mean"].first()}
    ref[STUDENT] = student.groupby("task")["mean"].first()
    rows = []
    for label, part in data[data.kind == DISTILLED].groupby("label", sort=False):
        row: dict = {"label": label}
        for avg in AVERAGES:
            value = part.loc[part.task == avg, "mean"]
            if value.empty or avg not in ref[TEACHER] or avg not in ref[STUDENT]:
                continue
            row[avg] = float(value.iloc[0])
            row[f"{avg} gap %"] = gap_share(row[avg], ref[STUDENT][avg], ref[TEACHER][avg])
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.set_index("label") if len(frame.columns) > 1 else pd.DataFrame()


def cell(mean: float, std: float, n: int, with_std: bool = True, bold: bool = False) -> str:
    """``"72.00 ± 2.00"`` (just the mean for one seed or ``with_std=False``), optionally bold."""
    if pd.isna(mean):
        return "-"
    text = f"{mean:.2f} ± {std:.2f}" if with_std and n >= 2 and not pd.isna(std) else f"{mean:.2f}"
    return f"**{text}**" if bold else text


def to_markdown(frame: pd.DataFrame) -> str:
    """Markdown table of a frame of strings; the index becomes the first column."""
    lines = [
        "| " + " | ".join([str(frame.index.name or "")] + list(map(str, frame.columns))) + " |"
    ]
    lines.append("|" + "---|" * (len(frame.columns) + 1))
    lines += ["| " + " | ".join(map(str, [i, *row])) + " |" for i, row in frame.iterrows()]
    return "\n".join(lines)


def main_table(summary: pd.DataFrame, dim: int) -> tuple[str, pd.DataFrame]:
    """Per-task table at ``dim``: (markdown with best distilled values bold, CSV frame)."""
    data = at_dim(summary, dim)
    names = [c for c, _ in COLUMNS if c in set(data.task)]
    labels = list(dict.fromkeys(data.label))
    kinds = data.drop_duplicates("label").set_index("label")["kind"]
    mean, std, n = (
        data.pivot(index="label", columns="task", values=v).reindex(index=labels, columns=names)
        for v in ("mean", "std", "n")
    )
    distilled = [label for label in labels if kinds[label] == DISTILLED]
    best = mean.loc[distilled].round(2).max()
    cells = pd.DataFrame(index=pd.Index(labels, name="model"), columns=[*names, "n seeds"])
    for label in labels:
        ours = kinds[label] == DISTILLED
        for c in names:
            m, s, k = mean.at[label, c], std.at[label, c], n.at[label, c]
            cells.at[label, c] = cell(m, s, k, ours, ours and round(m, 2) == best[c])
        cells.at[label, "n seeds"] = str(int(n.loc[label].max())) if ours else "-"
    stats = (("mean", mean), ("std", std))
    wide = pd.DataFrame({f"{c} {stat}": frame[c] for c in names for stat, frame in stats})
    wide["n"] = n.max(axis=1)
    return to_markdown(cells), wide.rename_axis("label")


def matryoshka_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Avg ID / OOD per dim per row, plus % of the row's full-dim value kept at d/2, d/4, d/8."""
    rows = []
    for label, part in summary[summary.task.isin(AVERAGES)].groupby("label", sort=False):
        for group in AVERAGES:
            means = part[part.task == group].set_index("dim")["mean"]
            if means.empty:
                continue
            full = int(means.index.max())
            row = {"label": label, "group": group, **{d: means[d] for d in means.index}}
            for k in (2, 4, 8):
                kept = full // k if full % k == 0 and full // k in means.index else None
                row[f"d/{k} %"] = np.nan if kept is None else 100 * means[kept] / means[full]
            rows.append(row)
    frame = pd.DataFrame(rows)
    dims = sorted((c for c in frame.columns if isinstance(c, (int, np.integer))), reverse=True)
    return frame[["label", "group", *dims, "d/2 %", "d/4 %", "d/8 %"]]


def _mteb_values(metrics: dict[str, float]):
    """``(flavour, column, value)`` of each main-split MTEB accuracy key ``flavour/task/…@dim``."""
    for key, k in parse_keys(metrics):
        flavour, _, name = k.name.partition("/")
        if k.metric == "accuracy" and name and not name.endswith("/validation"):
            yield flavour, f"{name}@{k.dim}", metrics[key]


def mteb_summary(runs: list[dict], refs: list[RunRecord] = ()) -> pd.DataFrame:
    """MTEB-protocol runs (SKD): mean/std/n per ``<label>/<flavour>`` × ``<task>@<dim>``.

    ``refs`` (reference evaluations, :func:`load_references`) with MTEB keys
    (``"{task}/accuracy@{dim}"``, e.g. ``scripts/evaluate.py --protocol mteb --output``) come
    first, as ``teacher (<model>)`` rows.
    """
    rows = []
    for ref in refs:
        if not is_suite(ref.metrics):  # un-prefixed MTEB keys: give them a flavour
            prefixed = {f"teacher/{k}": v for k, v in ref.metrics.items()}
            label = f"teacher ({ref.model})"
            for _, column, value in _mteb_values(prefixed):
                rows.append(dict(label=label, column=column, seed=0, value=value))
    for run in runs:
        record = run["record"]
        if is_suite(record.metrics):
            continue
        for metrics in (record.metrics, record.metrics_before):
            for flavour, column, value in _mteb_values(metrics):
                if flavour != "avg":  # avg/all/id@… is the suite-wide headline key
                    label = f"{run['label']}/{flavour}"
                    rows.append(dict(label=label, column=column, seed=run["seed"], value=value))
    if not rows:
        return pd.DataFrame(columns=["label", "column", "mean", "std", "n"])
    grouped = pd.DataFrame(rows).groupby(["label", "column"], sort=False)["value"]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()


COST_COLUMNS = {  # timings key → column of the cost table
    "train_s": "train s",
    "step_median_s": "median step s",
    "total_s": "total s",
    "peak_rss_mb": "peak RSS MB",
}


def cost_table(runs: list[dict]) -> pd.DataFrame:
    """Measured cost per label: number of runs and the min–max of each ``timings`` value.

    ``total s`` includes what a run built for later ones (the teacher cache of its seed, the
    undistilled student's memoised evaluation), so its range is wide; values are wall-clock of
    the machine that ran them.
    """
    rows = []
    for run in runs:
        timings = run["record"].timings
        if "train_s" in timings:
            rows.append(
                {"label": run["label"], **{c: timings.get(k) for k, c in COST_COLUMNS.items()}}
            )
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).groupby("label", sort=False)

    def span(values: pd.Series) -> str:
        lo, hi = values.min(), values.max()
        fmt = ".1f" if hi < 10 else ".0f"
        if pd.isna(lo):
            return "-"
        return f"{lo:{fmt}}" if round(lo) == round(hi) else f"{lo:{fmt}}–{hi:{fmt}}"

    out = frame.agg({c: span for c in COST_COLUMNS.values()})
    out.insert(0, "runs", frame.size())
    return out.sort_index(key=lambda s: s.str.lower()).rename_axis("label")
