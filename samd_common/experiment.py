"""What the notebooks call: ``make_config`` → ``run_experiment`` → ``results_table`` / plots.

A run: load the student and teacher, evaluate the undistilled student, cache the teacher over the
corpus, train the registry method with the shared loop, save the student as a standard
Hugging Face / sentence-transformers directory, evaluate it, and write one results JSON.
Students are evaluated at every Matryoshka dim (``evaluation.default_dims``: the halving series
of the width plus the configured dims); elastic-depth methods (ESE) also on a layers × dims grid,
stored under ``depth_grid`` in the results JSON.
"""

from __future__ import annotations

import hashlib
import logging
import resource
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from samd_common.config import PRESETS, EvalConfig, ExperimentConfig, resolve_setting
from samd_common.data.corpus import build_corpus, load_corpus
from samd_common.data.demo import write_demo_data
from samd_common.data.tasks import load_tasks
from samd_common.evaluation.memo import cached_evaluate
from samd_common.evaluation.suite import default_dims, evaluate_depth_grid, evaluate_suite
from samd_common.methods import TeacherInfo, get_method
from samd_common.models import load_encoder, save_encoder, transformer_layers
from samd_common.models.tiny import resolve_model
from samd_common.reporting.plots import plot_depth_grid as _plot_depth_grid
from samd_common.reporting.plots import plot_dims
from samd_common.reporting.results import RunRecord, comparison_table, record_results
from samd_common.training.batching import DistillDataset
from samd_common.training.loop import TrainConfig, seed_everything, train
from samd_common.training.teacher_cache import build_teacher_cache

log = logging.getLogger(__name__)


def make_config(
    method: str,
    *,
    teacher: str | None = None,
    student: str | None = None,
    train_csv: str | None = None,
    eval_dir: str | None = None,
    preset: str = "full",
    seed: int = 0,
    output_dir: str | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    max_texts: int | None = None,
    max_length: int | None = None,
    teacher_layers: int = 1,
    params: dict[str, Any] | None = None,
    **overrides: Any,
) -> ExperimentConfig:
    """Build the run config: explicit arguments > environment variables > preset values.

    ``preset="smoke"`` ignores ``SAMD_TRAIN_CSV``/``SAMD_EVAL_DIR`` (it uses generated data).
    ``overrides`` may set any ``TrainConfig`` or ``EvalConfig`` field by name.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
    spec, p = get_method(method), PRESETS[preset]
    use_env = preset != "smoke"
    train_fields = {f.name for f in fields(TrainConfig)}
    eval_fields = {f.name for f in fields(EvalConfig)}
    unknown = set(overrides) - train_fields - eval_fields
    if unknown:
        raise ValueError(
            f"Unknown setting(s) {sorted(unknown)}; TrainConfig/EvalConfig fields: "
            f"{sorted(train_fields | eval_fields)}."
        )
    tcfg = TrainConfig(
        epochs=epochs or p["epochs"],
        lr=lr or p["lr"],
        batch_size=batch_size or p["batch_size"],
        seed=seed,
        **{**spec.train_defaults, **{k: v for k, v in overrides.items() if k in train_fields}},
    )
    preset_eval = {"max_train": p["max_train"], "max_test": p["max_test"], "dims": p["dims"]}
    ecfg = EvalConfig(
        seed=p.get("eval_seed", seed),
        **{**preset_eval, **{k: v for k, v in overrides.items() if k in eval_fields}},
    )
    out = resolve_setting(output_dir, "outputs", "SAMD_OUTPUT_DIR", use_env)
    return ExperimentConfig(
        method=spec.name,
        teacher=teacher or p["teacher"],
        student=student or p["student"],
        preset=preset,
        seed=seed,
        output_dir=out,
        train_csv=resolve_setting(train_csv, None, "SAMD_TRAIN_CSV", use_env),
        eval_dir=resolve_setting(eval_dir, None, "SAMD_EVAL_DIR", use_env),
        max_texts=max_texts or p["max_texts"],
        max_length=max_length or p["max_length"],
        teacher_layers=teacher_layers,
        params={**spec.defaults, **(params or {})},
        train=tcfg,
        eval=ecfg,
    )


def _inputs(cfg: ExperimentConfig, run_dir: Path) -> tuple[Path, list[str], dict[str, Any]]:
    """Evaluation folder and corpus texts (building demo data / a clean corpus if needed)."""
    eval_dir = Path(cfg.eval_dir) if cfg.eval_dir else None
    if eval_dir is None and cfg.preset == "smoke":
        eval_dir = Path(cfg.output_dir) / "demo-data"
        if not (eval_dir / "stsb_test.csv").is_file():
            write_demo_data(eval_dir, seed=0)
    eval_dir = eval_dir or cfg.eval.resolved_eval_dir()
    info: dict[str, Any] = {}
    if cfg.train_csv:
        texts = load_corpus(cfg.train_csv, cfg.max_texts, cfg.seed)
        info["train_csv"] = cfg.train_csv
    elif (eval_dir / "train_corpus.csv").is_file():
        texts = load_corpus(eval_dir / "train_corpus.csv", cfg.max_texts, cfg.seed)
        info["train_csv"] = str(eval_dir / "train_corpus.csv")
    else:
        per_source = 3000 if cfg.max_texts is None else max(1, cfg.max_texts // 6)
        frame, report = build_corpus(eval_dir, per_source, seed=cfg.seed)
        path = run_dir / "corpus.csv"
        frame.to_csv(path, index=False)
        texts = load_corpus(path, cfg.max_texts, cfg.seed)
        info.update(train_csv=str(path), corpus_report=asdict(report))
    info["corpus_sha256"] = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    info["corpus_size"] = len(texts)
    return eval_dir, texts, info


@dataclass
class ExperimentResult:
    """What ``run_experiment`` returns (and writes as JSON)."""

    config: ExperimentConfig
    metrics: dict[str, float]
    metrics_before: dict[str, float]
    dims: list[int]
    results_path: Path
    student_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    depth_grid: dict[str, float] = field(default_factory=dict)  # "{key}@{dim}/L{k}" (ESE only)
    depths: list[int] = field(default_factory=list)  # layer counts of depth_grid


def run_experiment(cfg: ExperimentConfig) -> ExperimentResult:
    """Distil ``cfg.teacher`` into ``cfg.student`` with ``cfg.method`` and evaluate it."""
    spec = get_method(cfg.method)
    seed_everything(cfg.seed)
    run_dir = (
        Path(cfg.output_dir) / f"{cfg.method}-{Path(cfg.teacher).name}-to-"
        f"{Path(cfg.student).name}-{cfg.preset}-seed{cfg.seed}"
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    eval_dir, texts, corpus_info = _inputs(cfg, run_dir)
    tasks = load_tasks(cfg.eval.tasks, eval_dir)
    student = load_encoder(
        resolve_model(cfg.student), max_length=cfg.max_length, attn_implementation="eager"
    )
    dims = default_dims(student.dim, cfg.eval.dims)  # halving series + configured dims
    if spec.elastic_depth:
        transformer_layers(student.backbone)  # fail now, not after training, if unsupported

    def evaluate(model) -> Any:
        return evaluate_suite(
            lambda t: model.encode(t, batch_size=cfg.eval.batch_size), tasks, dims, cfg.eval
        )

    before = (
        cached_evaluate(student, tasks, dims, cfg.eval, lambda: evaluate(student))
        if cfg.eval_before
        else None
    )
    timings["eval_before_s"] = time.perf_counter() - t0
    info, cache = None, None
    if spec.needs_teacher:
        t1 = time.perf_counter()
        teacher = load_encoder(
            resolve_model(cfg.teacher),
            max_length=cfg.max_length,
            attn_implementation="eager",
            device=student.device,
        )
        cache = build_teacher_cache(teacher, texts, cfg.max_length, cfg.teacher_layers)
        info = TeacherInfo.from_cache(cfg.teacher, cache)
        del teacher
        timings["teacher_cache_s"] = time.perf_counter() - t1
    dataset = DistillDataset(
        texts, student.tokenizer, cfg.max_length, student.spec.prompt, cache, maps=spec.maps
    )
    method = spec.build(student, info, cfg.params).to(student.device)
    cfg.train.checkpoint_dir = cfg.train.checkpoint_dir or str(run_dir / "checkpoints")
    t2 = time.perf_counter()
    history = train(method, dataset, cfg.train, collate_fn=dataset.collate)
    timings["train_s"] = time.perf_counter() - t2
    timings["step_median_s"] = float(np.median(history.step_times)) if history.step_times else 0
    student_dir = save_encoder(student, run_dir / "student")
    after = evaluate(student)
    grid, depths = {}, []
    if spec.elastic_depth:  # layers × dims; the full depth is `after` itself
        t3 = time.perf_counter()
        depths = list(range(1, student.num_layers + 1))
        if len(depths) > 1:
            grid = evaluate_depth_grid(
                lambda t, k: student.encode(t, batch_size=cfg.eval.batch_size, num_layers=k),
                tasks,
                depths[:-1],
                dims,
                cfg.eval,
            ).metrics
        grid.update({f"{key}/L{depths[-1]}": value for key, value in after.metrics.items()})
        timings["eval_depth_grid_s"] = time.perf_counter() - t3
    timings["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timings["total_s"] = time.perf_counter() - t0
    metrics = after.metrics
    path = record_results(
        RunRecord(
            cfg.method,
            cfg.student,
            cfg.to_dict(),
            metrics,
            before.metrics if before else {},
            after.dims,
            depths,
            grid,
            teacher=cfg.teacher,
            timings=timings,
            train={
                "steps": len(history.steps),
                "skipped_nonfinite": history.skipped_nonfinite,
                "last": history.steps[-1:],
            },
            extra={"corpus": corpus_info},
        ),
        run_dir / "results.json",
    )
    log.info("results: %s", path)
    return ExperimentResult(
        cfg,
        metrics,
        before.metrics if before else {},
        after.dims,
        path,
        student_dir,
        history.steps,
        timings,
        grid,
        depths,
    )


def results_table(result: ExperimentResult) -> pd.DataFrame:
    """Main score per task (rows) × dim, undistilled student next to the distilled one."""
    return comparison_table(
        result.metrics, result.metrics_before, result.dims, result.config.method
    )


def _payload(result: ExperimentResult) -> dict[str, Any]:
    """The fields of the results JSON that the plots read."""
    return {
        "method": result.config.method,
        "config": result.config.to_dict(),
        "metrics": result.metrics,
        "metrics_before": result.metrics_before,
        "dims": result.dims,
        "depths": result.depths,
        "depth_grid": result.depth_grid,
    }


def plot_matryoshka(result: ExperimentResult, path: str | Path | None = None):
    """Average main score vs embedding dim per task family (in-domain, OOD), before and after.

    Delegates to ``samd_common.reporting.plots.plot_dims``; ``path`` saves a PNG.
    """
    return plot_dims(_payload(result), path)


def plot_depth_grid(result: ExperimentResult, path: str | Path | None = None):
    """Layers × dims heat map of an elastic-depth (ESE) run (``samd_common.reporting.plots``)."""
    return _plot_depth_grid(_payload(result), path)
