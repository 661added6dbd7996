"""SKD's stages of ``experiment.run_experiment`` (DESIGN.md §6.9): its registry entry's hooks.

``make_config("SKD", ...)`` → ``run_experiment(cfg)`` runs SKD like every other method; these
functions replace the shared stages (see :data:`HOOKS`):

1. ``inputs`` — the MTEB tasks and each task's training texts (:func:`load_inputs`);
2. ``models`` — the teacher, and the student (``"teacher:N"``: the teacher's first N layers);
3. ``eval_before`` — the undistilled student with the MTEB classification protocol;
4. ``teacher_cache`` — SKD's sense dictionary: teacher cache, gathered token states per task,
   merged, clustered (:func:`build_dictionaries`);
5. ``train`` — per dictionary a fresh student learns to pick the teacher's senses; each is
   scored (``replace`` / ``continuous`` modes) and saved as soon as it is trained, so one student
   is in memory at a time (:func:`train_and_score`);
6. ``eval_after`` — the scores merged into the run's metrics (:func:`merge_scores`).

Two flavours (``params["mode"]``): ``"all"`` — one dictionary from every task's training texts
and one student trained on all of them (SKD); ``"sep"`` — one dictionary and one student per
task, each scored on its own task (SKD-sep). Two settings: the reference one,
``student="teacher:4"`` (same tokenizer, ``W`` = identity), and the cross-tokenizer one (any
other student: span-group mapping and a trainable projection ``W``). Every step resumes inside
the run folder (``samd_common.skd.steps``).
"""

from __future__ import annotations

import numpy as np

from samd_common.config import RunHooks, RunState
from samd_common.evaluation.mteb import MTEBResult, evaluate_mteb
from samd_common.models import load_encoder
from samd_common.models.tiny import resolve_model
from samd_common.reporting.keys import metric_key, parse_keys
from samd_common.skd import steps
from samd_common.skd.config import SenseSettings, check_config, flavour, mode
from samd_common.skd.senses import SenseTable
from samd_common.training.history import thin_history


def summarize(per_mode: dict[str, MTEBResult], primary: str) -> dict[str, float]:
    """Flat metrics ``{mode}/{key}`` plus the suite-wide headline ``avg/all/id@{dim}``."""
    metrics: dict[str, float] = {}
    for name, res in per_mode.items():
        metrics.update({f"{name}/{k}": v for k, v in res.metrics.items()})
    main = per_mode[primary].metrics
    for key, k in parse_keys(main):
        if k.head == "avg/mteb/accuracy":
            metrics[metric_key("avg/all/id", k.dim)] = main[key]
    return metrics


def merge_sep(results: list[dict[str, MTEBResult]]) -> dict[str, MTEBResult]:
    """SKD-sep: one result per task → one per mode; the average is the mean of the tasks'."""
    merged = {}
    for name in results[0]:
        metrics: dict[str, float] = {}
        for r in results:
            metrics.update({k: v for k, v in r[name].metrics.items() if not k.startswith("avg/")})
        for dim in results[0][name].dims:
            key = metric_key("avg/mteb/accuracy", dim)
            metrics[key] = float(np.mean([r[name].metrics[key] for r in results]))
        merged[name] = MTEBResult(metrics, results[0][name].dims)
    return merged


def load_inputs(run: RunState) -> None:
    """Stage ``inputs``: check the settings; the MTEB tasks and their training texts."""
    check_config(run.cfg)
    run.tasks, run.texts = steps.load_inputs(run.cfg, run.run_dir)
    run.extra["train_texts"] = {k: len(v) for k, v in run.texts.items()}


def load_models(run: RunState) -> None:
    """Stage ``models``: the teacher (kept for the dictionary), then the student."""
    cfg = run.cfg
    run.teacher = load_encoder(
        resolve_model(cfg.teacher), max_length=cfg.max_length, attn_implementation="eager"
    )
    run.student = steps.load_student(cfg, run.teacher)


def evaluate_before(run: RunState) -> None:
    """Stage ``eval_before``: the undistilled student, MTEB protocol (keys ``student/…``)."""
    cfg = run.cfg
    if cfg.eval_before:
        before = evaluate_mteb(
            run.student.encode,
            list(run.tasks.values()),
            samples_per_label=cfg.eval.samples_per_label,
            n_experiments=cfg.eval.n_experiments,
        )
        run.metrics_before = summarize({"student": before}, "student")
    run.student = None  # every dictionary gets a fresh student (train_and_score)


def build_dictionaries(run: RunState) -> None:
    """Stage ``teacher_cache``: one sense dictionary per group (all tasks, or each task)."""
    texts = run.texts
    groups = {"all": texts} if mode(run.cfg) == "all" else {k: {k: v} for k, v in texts.items()}
    run.scratch["groups"], run.extra["dictionaries"] = {}, {}
    for name, group in groups.items():
        work = run.run_dir / "senses"
        dictionary, cache = steps.build_dictionary(run.cfg, run.teacher, group, work, name)
        run.scratch["groups"][name] = (group, dictionary, cache)
        table = SenseTable.load(dictionary, mmap=True)
        run.extra["dictionaries"][name] = {
            "path": str(dictionary),
            "tokens": len(table),
            "senses": int(len(table.vectors)),
            "mean_senses": table.meta.get("mean_senses"),
        }


def train_and_score(run: RunState) -> None:
    """Stage ``train``: per dictionary a fresh student, trained, scored (MTEB), saved."""
    cfg, teacher = run.cfg, run.teacher
    scores, history, skipped = [], [], 0
    for name, (group, dictionary, cache) in run.scratch["groups"].items():
        out = run.run_dir / "students" / name
        corpus = [t for g in group.values() for t in g]
        method, hist = steps.train_student(
            cfg, teacher, dictionary, corpus, cache, out, run.build_method
        )
        history, skipped = history + hist.steps, skipped + hist.skipped_nonfinite
        tasks = list(run.tasks.values()) if mode(cfg) == "all" else [run.tasks[name]]
        prompt = teacher.spec.prompt
        scores.append(steps.evaluate_student(cfg, method, teacher.tokenizer, prompt, tasks))
        run.students[name] = str(steps.save_student(method, dictionary, out / "model"))
    run.scratch["scores"] = scores
    run.train_summary = {
        "steps": len(history),
        "skipped_nonfinite": skipped,
        "last": history[-1:],
        # the training curve (SKD-sep: the groups' curves one after the other, steps restart)
        "history": thin_history(history, cfg.train.log_every),
    }


def merge_scores(run: RunState) -> None:
    """Stage ``eval_after``: the groups' scores → the run's metrics (SKD-sep: task means)."""
    scores = run.scratch["scores"]
    per_mode = scores[0] if mode(run.cfg) == "all" else merge_sep(scores)
    primary = check_config(run.cfg).eval_modes[0]
    run.metrics = summarize(per_mode, primary)
    run.dims = list(per_mode[primary].dims)


HOOKS = RunHooks(
    protocol="mteb",
    flavour=flavour,
    settings=SenseSettings,
    inputs=load_inputs,
    models=load_models,
    eval_before=evaluate_before,
    teacher_cache=build_dictionaries,
    train=train_and_score,
    eval_after=merge_scores,
)
"""SKD's registry hooks (``methods.METHODS["SKD"].hooks``)."""
