"""What the notebooks call: ``make_config`` → ``run_experiment`` → ``results_table`` / plots.

``run_experiment`` runs every registry method through the same named stages, each a function
of the run's :class:`~samd_common.config.RunState`:

1. ``inputs`` — the evaluation tasks and the training corpus (a clean one is built if needed);
2. ``models`` — the student;
3. ``eval_before`` — the undistilled student's scores (memoised across runs);
4. ``teacher_cache`` — the teacher run once over the corpus;
5. ``train`` — the registry method on the student, with the shared loop;
6. ``eval_after`` — the student saved as a standard Hugging Face / sentence-transformers folder
   and scored at every Matryoshka dim (``evaluation.default_dims``); elastic-depth methods (ESE)
   also on a layers × dims grid, stored under ``depth_grid``;

then one results JSON (:class:`~samd_common.reporting.results.RunRecord`, also returned). A
registry entry replaces any stage through its ``hooks`` (:class:`~samd_common.config.RunHooks`):
SKD builds its sense dictionary as its teacher-cache stage and is scored with the MTEB protocol
(``samd_common.skd.stages``).
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from samd_common.config import (
    EvalConfig,
    ExperimentConfig,
    MTEBConfig,
    Preset,
    RunState,
    check_count,
    default_mteb_dir,
    get_preset,
    is_unset,
    resolve_setting,
)
from samd_common.data.corpus import build_corpus, load_corpus, sample_indices, without_heldout
from samd_common.data.demo import write_demo_data
from samd_common.data.tasks import load_tasks
from samd_common.data.user_tasks import resolve_task_list, split_task_list
from samd_common.evaluation.checks import check_eval_config, check_max_length
from samd_common.evaluation.memo import cached_evaluate
from samd_common.evaluation.mteb_tasks import get_mteb_task
from samd_common.evaluation.suite import default_dims, evaluate_depth_grid, evaluate_suite
from samd_common.methods import MethodSpec, TeacherInfo, get_method
from samd_common.models import load_encoder, save_encoder, transformer_layers
from samd_common.models.merge import interpolate_weights
from samd_common.models.tiny import resolve_model
from samd_common.reporting.keys import with_depth
from samd_common.reporting.plots import plot_depth_grid, plot_dims, plot_mteb
from samd_common.reporting.results import RunRecord, record_results, results_table
from samd_common.training.batching import DistillDataset
from samd_common.training.loop import TrainConfig, latest_checkpoint, seed_everything, train
from samd_common.training.teacher_cache import build_teacher_cache

log = logging.getLogger(__name__)
STAGES = ("inputs", "models", "eval_before", "teacher_cache", "train", "eval_after")


# ------------------------------------------------------------------ the config
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
    tasks: str | list[str] | tuple[str, ...] | None = None,
    params: dict[str, Any] | str | None = None,
    **overrides: Any,
) -> ExperimentConfig:
    """Build the run config of any registry method: explicit arguments > environment > preset.

    None and "" are unset; any other value is checked (``epochs=0`` is an error, not the preset's)
    and a bad one raises one line naming it, with the closest valid name for a typo. ``tasks``:
    suite — names and/or ``PATH[:family]`` CSV tasks, ``;`` between (``split_task_list``); MTEB —
    names or indices, ``"2,4"``. ``params`` may be a JSON string (papermill's ``-p``). Overrides:
    ``TrainConfig``/evaluation-config fields, method settings (SKD: ``mode="sep"``).
    """
    spec = get_method(method)
    p = get_preset(preset).for_method(spec.name)
    params = params_dict(params)
    train_over, eval_over, param_over = _split_overrides(spec, overrides)
    train_csv, eval_dir = _data_paths(spec.hooks.protocol, preset, train_csv, eval_dir)
    use_env = preset != "smoke"
    cfg = ExperimentConfig(
        method=spec.name,
        teacher=teacher or p.teacher,
        student=student or p.student,
        preset=preset,
        seed=seed,
        output_dir=resolve_setting(output_dir, "outputs", "SAMD_OUTPUT_DIR", use_env),
        train_csv=train_csv,
        eval_dir=eval_dir,
        max_texts=_pick(max_texts, p.max_texts),
        max_length=_pick(max_length, p.max_length),
        teacher_layers=teacher_layers,
        params={**_default_params(spec), **p.params, **params, **param_over},
        train=TrainConfig(
            epochs=_pick(epochs, p.epochs),
            lr=_pick(lr, p.lr),
            batch_size=_pick(batch_size, p.batch_size),
            seed=seed,
            **{**spec.train_defaults, **p.train, **train_over},
        ),
        eval=_eval_config(spec.hooks.protocol, p, seed, tasks, eval_over),
        corpus_seed=p.corpus_seed,
        per_source=p.per_source,
    )
    check_config(spec, cfg)
    return cfg


def _pick(explicit: Any, preset: Any) -> Any:
    """``explicit`` unless it is unset (None or empty: ``config.is_unset``), else ``preset``."""
    return preset if is_unset(explicit) else explicit


def params_dict(params: dict[str, Any] | str | None) -> dict[str, Any]:
    """The method parameters as a dict: None → ``{}``, a JSON object string → its dict.

    papermill's ``-p params '{"use_sam": false}'`` passes the string, not a dict.

    Raises:
        ValueError: a string that is not a JSON object, or a value that is neither.
    """
    if is_unset(params):
        return {}
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"params is not valid JSON ({err.msg} at character {err.pos}): {params!r}; pass "
                """a JSON object with double quotes, e.g. -p params '{"use_sam": false}'."""
            ) from None
    if not isinstance(params, dict):
        raise ValueError(
            f"params must be a dict (or a JSON object string) of method parameters, got "
            f"{type(params).__name__} {params!r}."
        )
    return params


def check_config(spec: MethodSpec, cfg: ExperimentConfig) -> None:
    """Checks ``make_config`` runs before any work: method parameters, evaluation settings.

    The parameters are built as the training stage will build them (``Params.from_dict``: unknown
    keys get the closest name, values their type and range), so a typo fails now, not after the
    teacher cache.

    Raises:
        ValueError / KeyError: naming the bad parameter or task.
    """
    settings = {f.name for f in fields(spec.hooks.settings)} if spec.hooks.settings else set()
    spec.params_class.from_dict({k: v for k, v in cfg.params.items() if k not in settings})
    if spec.hooks.settings:  # the method's pipeline settings (SKD: clustering), checked likewise
        spec.hooks.settings(**{k: v for k, v in cfg.params.items() if k in settings})
    if isinstance(cfg.eval, EvalConfig):
        check_eval_config(cfg.eval)
        resolve_task_list(cfg.eval.tasks)
    else:
        check_count("n_experiments", cfg.eval.n_experiments, 1, "None (the task's own)")
        check_count("samples_per_label", cfg.eval.samples_per_label, 1, "None (the task's own)")


def _default_params(spec: MethodSpec) -> dict[str, Any]:
    """The registry defaults plus those of the method's own pipeline settings (SKD)."""
    settings = spec.hooks.settings
    return {**spec.defaults, **(asdict(settings()) if settings else {})}


def _split_overrides(spec: MethodSpec, overrides: dict[str, Any]) -> tuple[dict, dict, dict]:
    """``overrides`` → (TrainConfig fields, evaluation-config fields, method parameters)."""
    train_fields = {f.name for f in fields(TrainConfig)}
    eval_type = MTEBConfig if spec.hooks.protocol == "mteb" else EvalConfig
    eval_fields = {f.name for f in fields(eval_type)}
    param_names = set(_default_params(spec))
    known = train_fields | eval_fields | param_names
    unknown = sorted(set(overrides) - known)
    if unknown:
        named = set(inspect.signature(make_config).parameters) - {"overrides"}
        close = difflib.get_close_matches(unknown[0], known | named, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown setting {unknown[0]!r} for {spec.name}.{hint} Known: make_config's "
            f"arguments, TrainConfig/{eval_type.__name__} fields "
            f"{sorted(train_fields | eval_fields)}"
            + (f", {spec.name} settings {sorted(param_names)}" if param_names else "")
            + f"; method parameters go in params (those of {spec.params_class.__name__})."
        )
    train_over = {k: v for k, v in overrides.items() if k in train_fields and v is not None}
    eval_over = {k: v for k, v in overrides.items() if k in eval_fields}
    own = param_names - train_fields - eval_fields
    params = {k: v for k, v in overrides.items() if k in own and v is not None and v != ""}
    return train_over, eval_over, params


def _data_paths(
    protocol: str, preset: str, train_csv: str | None, eval_dir: str | None
) -> tuple[str | None, str | None]:
    """The corpus CSV and the evaluation folder of a run (explicit values win).

    Suite: ``$SAMD_TRAIN_CSV`` and ``$SAMD_EVAL_DIR``. MTEB: ``$SAMD_MTEB_DIR`` or
    ``../shared/data/mteb``, and no corpus (the tasks' own texts). The smoke preset reads
    neither (it writes its own data).
    """
    use_env = preset != "smoke"
    if protocol == "mteb":
        folder = eval_dir or (default_mteb_dir() if use_env else None)
        return train_csv or None, str(folder) if folder else None
    return (
        resolve_setting(train_csv, None, "SAMD_TRAIN_CSV", use_env),
        resolve_setting(eval_dir, None, "SAMD_EVAL_DIR", use_env),
    )


def _eval_config(
    protocol: str, p: Preset, seed: int, tasks: Any, overrides: dict[str, Any]
) -> EvalConfig | MTEBConfig:
    """The evaluation config of the protocol, from the preset (``tasks``: names or a string)."""
    if isinstance(tasks, str) and protocol == "suite":
        tasks = split_task_list(tasks)  # built-in names and user tasks (PATH[:family])
    elif isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    if protocol == "mteb":
        names = tuple(get_mteb_task(t).name for t in (tasks or p.mteb_tasks))
        preset = {"splits": p.mteb_splits, "n_experiments": p.n_experiments}
        return MTEBConfig(tasks=names, **{**preset, **overrides})
    preset = {"max_train": p.max_train, "max_test": p.max_test, "dims": p.dims}
    preset.update(split=p.eval_split, holdout=p.holdout, tasks=tuple(tasks) if tasks else None)
    seed = seed if p.eval_seed is None else p.eval_seed
    return EvalConfig(seed=seed, **{**preset, **overrides})


def method_builder(cfg: ExperimentConfig) -> Callable[..., Any]:
    """``build(student, cache, params)``: the registry's loss module for ``cfg``'s method.

    ``cache`` is the teacher cache (None for teacher-free methods); the teacher's widths are read
    off it. Stages of ``samd_common.skd`` get this instead of importing the registry.
    """
    spec = get_method(cfg.method)

    def build(student, cache, params: dict[str, Any]):
        info = None if cache is None else TeacherInfo.from_cache(cfg.teacher, cache)
        return spec.build(student, info, params)

    return build


# ------------------------------------------------------------------ the run
def run_experiment(cfg: ExperimentConfig) -> RunRecord:
    """Distil ``cfg.teacher`` into ``cfg.student`` with ``cfg.method``, score it, record it.

    Runs :data:`STAGES` in order (a registry entry's ``hooks`` replace some, see the module
    docstring), timing each, then writes ``results.json`` into the run folder.
    """
    run = start_run(cfg)
    started = time.perf_counter()
    for name in STAGES:
        t0 = time.perf_counter()
        try:
            (getattr(run.spec.hooks, name) or DEFAULT_STAGES[name])(run)
        except BaseException:  # which stage of which run, and how to keep the finished epochs
            log.error("stage %r of %s failed%s", name, run.run_dir, _resume_hint(run))
            raise
        run.timings[f"{name}_s"] = time.perf_counter() - t0
    run.timings["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    run.timings["total_s"] = time.perf_counter() - started
    return record_run(run)


def _resume_hint(run: RunState) -> str:
    """``"; rerun with resume=True …"`` when the failed run left checkpoints (else ``""``)."""
    last = latest_checkpoint(run.run_dir / "checkpoints")
    if last is None or run.cfg.train.resume:
        return ""
    return f"; {last.name} is kept: rerun with resume=True to continue from it"


def run_name(cfg: ExperimentConfig, flavour: str) -> str:
    """The run folder's name: ``{flavour}-{teacher}-to-{student}-{preset}-seed{seed}``."""
    teacher, student = Path(cfg.teacher).name, Path(cfg.student).name.replace(":", "")
    return f"{flavour}-{teacher}-to-{student}-{cfg.preset}-seed{cfg.seed}"


def start_run(cfg: ExperimentConfig) -> RunState:
    """Seed everything and create the run folder (seeding first: it fixes every later draw)."""
    spec = get_method(cfg.method)
    seed_everything(cfg.seed)
    flavour = spec.hooks.flavour(cfg) if spec.hooks.flavour else spec.name
    run_dir = Path(cfg.output_dir) / run_name(cfg, flavour)
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunState(cfg, run_dir, spec, method_builder(cfg), flavour=flavour)


def load_inputs(run: RunState) -> None:
    """Stage ``inputs``: the 9 evaluation tasks and the corpus texts."""
    eval_dir, run.texts, run.extra["corpus"] = _corpus(run.cfg, run.run_dir)
    run.tasks = load_tasks(resolve_task_list(run.cfg.eval.tasks), eval_dir)


def _corpus(cfg: ExperimentConfig, run_dir: Path) -> tuple[Path, list[str], dict[str, Any]]:
    """Evaluation folder and corpus texts (building demo data / a clean corpus if needed).

    The corpus is drawn with ``cfg.corpus_seed`` (None: the run's seed). While the dev protocol's
    held-out slices are reserved (``eval.holdout``, or ``eval.split == "dev"``), a built corpus
    leaves them out (``data.holdout``), and so does one read from a file.
    """
    eval_dir = Path(cfg.eval_dir) if cfg.eval_dir else None
    if eval_dir is None and cfg.preset == "smoke":
        eval_dir = Path(cfg.output_dir) / "demo-data"
        if not (eval_dir / "stsb_test.csv").is_file():
            write_demo_data(eval_dir, seed=0)
    eval_dir = eval_dir or cfg.eval.resolved_eval_dir()
    seed = cfg.seed if cfg.corpus_seed is None else cfg.corpus_seed
    held = isinstance(cfg.eval, EvalConfig) and (cfg.eval.holdout or cfg.eval.split == "dev")
    info: dict[str, Any] = {}
    given = cfg.train_csv or None
    if not given and (eval_dir / "train_corpus.csv").is_file():
        given = str(eval_dir / "train_corpus.csv")
    if given:
        texts = _file_corpus(given, cfg.max_texts, seed, eval_dir if held else None)
        info["train_csv"] = given
    else:
        per_source = cfg.per_source if cfg.max_texts is None else max(1, cfg.max_texts // 6)
        frame, report = build_corpus(eval_dir, per_source, seed=seed, holdout=held)
        path = run_dir / "corpus.csv"
        frame.to_csv(path, index=False)
        texts = load_corpus(path, cfg.max_texts, seed)
        info.update(train_csv=str(path), corpus_report=asdict(report))
    info["corpus_sha256"] = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    info["corpus_size"] = len(texts)
    return eval_dir, texts, info


def _file_corpus(
    path: str, max_texts: int | None, seed: int, holdout_dir: Path | None
) -> list[str]:
    """A corpus file's texts, less ``holdout_dir``'s held-out dev slices if given, sampled."""
    if holdout_dir is None:
        return load_corpus(path, max_texts, seed)
    texts = without_heldout(load_corpus(path), holdout_dir)
    return [texts[i] for i in sample_indices(len(texts), max_texts, seed)]


def load_models(run: RunState) -> None:
    """Stage ``models``: the student, and the dims it is scored at."""
    cfg = run.cfg
    run.student = load_encoder(  # fp32 weights: AdamW steps vanish in bf16 weights (autocast
        resolve_model(cfg.student),  # brings bf16 compute on GPUs; the teacher may be bf16)
        max_length=cfg.max_length,
        attn_implementation="eager",
        dtype="float32",
    )
    check_max_length(cfg.max_length, run.student)  # a longer cap fails deep inside the model
    run.dims = default_dims(run.student.dim, cfg.eval.dims)  # halving series + configured dims
    if run.spec.elastic_depth:
        transformer_layers(run.student.backbone)  # fail now, not after training, if unsupported


def _evaluate(run: RunState, dims: list[int] | None = None, **encode_kw: Any):
    """The student's suite scores at ``dims`` (default ``run.dims``)."""
    cfg, student = run.cfg, run.student
    encode = lambda t: student.encode(t, batch_size=cfg.eval.batch_size, **encode_kw)  # noqa: E731
    return evaluate_suite(encode, run.tasks, dims or run.dims, cfg.eval)


def evaluate_before(run: RunState) -> None:
    """Stage ``eval_before``: the undistilled student (memoised: identical across a sweep)."""
    if run.cfg.eval_before:
        evaluate = lambda: _evaluate(run)  # noqa: E731
        result = cached_evaluate(run.student, run.tasks, run.dims, run.cfg.eval, evaluate)
        run.metrics_before = result.metrics


def cache_teacher(run: RunState) -> None:
    """Stage ``teacher_cache``: the teacher's outputs over the corpus (teacher-free: nothing)."""
    if not run.spec.needs_teacher:
        return
    cfg = run.cfg
    teacher = load_encoder(
        resolve_model(cfg.teacher),
        max_length=cfg.max_length,
        attn_implementation="eager",
        device=run.student.device,
    )
    check_max_length(cfg.max_length, teacher)
    run.cache = build_teacher_cache(teacher, run.texts, cfg.max_length, cfg.teacher_layers)


def train_method(run: RunState) -> None:
    """Stage ``train``: the registry method around the student, trained by the shared loop."""
    cfg, student = run.cfg, run.student
    dataset = DistillDataset(
        run.texts,
        student.tokenizer,
        cfg.max_length,
        student.spec.prompt,
        run.cache,
        maps=run.spec.maps,
    )
    method = run.build_method(student, run.cache, cfg.params).to(student.device)
    cfg.train.checkpoint_dir = cfg.train.checkpoint_dir or str(run.run_dir / "checkpoints")
    on_epoch = (lambda epoch: _score_full_dim(run, epoch)) if cfg.eval.every_epoch else None
    alpha = cfg.train.interpolate  # WiSE-FT: keep this share of the update (models.merge)
    start = (
        {k: v.detach().cpu().clone() for k, v in student.state_dict().items()} if alpha < 1 else {}
    )
    history = train(method, dataset, cfg.train, collate_fn=dataset.collate, on_epoch=on_epoch)
    if start:
        student.load_state_dict(interpolate_weights(start, student.state_dict(), alpha))
        log.info("student weights: θ₀ + %g·(θ − θ₀) (WiSE-FT, TrainConfig.interpolate)", alpha)
    median = float(np.median(history.step_times)) if history.step_times else 0
    run.timings["step_median_s"] = median
    run.train_summary = {
        "steps": len(history.steps),
        "skipped_nonfinite": history.skipped_nonfinite,
        "last": history.steps[-1:],
        "history": history.curve(cfg.train.log_every),  # the record keeps it apart (record_run)
    }


def _score_full_dim(run: RunState, epoch: int) -> dict[str, float]:
    """The suite at the student's full dim, mid-training (``EvalConfig.every_epoch``)."""
    log.info("epoch %d: scoring the student at %d dims", epoch, run.student.dim)
    return _evaluate(run, [run.student.dim]).metrics


def evaluate_after(run: RunState) -> None:
    """Stage ``eval_after``: save the student, score it (and its depth grid, ESE)."""
    run.students["student"] = str(save_encoder(run.student, run.run_dir / "student"))
    after = _evaluate(run)
    run.metrics, run.dims = after.metrics, after.dims
    if run.spec.elastic_depth:
        t0 = time.perf_counter()
        evaluate_depths(run)
        run.timings["eval_depth_grid_s"] = time.perf_counter() - t0


def evaluate_depths(run: RunState) -> None:
    """Layers × dims grid of an elastic-depth student; the full depth is ``run.metrics``."""
    run.depths = list(range(1, run.student.num_layers + 1))
    grid = {}
    if len(run.depths) > 1:
        cfg, student = run.cfg, run.student
        encode = lambda t, k: student.encode(t, batch_size=cfg.eval.batch_size, num_layers=k)  # noqa: E731
        grid = evaluate_depth_grid(encode, run.tasks, run.depths[:-1], run.dims, cfg.eval).metrics
    grid.update({with_depth(key, run.depths[-1]): v for key, v in run.metrics.items()})
    run.depth_grid = grid


DEFAULT_STAGES: dict[str, Callable[[RunState], None]] = {
    "inputs": load_inputs,
    "models": load_models,
    "eval_before": evaluate_before,
    "teacher_cache": cache_teacher,
    "train": train_method,
    "eval_after": evaluate_after,
}


def record_run(run: RunState) -> RunRecord:
    """Write the run's ``results.json`` and return its record."""
    cfg = run.cfg
    train = dict(run.train_summary)
    history = train.pop("history", {})  # the curve: a field of its own in the results JSON
    record = RunRecord(
        cfg.method,
        cfg.student,
        cfg.to_dict(),
        run.metrics,
        run.metrics_before,
        run.dims,
        run.depths,
        run.depth_grid,
        teacher=cfg.teacher,
        students=run.students,
        timings=run.timings,
        train=train,
        history=history,
        extra={"flavour": run.flavour, **run.extra},
    )
    path = record_results(record, run.run_dir / "results.json")
    log.info("results: %s", path)
    return record


# ------------------------------------------------------------------ tables and plots
def plot_matryoshka(result: RunRecord, path: str | Path | None = None):
    """Average main score vs embedding dim per task family (in-domain, OOD), before and after.

    Delegates to ``samd_common.reporting.plots.plot_dims``; ``path`` saves a PNG.
    """
    return plot_dims(result, path)


__all__ = [
    "STAGES",
    "make_config",
    "method_builder",
    "plot_depth_grid",
    "plot_matryoshka",
    "plot_mteb",
    "results_table",
    "run_experiment",
]
