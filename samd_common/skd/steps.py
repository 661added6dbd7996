"""The steps of the SKD pipeline (DESIGN.md §6.9), each usable on its own.

* models and data: :func:`load_student` (``"teacher:N"`` = the teacher's first N layers),
  :func:`load_inputs` (MTEB tasks and their capped training texts, :func:`write_smoke_data`);
* :func:`build_dictionary` — teacher cache, ``senses.gather_task`` per task,
  ``senses.merge_tables``, ``clustering.cluster_senses``;
* :func:`train_student` — the SKD method on a fresh student, resuming matching checkpoints;
* :func:`save_student` / :func:`load_skd_student` — the student with its projection W and
  dictionary;
* :func:`evaluate_student` — MTEB scores through :class:`SenseEncoder` (``replace`` /
  ``continuous``).

The stages in ``samd_common.skd.stages`` chain them inside ``experiment.run_experiment``;
``scripts/skd.py`` exposes them as commands. ``cfg`` is always an ``ExperimentConfig`` of SKD.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samd_common.alignment import align_batch, token_spans
from samd_common.config import ExperimentConfig
from samd_common.data.corpus import load_corpus
from samd_common.data.demo import demo_frames
from samd_common.evaluation.mteb import MTEBResult, evaluate_mteb
from samd_common.evaluation.mteb_tasks import TaskSplits, load_mteb_task
from samd_common.files import write_json_atomic
from samd_common.models import SentenceEncoder, load_encoder, save_encoder
from samd_common.models.llm2vec import first_layers
from samd_common.models.tiny import resolve_model
from samd_common.skd.clustering import cluster_senses
from samd_common.skd.config import EVAL_MODES, split_params
from samd_common.skd.loss import SKDLoss, SKDParams, replace_with_senses, span_group_pairs
from samd_common.skd.senses import (
    SenseTable,
    gather_task,
    is_complete,
    merge_tables,
    texts_fingerprint,
)
from samd_common.training.batching import DistillDataset
from samd_common.training.loop import TrainConfig, seed_everything, train
from samd_common.training.teacher_cache import build_teacher_cache

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ models and data
def load_student(cfg: ExperimentConfig, teacher: SentenceEncoder) -> SentenceEncoder:
    """The student: ``"teacher:N"`` copies the teacher's first N layers, else ``load_encoder``.

    Always fp32 weights (a bf16 teacher's copy too): in bf16 weights most AdamW steps at
    lr ~1e-5 round to nothing; bf16 compute comes from the training loop's autocast.
    """
    if cfg.student.startswith("teacher:"):
        return first_layers(teacher, int(cfg.student.split(":", 1)[1])).float()
    return load_encoder(
        resolve_model(cfg.student),
        max_length=cfg.max_length,
        device=teacher.device,
        dtype="float32",
    )


def write_smoke_data(folder: Path) -> Path:
    """Tiny synthetic Banking77/Emotion files in the MTEB layout (from ``data.demo``)."""
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


def load_inputs(
    cfg: ExperimentConfig, run_dir: Path
) -> tuple[dict[str, TaskSplits], dict[str, list]]:
    """Loaded tasks and each task's (capped) training texts."""
    data_dir = Path(cfg.eval_dir) if cfg.eval_dir else None
    if data_dir is None and cfg.preset == "smoke":
        data_dir = write_smoke_data(Path(cfg.output_dir) / "skd-smoke-data")
    tasks = {t: load_mteb_task(t, data_dir, cfg.eval.splits) for t in cfg.eval.tasks}
    texts = {}
    for name, ts in tasks.items():
        pool = [t for split in ts.subsets.values() for t in split[ts.task.train_split].texts]
        texts[name] = _cap(list(dict.fromkeys(pool)), cfg.max_texts, cfg.seed)
    if cfg.train_csv:
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
    cfg: ExperimentConfig,
    teacher: SentenceEncoder,
    texts: dict[str, list[str]],
    work: Path,
    name: str,
) -> tuple[Path, Any]:
    """Teacher cache over the texts, gather per task, merge (several tasks), cluster.

    Returns:
        ``(dictionary folder, teacher cache over the concatenated texts)``.
    """
    _, settings = split_params(cfg.params)
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
            settings.max_per_token,
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
        "cluster": settings.cluster,
        "seed": cfg.seed,
        "max_per_token": settings.max_per_token,
    }
    stamp_file = work / f"dictionary-{name}.json"
    if is_complete(out) and stamp_file.is_file():
        if json.loads(stamp_file.read_text()) == stamp:
            log.info("dictionary %s: complete, skipped", out)
            return out, cache
    loaded = [SenseTable.load(p) for p in tables]
    states = loaded[0]
    if len(loaded) > 1:
        states = merge_tables(loaded, settings.max_per_token, cfg.seed)
    cluster_senses(states, settings.cluster, settings.jobs, cfg.seed, out_dir=out)
    write_json_atomic(stamp_file, stamp)
    return out, cache


def train_student(
    cfg: ExperimentConfig,
    teacher: SentenceEncoder,
    dictionary: Path,
    texts: list[str],
    cache,
    out: Path,
    build: Callable[..., SKDLoss],
) -> tuple[SKDLoss, Any]:
    """Build a fresh student and its SKD method, train it on ``texts`` (cached teacher).

    ``build(student, cache, params)`` is the registry's builder (``experiment.method_builder``).
    """
    seed_everything(cfg.seed)  # the student's weights and W's start do not depend on the past
    student = load_student(cfg, teacher).train()
    params, _ = split_params(cfg.params)
    method = build(student, cache, {**params, "dictionary": str(dictionary)})
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
    cfg: ExperimentConfig,
    method: SKDLoss,
    teacher_tokenizer,
    teacher_prompt: str,
    tasks: list[TaskSplits],
) -> dict[str, MTEBResult]:
    """MTEB classification scores of every mode in the settings' ``eval_modes``."""
    out = {}
    for mode in split_params(cfg.params)[1].eval_modes:
        enc = SenseEncoder(method, teacher_tokenizer, teacher_prompt, mode, cfg.max_length)
        out[mode] = evaluate_mteb(
            enc,
            tasks,
            samples_per_label=cfg.eval.samples_per_label,
            n_experiments=cfg.eval.n_experiments,
        )
    return out
