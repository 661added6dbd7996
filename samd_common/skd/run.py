"""The SKD pipeline (DESIGN.md §6.9): gather → merge → cluster → train → evaluate.

``make_skd_config(...)`` → ``run_skd(cfg)`` is what ``CTKD/SKD.ipynb`` and ``scripts/skd.py all``
call; :func:`skd_table` / :func:`plot_skd` show the result. Each step is also a function of its
own (``senses.gather_task``, ``senses.merge_tables``, ``clustering.cluster_senses``,
``skd_steps.train_student``, ``skd_steps.evaluate_student``) and a command of ``scripts/skd.py``.
Every step writes its result atomically into the run folder and is skipped when a complete
result with the same settings is already there, so a rerun resumes.

Two flavours (``mode``): ``"all"`` — one dictionary from every task's training texts and one
student trained on all of them (SKD); ``"sep"`` — one dictionary and one student per task
(SKD-sep). Two settings: the reference one, ``student="teacher:4"`` (the teacher's own first 4
layers, same tokenizer, ``W`` = identity), and the cross-tokenizer one (any other student:
span-group mapping and a trainable projection ``W``).

How the dictionary reaches the method: the registry builder reads ``params["dictionary"]``, the
folder written by ``clustering.cluster_senses`` (``run_skd`` fills it in).

This module is the public entry point: the configuration (``samd_common.skd.config``) and the
steps (``samd_common.skd.steps``) are re-exported here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from samd_common.evaluation.mteb import MTEBResult, evaluate_mteb
from samd_common.models import load_encoder
from samd_common.models.tiny import resolve_model
from samd_common.reporting.results import RunRecord, record_results
from samd_common.skd.config import (
    EVAL_MODES,
    SKD_PRESETS,
    SKDConfig,
    default_mteb_dir,
    make_skd_config,
)
from samd_common.skd.loss import SKDParams
from samd_common.skd.senses import SenseTable
from samd_common.skd.steps import (
    SenseEncoder,
    build_dictionary,
    evaluate_student,
    load_inputs,
    load_skd_student,
    load_student,
    save_student,
    train_student,
    write_smoke_data,
)
from samd_common.training.loop import seed_everything

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ the whole run
@dataclass
class SKDResult:
    """What :func:`run_skd` returns (and writes as ``results.json``)."""

    config: SKDConfig
    metrics: dict[str, float]
    metrics_before: dict[str, float]
    results_path: Path
    student_dirs: dict[str, Path]
    history: list[dict[str, float]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _summarize(per_mode: dict[str, MTEBResult], primary: str) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for mode, res in per_mode.items():
        metrics.update({f"{mode}/{k}": v for k, v in res.metrics.items()})
    for k, v in per_mode[primary].metrics.items():
        if k.startswith("avg/mteb/accuracy@"):
            metrics[f"avg/all/id@{k.rsplit('@', 1)[1]}"] = v  # the suite-wide headline key
    return metrics


def _merge_sep(results: list[dict[str, MTEBResult]]) -> dict[str, MTEBResult]:
    """SKD-sep: one result per task → one per mode; the average is the mean of the tasks'."""
    merged = {}
    for mode in results[0]:
        metrics: dict[str, float] = {}
        for r in results:
            metrics.update({k: v for k, v in r[mode].metrics.items() if not k.startswith("avg/")})
        for dim in results[0][mode].dims:
            key = f"avg/mteb/accuracy@{dim}"
            metrics[key] = float(np.mean([r[mode].metrics[key] for r in results]))
        merged[mode] = MTEBResult(metrics, results[0][mode].dims)
    return merged


def run_skd(cfg: SKDConfig) -> SKDResult:
    """Run the whole SKD pipeline for one config and write ``results.json``.

    Steps (each resumable): load tasks → load teacher → evaluate the undistilled student →
    teacher cache → gather per task → merge (``mode="all"``) → cluster → train → evaluate in
    ``replace`` and ``continuous`` modes with the MTEB protocol → save students → results.
    """
    SKDParams.from_dict({**cfg.params, "mode": cfg.mode})
    if cfg.mode == "sep" and cfg.train_csv:
        raise ValueError("train_csv replaces every task's texts; it only works with mode='all'.")
    seed_everything(cfg.seed)
    run_dir = Path(cfg.output_dir) / (
        f"{'SKD' if cfg.mode == 'all' else 'SKD-sep'}-{Path(cfg.teacher).name}-to-"
        f"{Path(cfg.student).name.replace(':', '')}-{cfg.preset}-seed{cfg.seed}"
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tasks, texts = load_inputs(cfg, run_dir)
    teacher = load_encoder(
        resolve_model(cfg.teacher), max_length=cfg.max_length, attn_implementation="eager"
    )
    student0 = load_student(cfg, teacher)
    before = evaluate_mteb(
        student0.encode,
        list(tasks.values()),
        samples_per_label=cfg.samples_per_label,
        n_experiments=cfg.n_experiments,
    )
    metrics_before = _summarize({"student": before}, "student")
    del student0
    timings["eval_before_s"] = time.perf_counter() - t0
    groups = {"all": texts} if cfg.mode == "all" else {k: {k: v} for k, v in texts.items()}
    results, histories, students, dict_info = [], [], {}, {}
    for name, group in groups.items():
        t1 = time.perf_counter()
        work = run_dir / "senses"
        dictionary, cache = build_dictionary(cfg, teacher, group, work, name)
        timings[f"dictionary_{name}_s"] = time.perf_counter() - t1
        table = SenseTable.load(dictionary, mmap=True)
        dict_info[name] = {
            "path": str(dictionary),
            "tokens": len(table),
            "senses": int(len(table.vectors)),
            "mean_senses": table.meta.get("mean_senses"),
        }
        t2 = time.perf_counter()
        corpus = [t for g in group.values() for t in g]
        method, history = train_student(
            cfg, teacher, dictionary, corpus, cache, run_dir / "students" / name
        )
        timings[f"train_{name}_s"] = time.perf_counter() - t2
        histories += history.steps
        eval_tasks = list(tasks.values()) if cfg.mode == "all" else [tasks[name]]
        t3 = time.perf_counter()
        results.append(
            evaluate_student(cfg, method, teacher.tokenizer, teacher.spec.prompt, eval_tasks)
        )
        timings[f"eval_{name}_s"] = time.perf_counter() - t3
        students[name] = save_student(method, dictionary, run_dir / "students" / name / "model")
    per_mode = results[0] if cfg.mode == "all" else _merge_sep(results)
    metrics = _summarize(per_mode, cfg.eval_modes[0])
    timings["total_s"] = time.perf_counter() - t0
    path = record_results(
        RunRecord(
            "SKD",
            cfg.student,
            cfg.to_dict(),
            metrics,
            metrics_before,
            teacher=cfg.teacher,
            timings=timings,
            train={"steps": len(histories), "last": histories[-1:]},
            extra={
                "flavour": "SKD" if cfg.mode == "all" else "SKD-sep",
                "dictionaries": dict_info,
                "train_texts": {k: len(v) for k, v in texts.items()},
            },
        ),
        run_dir / "results.json",
    )
    log.info("results: %s", path)
    return SKDResult(cfg, metrics, metrics_before, path, students, histories, timings)


# ------------------------------------------------------------------ tables and plots
def skd_table(result: SKDResult) -> pd.DataFrame:
    """Main-split accuracy per task: undistilled student next to each evaluation mode.

    Rows are tasks (``task/subset`` for multi-subset tasks); columns ``before@D_s`` and
    ``replace@D_t`` / ``continuous@D_t``.
    """
    rows: dict[str, dict[str, float]] = {}
    sources = [("student", "before", result.metrics_before)]
    sources += [(m, m, result.metrics) for m in result.config.eval_modes]
    for prefix, column, metrics in sources:
        for key, value in metrics.items():
            head, _, dim = key.rpartition("@")
            if not head.startswith(f"{prefix}/") or not head.endswith("/accuracy"):
                continue
            task = head[len(prefix) + 1 : -len("/accuracy")]
            if task.startswith("avg/") or task.endswith("/validation"):
                continue
            rows.setdefault(task, {})[f"{column}@{dim}"] = value
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("task").round(2)


def plot_skd(result: SKDResult, path: str | Path | None = None):
    """Per-task accuracy: undistilled student vs each SKD evaluation mode (bar chart)."""
    import matplotlib.pyplot as plt

    table = skd_table(result)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(table), 3.2))
    table.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("MTEB accuracy")
    ax.set_xticklabels([t.removesuffix("Classification") for t in table.index], fontsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


__all__ = [
    "EVAL_MODES",
    "SKDConfig",
    "SKDResult",
    "SKD_PRESETS",
    "SenseEncoder",
    "build_dictionary",
    "default_mteb_dir",
    "evaluate_student",
    "load_inputs",
    "load_skd_student",
    "load_student",
    "make_skd_config",
    "plot_skd",
    "run_skd",
    "save_student",
    "skd_table",
    "train_student",
    "write_smoke_data",
]
