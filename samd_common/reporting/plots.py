"""Plots of run records (``results.RunRecord``, or the JSON dict it is read from).

* ``plot_dims(results)`` — main score vs embedding dim, one panel per task family, an in-domain
  (solid) and an OOD (dashed) line per run; one or several runs, so the notebooks and the results
  collector draw the same figure.
* ``plot_depth_grid(result)`` — layers × dims heat map of an elastic-depth (ESE) run.
* ``plot_mteb(result)`` — per-task MTEB accuracy of a run scored with that protocol (SKD).
* ``plot_sweep_dims`` / ``plot_sweep_tasks`` — the figures of a sweep's summary (collect_results).

Functions return the ``matplotlib`` figure and save a PNG when given a path. They never pick a
backend: notebooks show figures inline, scripts and tests use Agg.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samd_common.data.tasks import FAMILIES
from samd_common.reporting.keys import key_depths, key_dims, metric_key
from samd_common.reporting.results import RunRecord, mteb_table
from samd_common.reporting.tables import AVERAGES, DISTILLED, TASK_COLUMNS, TEACHER, at_dim

GROUPS = {"id": ("in-domain", "-", "o"), "ood": ("OOD", "--", "s")}


Result = RunRecord | dict[str, Any]


def _record(result: Result) -> RunRecord:
    return result if isinstance(result, RunRecord) else RunRecord.from_json(result)


def _dims(record: RunRecord) -> list[int]:
    """Evaluated dims of a run (``dims`` field, else parsed from ``avg/all/id@{d}`` keys)."""
    if record.dims:
        return sorted((int(d) for d in record.dims), reverse=True)
    return key_dims(record.metrics, head="avg/all/id")


def _labels(results: list[RunRecord]) -> list[str]:
    """One legend label per run: the method, plus model/seed where methods repeat."""
    methods = [r.method for r in results]
    labels = []
    for r, method in zip(results, methods, strict=True):
        if methods.count(method) == 1:
            labels.append(method)
            continue
        student = Path(str(r.config.get("student") or r.model or "")).name
        labels.append(f"{method} ({student}, seed {r.config.get('seed', '?')})")
    return labels


def _curve(metrics: dict[str, float], family: str, group: str, dims: list[int]) -> list[float]:
    return [metrics.get(metric_key(f"avg/{family}/{group}", d), np.nan) for d in dims]


def plot_dims(
    results: Result | Sequence[Result],
    path: str | Path | None = None,
    before: bool = True,
    title: str | None = None,
):
    """Average main score vs embedding dim, one panel per task family.

    Args:
        results: one run record (or results JSON dict) or several; each needs ``metrics``
            with ``avg/{family}/{id|ood}@{dim}`` keys and, ideally, ``dims`` and ``method``.
        path: save the figure there as PNG (parent folders are created).
        before: also draw the undistilled student (``metrics_before`` of the first run that has
            them), in grey.
        title: figure title; default lists the methods.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    import matplotlib.pyplot as plt

    runs = [_record(r) for r in ([results] if isinstance(results, (dict, RunRecord)) else results)]
    if not runs:
        raise ValueError("plot_dims needs at least one results dict.")
    fig, axes = plt.subplots(1, len(FAMILIES), figsize=(4.2 * len(FAMILIES), 3.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = [
        (label, run.metrics, _dims(run), colors[i % len(colors)])
        for i, (label, run) in enumerate(zip(_labels(runs), runs, strict=True))
    ]
    first_before = next((r for r in runs if r.metrics_before), None)
    if before and first_before is not None:
        lines.insert(0, ("before", first_before.metrics_before, _dims(first_before), "0.55"))
    all_dims = sorted({d for _, _, dims, _ in lines for d in dims})
    for ax, family in zip(axes[0], FAMILIES, strict=True):
        for label, metrics, dims, color in lines:
            for group, (group_name, style, marker) in GROUPS.items():
                ys = _curve(metrics, family, group, dims)
                if all(np.isnan(ys)):
                    continue
                ax.plot(
                    dims, ys, style, color=color, marker=marker, ms=4, label=f"{label} {group_name}"
                )
        ax.set_title(family)
        ax.set_xscale("log", base=2)
        if all_dims:
            ax.set_xticks(all_dims, [str(d) for d in all_dims], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("embedding dim (Matryoshka prefix)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("average main score (×100)")
    handles, labels = axes[0, -1].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        axes[0, -1].legend(handles, labels, fontsize=7, loc="best")
    fig.suptitle(title or ", ".join(_labels(runs)), fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return fig


def depth_grid_matrix(
    result: Result, group: str = "all/id"
) -> tuple[list[int], list[int], np.ndarray]:
    """Layers × dims matrix of ``avg/{group}@{dim}/L{k}`` from a run's ``depth_grid``.

    Returns:
        ``(depths, dims, values)`` with ``values`` (len(depths), len(dims)), NaN where missing.
    """
    record = _record(result)
    grid = record.depth_grid
    if not grid:
        raise ValueError(
            "This result has no depth_grid: only elastic-depth methods (ESE) are evaluated by "
            "depth (run_experiment stores the grid when MethodSpec.elastic_depth is True)."
        )
    depths = sorted(int(k) for k in record.depths) or key_depths(grid)
    dims = _dims(record) or key_dims(grid, depth=True)
    values = np.array(
        [[grid.get(metric_key(f"avg/{group}", d, k), np.nan) for d in dims] for k in depths],
        dtype=float,
    )  # (depths, dims)
    return depths, dims, values


def plot_depth_grid(result: Result, path: str | Path | None = None, title: str | None = None):
    """Heat map of the average main score over (number of layers) × (embedding dim).

    Two panels, in-domain and OOD averages over all tasks; each cell is annotated.

    Args:
        result: a run record (or results JSON dict) with ``depth_grid``, ``depths``, ``dims``.
        path: save the figure there as PNG.
        title: figure title; default ``"{method}: depth × dim"``.

    Returns:
        The ``matplotlib.figure.Figure``.
    """
    import matplotlib.pyplot as plt

    record = _record(result)
    panels = [(name, *depth_grid_matrix(record, f"all/{g}")) for g, (name, _, _) in GROUPS.items()]
    n_depths, n_dims = panels[0][3].shape
    width, height = 2.2 + 0.7 * n_dims, 1.8 + 0.45 * n_depths  # one panel, inches
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height))
    for ax, (name, depths, dims, values) in zip(np.atleast_1d(axes), panels, strict=True):
        dims, values = dims[::-1], values[:, ::-1]  # small dims left, as in plot_dims
        finite = values[np.isfinite(values)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        image = ax.imshow(values, cmap="viridis", aspect="auto", origin="lower", vmin=lo, vmax=hi)
        for (row, col), v in np.ndenumerate(values):
            if np.isfinite(v):
                dark = v < lo + 0.6 * (hi - lo)
                color = "white" if dark else "black"
                ax.text(col, row, f"{v:.1f}", ha="center", va="center", fontsize=7, color=color)
        ax.set_xticks(range(len(dims)), [str(d) for d in dims], fontsize=7)
        ax.set_yticks(range(len(depths)), [str(k) for k in depths], fontsize=7)
        ax.set_xlabel("embedding dim")
        ax.set_ylabel("layers")
        ax.set_title(f"{name} average")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(title or f"{record.method}: depth × dim", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return fig


def plot_mteb(result: Result, path: str | Path | None = None):
    """Per-task MTEB accuracy: the undistilled student next to each scored encoder (bars).

    Reads :func:`~samd_common.reporting.results.mteb_table`; ``path`` saves a PNG.
    """
    import matplotlib.pyplot as plt

    table = mteb_table(_record(result))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(table), 3.2))
    table.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("MTEB accuracy")
    ax.set_xticklabels([t.removesuffix("Classification") for t in table.index], fontsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return fig


def _save(fig, path: str | Path | None) -> None:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)


def plot_sweep_dims(summary, path: Path) -> None:
    """Sweep summary (``report.summarize``): avg ID and OOD vs dim (log2), a line per label.

    Teacher and undistilled student are grey reference lines (dotted when a single dim).
    """
    import matplotlib.pyplot as plt

    dims = sorted(set(summary.loc[summary.kind == DISTILLED, "dim"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, group, (name, _, marker) in zip(axes, AVERAGES, GROUPS.values(), strict=True):
        data = summary[summary.task == group]
        for (kind, label), part in data.groupby(["kind", "label"], sort=False):
            shown = part[part.dim.isin(dims)]
            color = "0.2" if kind == TEACHER else "0.55"
            if kind == DISTILLED:
                ax.errorbar(
                    shown.dim,
                    shown["mean"],
                    yerr=shown["std"].fillna(0),
                    marker=marker,
                    ms=4,
                    capsize=2,
                    label=label,
                )
            elif len(shown) >= 2:
                ax.plot(shown.dim, shown["mean"], "--", color=color, label=label)
            else:  # a reference with fewer shared dims: a level at its largest (shared) dim
                top = (shown if len(shown) else part).sort_values("dim").iloc[-1]
                ax.axhline(top["mean"], ls=":", color=color, label=f"{label} @{top.dim}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims], fontsize=7)
        ax.minorticks_off()
        ax.set(title=f"{name} average", xlabel="embedding dim (Matryoshka prefix)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("average main score (×100)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sweep_tasks(summary, dim: int, path: Path) -> None:
    """Sweep summary: grouped bars per task at ``dim``, a bar per row, error bars = seed std."""
    import matplotlib.pyplot as plt

    data = at_dim(summary, dim)
    tasks = [c for c, _ in TASK_COLUMNS if c in set(data.task)]
    labels = list(dict.fromkeys(data.label))
    width, x = 0.8 / len(labels), np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(min(14.0, max(7.0, 0.2 * len(tasks) * len(labels) + 2)), 4))
    for i, label in enumerate(labels):
        part = data[data.label == label].set_index("task").reindex(tasks)
        ours = (part.kind == DISTILLED).any()
        ax.bar(
            x + (i - (len(labels) - 1) / 2) * width,
            part["mean"],
            width,
            label=label,
            yerr=part["std"].fillna(0) if ours else None,
            capsize=2,
            color=None if ours else ("0.25" if (part.kind == TEACHER).any() else "0.6"),
        )
    ax.set_xticks(x, tasks, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="main score (×100)", title=f"per-task main score @{dim}")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
