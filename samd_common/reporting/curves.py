"""Training curves: the ``history`` of run records, alone or a sweep's overlaid.

A record's ``history`` (``training.history.thin_history``) keeps every ``log_every``-th
optimizer step and the last one, as columns ``step``, ``lr``, ``loss`` and each logged term.

* ``history_frame(result)`` — that curve as a ``DataFrame`` (one row per kept step);
* ``plot_history(result)`` — each logged value vs step, one small panel each (the notebooks),
  and the scores after each epoch when the run recorded them (``epoch_frame``);
* ``plot_sweep_curves(runs, path)`` — the total loss vs step of a sweep's runs, one panel per
  label and one line per seed (``scripts/collect_results.py --curves``).

Like :mod:`~samd_common.reporting.plots`, functions never pick a matplotlib backend.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from samd_common.reporting.keys import parse_keys
from samd_common.reporting.results import RunRecord

Result = RunRecord | dict[str, Any]


def _record(result: Result) -> RunRecord:
    return result if isinstance(result, RunRecord) else RunRecord.from_json(result)


def has_history(result: Result) -> bool:
    """Whether a run record (or results JSON dict) holds a training curve with a ``loss``."""
    steps = _record(result).history.get("steps") or {}
    return bool(steps.get("step")) and "loss" in steps


def history_frame(result: Result) -> pd.DataFrame:
    """The run's training curve: one row per kept step; columns ``step``, ``lr``, ``loss``, terms.

    Raises:
        ValueError: the record has no history (written before runs kept one, or by a method
            whose training stage records none, such as SKD).
    """
    record = _record(result)
    if not has_history(record):
        raise ValueError(
            f"{record.method} run {record.results_path or ''} has no training history: it was "
            "recorded before results kept one (or by SKD's own stages). Rerun it to get the "
            "curve; the interval is TrainConfig.log_every (make_config(..., log_every=10))."
        )
    return pd.DataFrame(record.history["steps"])


def _grid(n: int, width: float, height: float, ncols: int = 4):
    """A figure of ``n`` panels in rows of ``ncols`` (unused panels hidden), and its axes."""
    import matplotlib.pyplot as plt

    cols = max(1, min(ncols, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _save(fig, path: str | Path | None) -> None:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)


def plot_history(result: Result, path: str | Path | None = None, title: str | None = None):
    """Each logged value of one run vs optimizer step: the total loss first, the lr last.

    Args:
        result: a run record (or results JSON dict) with a ``history``.
        path: save the figure there as PNG (parent folders are created).
        title: figure title; default ``"{method}: training curve (every n steps)"``.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: the record has no history (:func:`history_frame`).
    """
    record = _record(result)
    frame = history_frame(record)
    names = [c for c in frame.columns if c not in ("step", "lr")] + ["lr"] * ("lr" in frame)
    epochs = epoch_frame(record)
    fig, axes = _grid(len(names) + (not epochs.empty), 3.0, 2.4)
    if not epochs.empty:
        _plot_epochs(axes.pop(), epochs)
    marker = "o" if len(frame) <= 30 else None  # a short run's few points stay visible
    for ax, name in zip(axes, names, strict=True):
        color = "0.4" if name == "lr" else "C0"
        ax.plot(frame["step"], frame[name], marker=marker, ms=3, color=color)
        ax.set_title(name if name != "loss" else "loss (total)", fontsize=9)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    every = record.history.get("log_every", "?")
    fig.suptitle(title or f"{record.method}: training curve (every {every} steps)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return fig


def epoch_frame(result: Result) -> pd.DataFrame:
    """The per-epoch evaluations of a run (``EvalConfig.every_epoch``) as a frame.

    Returns:
        One row per epoch with ``epoch``, ``step`` and the suite's averages at the full dim
        (``avg ID``, ``avg OOD``); empty when the run did not ask for them.
    """
    out = []
    for row in _record(result).history.get("epochs") or []:
        entry = {"epoch": row["epoch"], "step": row["step"]}
        for key, k in parse_keys(row):
            if k.name == "avg/all" and row[key] is not None:
                entry[f"avg {k.metric.upper()}"] = row[key]
        out.append(entry)
    return pd.DataFrame(out)


def _plot_epochs(ax, epochs: pd.DataFrame) -> None:
    """Plot the average ID / OOD score after each epoch against the step it was reached at."""
    for i, name in enumerate(c for c in ("avg ID", "avg OOD") if c in epochs):
        ax.plot(epochs["step"], epochs[name], marker="o", ms=4, color=f"C{i + 1}", label=name)
    ax.set_title("score after each epoch (full dim)", fontsize=9)
    ax.set_xlabel("optimizer step", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_sweep_curves(runs: list[dict[str, Any]], path: str | Path | None = None):
    """Total loss vs step of a sweep: one panel per label, one line per seed (with a history).

    Args:
        runs: ``{"label", "seed", "record"}`` per run (``reporting.tables.load_runs``); runs
            without a history (older files, SKD) are left out.
        path: save the figure there as PNG.

    Returns:
        The ``matplotlib.figure.Figure``, or None (nothing drawn or saved) when no run has a
        history.
    """
    kept = [r for r in runs if has_history(r["record"])]
    if not kept:
        return None
    labels = list(dict.fromkeys(r["label"] for r in kept))
    fig, axes = _grid(len(labels), 3.4, 2.6)
    for ax, label in zip(axes, labels, strict=True):
        for run in sorted((r for r in kept if r["label"] == label), key=lambda r: r["seed"]):
            frame = history_frame(run["record"])
            ax.plot(frame["step"], frame["loss"], lw=1.2, label=f"seed {run['seed']}")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("optimizer step", fontsize=8)
        ax.set_ylabel("total loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return fig
