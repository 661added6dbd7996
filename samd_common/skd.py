"""The SKD pipeline (DESIGN.md §6.9): gather → merge → cluster → train → evaluate.

``make_skd_config(...)`` → ``run_skd(cfg)`` is what ``CTKD/SKD.ipynb`` and ``scripts/skd.py all``
call; each step is also a function of its own (``senses.gather_task``, ``senses.merge_tables``,
``senses.cluster_senses``, :func:`train_student`, :func:`evaluate_student`) and a command of
``scripts/skd.py``. Every step writes its result atomically into the run folder and is skipped
when a complete result with the same settings is already there, so a rerun resumes.

Two flavours (``mode``): ``"all"`` — one dictionary from every task's training texts and one
student trained on all of them (SKD); ``"sep"`` — one dictionary and one student per task
(SKD-sep). Two settings: the reference one, ``student="teacher:4"`` (the teacher's own first 4
layers, same tokenizer, ``W`` = identity), and the cross-tokenizer one (any other student:
span-group mapping and a trainable projection ``W``).

How the dictionary reaches the method: the registry builder reads ``params["dictionary"]``, the
folder written by ``senses.cluster_senses`` (``run_skd`` fills it in).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from samd_common.alignment import align_batch, token_spans
from samd_common.batching import DistillDataset
from samd_common.cache import build_teacher_cache
from samd_common.config import cache_root, env_path
from samd_common.losses.skd import SKDLoss, SKDParams, replace_with_senses, span_group_pairs
from samd_common.models import SentenceEncoder, load_encoder, save_encoder
from samd_common.mteb_eval import (
    MTEBResult,
    TaskSplits,
    evaluate_mteb,
    get_mteb_task,
    load_mteb_task,
)
from samd_common.results import record_results, write_json_atomic
from samd_common.senses import (
    SenseTable,
    cluster_senses,
    gather_task,
    is_complete,
    merge_tables,
    texts_fingerprint,
)
from samd_common.training import TrainConfig, seed_everything, train

log = logging.getLogger(__name__)

EVAL_MODES = ("replace", "continuous")
SKD_PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on CPU: tiny random models with two tokenizers, synthetic two-task data.
    "smoke": {
        "teacher": "tiny-teacher",
        "student": "tiny-student",
        "tasks": ("Banking77Classification", "EmotionClassification"),
        "max_texts": None,
        "max_length": 32,
        "max_per_token": 50,
        "cluster": "mcl",
        "epochs": 1,
        "batch_size": 32,
        "lr": 5e-4,
        "n_experiments": 2,
    },
    # Minutes on a 2-core CPU: e5-small → MiniLM (cross-tokenizer), two offline MTEB tasks.
    "demo": {
        "teacher": "e5-small",
        "student": "minilm-l6",
        "tasks": ("Banking77Classification", "EmotionClassification"),
        "max_texts": 2000,
        "max_length": 64,
        "max_per_token": 200,
        "cluster": "kmeans",
        "epochs": 1,
        "batch_size": 32,
        "lr": 2e-5,
        "proj_lr": 1e-3,  # W starts at the identity and must move in few steps
        "n_experiments": None,
        "eval_splits": ("test",),  # the headline split only, to save encoding time
    },
    # The CPU benchmark (results/cpu-bench): the cpu-bench teacher → MiniLM, 600 texts per task.
    "cpu-bench": {
        "teacher": "embeddinggemma-300m",
        "student": "minilm-l6",
        "tasks": ("Banking77Classification", "EmotionClassification"),
        "max_texts": 600,
        "max_length": 128,
        "max_per_token": 200,
        "cluster": "kmeans",
        "epochs": 1,
        "batch_size": 32,
        "lr": 2e-5,
        "proj_lr": 1e-3,
        "n_experiments": None,
        "eval_splits": ("test",),
    },
    # The reference: LLM2Vec-Llama-3-8B teacher, its first 4 layers as student, 16 tasks,
    # 5 epochs at lr 5e-6 (Llama/run_train.sh); batch size is not given there.
    "full": {
        "teacher": "llm2vec-llama3-8b",
        "student": "teacher:4",
        "tasks": tuple(str(i) for i in range(1, 17)),
        "max_texts": None,
        "max_length": 512,
        "max_per_token": 1000,
        "cluster": "mcl",
        "epochs": 5,
        "batch_size": 32,
        "lr": 5e-6,
        "n_experiments": None,
    },
}


@dataclass
class SKDConfig:
    """One SKD run (saved with its results)."""

    method: str = "SKD"  # registry key
    mode: str = "all"  # all (one dictionary + student) | sep (one per task)
    teacher: str = "tiny-teacher"  # short name, HF id or local dir
    student: str = "tiny-student"  # name/dir, or "teacher:N" = the teacher's first N layers
    tasks: tuple[str, ...] = ()  # MTEB task names or reference indices 1–16
    data_dir: str | None = None  # folder of {Task}_{split}.csv files (text,label)
    train_csv: str | None = None  # optional corpus (text) replacing the tasks' train texts (all)
    preset: str = "smoke"  # smoke | demo | cpu-bench | full
    seed: int = 0  # data order, dropout, reservoir and k-means seeds
    output_dir: str = "outputs"  # parent of the run folder
    max_texts: int | None = None  # cap on training texts per task (seeded); None = all
    max_length: int = 128  # token cap for teacher and student
    max_per_token: int = 1000  # states kept per token id when gathering (reference 1000)
    cluster: str = "mcl"  # mcl (MCL → k-means) | kmeans (fast mode)
    jobs: int = 1  # parallel clustering processes
    eval_modes: tuple[str, ...] = EVAL_MODES  # replace and/or continuous
    n_experiments: int | None = None  # MTEB experiments (None = the task's own, 10)
    eval_splits: tuple[str, ...] | None = None  # None = the task's own (Emotion: validation, test)
    samples_per_label: int | None = None  # None = the task's own (MTEB metadata)
    params: dict[str, Any] = field(default_factory=dict)  # SKDParams fields
    train: TrainConfig = field(default_factory=TrainConfig)  # optimisation

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view."""
        return asdict(self)


def default_mteb_dir() -> Path | None:
    """``$SAMD_MTEB_DIR``, else ``../shared/data/mteb`` next to the repository, else None."""
    env = env_path("SAMD_MTEB_DIR", None)
    if env is not None:
        return env
    guess = Path(__file__).resolve().parents[2] / "shared" / "data" / "mteb"
    return guess if guess.is_dir() else None


def make_skd_config(
    *,
    mode: str = "all",
    teacher: str | None = None,
    student: str | None = None,
    tasks: str | list[str] | tuple[str, ...] | None = None,
    eval_dir: str | None = None,
    train_csv: str | None = None,
    preset: str = "full",
    seed: int = 0,
    output_dir: str | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    max_texts: int | None = None,
    cluster: str | None = None,
    jobs: int = 1,
    params: dict[str, Any] | None = None,
    **overrides: Any,
) -> SKDConfig:
    """The run config: explicit arguments (empty/0 = unset) > environment > preset.

    ``tasks`` may be a comma-separated string (``"2,4"`` or ``"Banking77,Emotion"``).
    ``overrides`` may set any other ``SKDConfig`` or ``TrainConfig`` field.
    """
    if preset not in SKD_PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(SKD_PRESETS)}.")
    p = SKD_PRESETS[preset]
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    names = tuple(get_mteb_task(t).name for t in (tasks or p["tasks"]))
    train_fields = {f.name for f in fields(TrainConfig)}
    own = {f.name for f in fields(SKDConfig)}
    unknown = set(overrides) - train_fields - own
    if unknown:
        raise ValueError(f"Unknown setting(s) {sorted(unknown)}; see SKDConfig / TrainConfig.")
    tcfg = TrainConfig(
        epochs=epochs or p["epochs"],
        lr=lr or p["lr"],
        batch_size=batch_size or p["batch_size"],
        seed=seed,
        **{
            "proj_lr": p.get("proj_lr"),
            **{k: v for k, v in overrides.items() if k in train_fields},
        },
    )
    skd_params = {**(params or {})}
    SKDParams.from_dict({**skd_params, "mode": mode})  # validate early
    keys = ("max_length", "max_per_token", "n_experiments", "eval_splits")
    preset_values = {k: p[k] for k in keys if k in p}
    own_values = {**preset_values, **{k: v for k, v in overrides.items() if k in own}}
    out = output_dir or str(env_path("SAMD_OUTPUT_DIR", "outputs"))
    data_dir = eval_dir or (None if preset == "smoke" else default_mteb_dir())
    return SKDConfig(
        mode=mode,
        teacher=teacher or p["teacher"],
        student=student or p["student"],
        tasks=names,
        data_dir=str(data_dir) if data_dir else None,
        train_csv=train_csv or None,
        preset=preset,
        seed=seed,
        output_dir=out,
        max_texts=max_texts or p["max_texts"],
        cluster=cluster or p["cluster"],
        jobs=jobs,
        params=skd_params,
        train=tcfg,
        **own_values,
    )


# ------------------------------------------------------------------ models and data
def _model_path(name: str) -> str:
    if name in ("tiny-teacher", "tiny-student"):
        from samd_common.tiny import build_tiny_pair

        return str(build_tiny_pair(cache_root() / "tiny")[name.split("-")[1]])
    return name


def load_student(cfg: SKDConfig, teacher: SentenceEncoder) -> SentenceEncoder:
    """The student: ``"teacher:N"`` copies the teacher's first N layers, else ``load_encoder``."""
    if cfg.student.startswith("teacher:"):
        from samd_common.llm2vec import first_layers

        return first_layers(teacher, int(cfg.student.split(":", 1)[1]))
    return load_encoder(_model_path(cfg.student), max_length=cfg.max_length, device=teacher.device)


def write_smoke_data(folder: Path) -> Path:
    """Tiny synthetic Banking77/Emotion files in the MTEB layout (from ``samd_common.demo``)."""
    from samd_common.demo import demo_frames

    frames = demo_frames(seed=0)
    names = {
        "banking77": "Banking77Classification",
        "emotion": "EmotionClassification",
        "tweeteval_emotion": "TweetSentimentExtractionClassification",
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, task in names.items():
        for split in ("train", "dev", "test"):
            path = folder / f"{task}_{split}.csv"
            if not path.is_file():
                frames[f"{stem}_{split}.csv"].to_csv(path, index=False)
    return folder


def _cap(texts: list[str], n: int | None, seed: int) -> list[str]:
    if n is None or len(texts) <= n:
        return texts
    keep = np.sort(np.random.default_rng(seed).choice(len(texts), n, replace=False))
    return [texts[i] for i in keep]


def load_inputs(cfg: SKDConfig, run_dir: Path) -> tuple[dict[str, TaskSplits], dict[str, list]]:
    """Loaded tasks and each task's (capped) training texts."""
    data_dir = Path(cfg.data_dir) if cfg.data_dir else None
    if data_dir is None and cfg.preset == "smoke":
        data_dir = write_smoke_data(Path(cfg.output_dir) / "skd-smoke-data")
    tasks = {t: load_mteb_task(t, data_dir, cfg.eval_splits) for t in cfg.tasks}
    texts = {}
    for name, ts in tasks.items():
        pool = [t for split in ts.subsets.values() for t in split[ts.task.train_split].texts]
        texts[name] = _cap(list(dict.fromkeys(pool)), cfg.max_texts, cfg.seed)
    if cfg.train_csv:
        from samd_common.corpus import load_corpus

        texts = {"corpus": load_corpus(cfg.train_csv, cfg.max_texts, cfg.seed)}
    return tasks, texts


# ------------------------------------------------------------------ encoding with senses
class SenseEncoder:
    """Sentence embeddings of a trained SKD student: projected, optionally sense-replaced.

    ``mode="replace"``: every student token mapped (span groups with the teacher tokenizer) to
    teacher tokens with a dictionary entry becomes its nearest sense; ``"continuous"``: the
    projected states as they are. Then mean pooling over the student's attention mask and, by
    default, L2 normalisation.
    """

    def __init__(
        self,
        method: SKDLoss,
        teacher_tokenizer,
        teacher_prompt: str = "",
        mode: str = "replace",
        max_length: int = 128,
        batch_size: int = 64,
        normalize: bool = True,
    ) -> None:
        if mode not in EVAL_MODES:
            raise ValueError(f"Unknown mode {mode!r}; use one of {EVAL_MODES}.")
        self.method, self.tok, self.prompt, self.mode = (
            method,
            teacher_tokenizer,
            teacher_prompt,
            mode,
        )
        self.max_length, self.batch_size, self.normalize = max_length, batch_size, normalize

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> np.ndarray:
        """(N, D_t) float32 in the order of ``texts``."""
        student = self.method.student
        was_training = self.method.training
        self.method.eval()
        dev = student.device
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.method.senses.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            chunk = [texts[i] for i in idx]
            s = token_spans(student.tokenizer, chunk, self.max_length, student.spec.prompt)
            ids = torch.as_tensor(s.input_ids, device=dev)
            mask = torch.as_tensor(s.attention_mask, device=dev)
            h = student(ids, mask)["token_embeddings"]  # (B, T_s, D_s)
            x = self.method.project(h).float()  # (B, T_s, D_t)
            if self.mode == "replace":
                t = token_spans(self.tok, chunk, self.max_length, self.prompt)
                groups = align_batch(s, t)
                b, j, i = span_group_pairs(
                    torch.as_tensor(groups["s_group"], device=dev),
                    torch.as_tensor(groups["t_group"], device=dev),
                )
                entry = self.method.senses.entries(torch.as_tensor(t.input_ids, device=dev)[b, i])
                keep = entry >= 0
                d = self.method.senses
                x = replace_with_senses(x, b[keep], j[keep], entry[keep], d.centroids, d.offsets)
            m = mask[..., None].float()  # (B, T_s, 1)
            pooled = (x * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, D_t)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.cpu().numpy()
        self.method.train(was_training)
        return out


# ------------------------------------------------------------------ steps
def build_dictionary(
    cfg: SKDConfig, teacher: SentenceEncoder, texts: dict[str, list[str]], work: Path, name: str
) -> tuple[Path, Any]:
    """Teacher cache over the texts, gather per task, merge (several tasks), cluster.

    Returns:
        ``(dictionary folder, teacher cache over the concatenated texts)``.
    """
    all_texts = [t for group in texts.values() for t in group]
    cache = build_teacher_cache(
        teacher, all_texts, cfg.max_length, layers=1, cache_dir=work / "teacher-cache"
    )
    tables, start = [], 0
    for task, group in texts.items():
        path = gather_task(
            teacher,
            group,
            work / "gather",
            task,
            cfg.max_per_token,
            cfg.seed,
            cfg.max_length,
            cache=cache,
            cache_indices=range(start, start + len(group)),
        )
        tables.append(path)
        start += len(group)
    out = work / f"dictionary-{name}"
    stamp = {
        "from": {str(p): json.loads((p / "meta.json").read_text()) for p in tables},
        "cluster": cfg.cluster,
        "seed": cfg.seed,
        "max_per_token": cfg.max_per_token,
    }
    stamp_file = work / f"dictionary-{name}.json"
    if is_complete(out) and stamp_file.is_file():
        if json.loads(stamp_file.read_text()) == stamp:
            log.info("dictionary %s: complete, skipped", out)
            return out, cache
    loaded = [SenseTable.load(p) for p in tables]
    states = merge_tables(loaded, cfg.max_per_token, cfg.seed) if len(loaded) > 1 else loaded[0]
    cluster_senses(states, cfg.cluster, cfg.jobs, cfg.seed, out_dir=out)
    write_json_atomic(stamp_file, stamp)
    return out, cache


def train_student(
    cfg: SKDConfig, teacher: SentenceEncoder, dictionary: Path, texts: list[str], cache, out: Path
) -> tuple[SKDLoss, Any]:
    """Build a fresh student and its SKD method, train it on ``texts`` (cached teacher)."""
    from samd_common.methods import TeacherInfo, get_method

    seed_everything(cfg.seed)
    student = load_student(cfg, teacher).train()
    info = TeacherInfo.from_cache(cfg.teacher, cache)
    params = {**get_method("SKD").defaults, **cfg.params, "mode": cfg.mode}
    method = get_method("SKD").build(student, info, {**params, "dictionary": str(dictionary)})
    method = method.to(student.device)
    data = DistillDataset(texts, student.tokenizer, cfg.max_length, student.spec.prompt, cache)
    tcfg = TrainConfig(**{**asdict(cfg.train), "checkpoint_dir": str(out / "checkpoints")})
    tcfg.batch_size = min(tcfg.batch_size, len(texts))
    # resume only checkpoints of exactly this training (same settings, data and dictionary)
    stamp = {
        "train": {k: v for k, v in asdict(tcfg).items() if k not in ("resume", "show_progress")},
        "params": params,
        "student": cfg.student,
        "texts": texts_fingerprint(texts),
        "dictionary": json.loads((Path(dictionary) / "meta.json").read_text()),
    }
    stamp_file = out / "train_settings.json"
    same = stamp_file.is_file() and json.loads(stamp_file.read_text()) == json.loads(
        json.dumps(stamp, default=str)
    )
    if not same:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        write_json_atomic(stamp_file, stamp)
    tcfg.resume = True
    history = train(method, data, tcfg, collate_fn=data.collate)
    return method, history


def save_student(method: SKDLoss, dictionary: Path, path: Path) -> Path:
    """Student as a HF/sentence-transformers folder plus ``skd_head.pt`` (W) and the dictionary."""
    save_encoder(method.student, path)
    meta_file = path / "samd_model.json"
    meta = json.loads(meta_file.read_text())
    if getattr(method.student.spec, "bidirectional", False):
        meta["bidirectional"] = True
    meta_file.write_text(json.dumps(meta, indent=2))
    torch.save(
        {"projection": method.proj.state_dict(), "dictionary": str(dictionary)},
        path / "skd_head.pt",
    )
    return path


def load_skd_student(path: str | Path, device: str | None = None) -> SKDLoss:
    """A student saved by :func:`save_student`, with its projection W and dictionary."""
    path = Path(path)
    head = torch.load(path / "skd_head.pt", map_location="cpu", weights_only=True)
    student = load_encoder(str(path), device=device)
    kind = "linear" if head["projection"] else "identity"
    method = SKDLoss(student, head["dictionary"], SKDParams(projection=kind))
    if head["projection"]:
        method.proj.load_state_dict(head["projection"])
    return method.to(student.device).eval()


def evaluate_student(
    cfg: SKDConfig,
    method: SKDLoss,
    teacher_tokenizer,
    teacher_prompt: str,
    tasks: list[TaskSplits],
) -> dict[str, MTEBResult]:
    """MTEB classification scores of every mode in ``cfg.eval_modes``."""
    out = {}
    for mode in cfg.eval_modes:
        enc = SenseEncoder(method, teacher_tokenizer, teacher_prompt, mode, cfg.max_length)
        out[mode] = evaluate_mteb(
            enc, tasks, samples_per_label=cfg.samples_per_label, n_experiments=cfg.n_experiments
        )
    return out


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
        _model_path(cfg.teacher), max_length=cfg.max_length, attn_implementation="eager"
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
        run_dir / "results.json",
        method="SKD",
        model=cfg.student,
        config=cfg.to_dict(),
        metrics=metrics,
        timings=timings,
        extra={
            "flavour": "SKD" if cfg.mode == "all" else "SKD-sep",
            "metrics_before": metrics_before,
            "teacher": cfg.teacher,
            "dictionaries": dict_info,
            "train_texts": {k: len(v) for k, v in texts.items()},
            "train": {"steps": len(histories), "last": histories[-1:]},
        },
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
    "evaluate_student",
    "load_skd_student",
    "load_student",
    "make_skd_config",
    "plot_skd",
    "run_skd",
    "save_student",
    "skd_table",
    "train_student",
]
