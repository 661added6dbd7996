"""Sense tables (SKD, DESIGN.md §6.9): gather teacher token states and merge them.

A :class:`SenseTable` maps teacher token ids to a ragged set of vectors: gathered last-layer
states (``kind="states"``, up to ``max_per_token`` per id, reservoir-sampled) or sense centroids
(``kind="senses"``, the dictionary ``C_v`` of k_v × D_t). Tables are folders of ``.npy`` files plus
``meta.json``, written atomically (temp folder + rename), so every step can be resumed:

1. :func:`gather_senses` / :func:`gather_task` — run the teacher over a task's training texts;
2. :func:`merge_tables` — union of several tasks' states, cap re-applied (population-weighted);
3. ``samd_common.skd.clustering.cluster_senses`` — MCL → k-means per token id, giving the
   dictionary.

References:
    Wang et al., "Multi-Sense Embeddings for Language Models and Knowledge Distillation",
    Findings of ACL 2025, https://arxiv.org/abs/2504.06036 (code: Qitong-Wang/SenseDict).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from samd_common.alignment import token_spans

log = logging.getLogger(__name__)

ARRAYS = ("token_ids", "offsets", "vectors", "seen")


# ------------------------------------------------------------------ the table
@dataclass
class SenseTable:
    """Token id → ragged rows of vectors (states or sense centroids).

    Attributes:
        token_ids: (V,) int64, sorted, unique teacher token ids.
        offsets: (V + 1,) int64; id ``token_ids[i]`` owns rows ``offsets[i]:offsets[i+1]``.
        vectors: (N, D) float16 (states) or float32 (centroids).
        seen: (V,) int64 occurrences of each id in the gathered texts (reservoir population).
        meta: provenance: ``kind``, ``teacher``, ``tokenizer`` fingerprint, ``dim``, settings.
    """

    token_ids: np.ndarray
    offsets: np.ndarray
    vectors: np.ndarray
    seen: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def dim(self) -> int:
        """Vector width D_t."""
        return int(self.vectors.shape[1])

    @property
    def counts(self) -> np.ndarray:
        """(V,) rows per token id."""
        return np.diff(self.offsets)

    def rows(self, token_id: int) -> np.ndarray:
        """(k, D) vectors of one token id; (0, D) when the id has no entry."""
        i = int(np.searchsorted(self.token_ids, token_id))
        if i == len(self.token_ids) or self.token_ids[i] != token_id:
            return self.vectors[:0]
        return self.vectors[self.offsets[i] : self.offsets[i + 1]]

    def _spans(self) -> Iterator[tuple[int, int, int]]:
        yield from zip(
            self.token_ids.tolist(),
            self.offsets[:-1].tolist(),
            self.offsets[1:].tolist(),
            strict=True,
        )

    @classmethod
    def from_dict(
        cls,
        rows: dict[int, np.ndarray],
        seen: dict[int, int] | None = None,
        meta: dict | None = None,
        dim: int | None = None,
        dtype=np.float16,
    ) -> SenseTable:
        """Build from ``{token_id: (k, D) array}`` (ids sorted; empty entries dropped)."""
        ids = np.array(sorted(k for k, v in rows.items() if len(v)), dtype=np.int64)
        parts = [np.asarray(rows[int(v)], dtype=dtype) for v in ids]
        width = parts[0].shape[1] if parts else int(dim or (meta or {}).get("dim", 0))
        counts = np.array([len(p) for p in parts], dtype=np.int64)
        vectors = np.concatenate(parts) if parts else np.zeros((0, width), dtype=dtype)
        seen_arr = np.array([(seen or {}).get(int(v), len(rows[int(v)])) for v in ids], np.int64)
        return cls(ids, np.r_[0, np.cumsum(counts)].astype(np.int64), vectors, seen_arr, meta or {})

    def save(self, path: str | Path) -> Path:
        """Write atomically: ``path.partial/`` is filled, marked complete, then renamed."""
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(self, name))
        meta = {**self.meta, "dim": self.dim, "n_tokens": len(self), "n_rows": len(self.vectors)}
        (tmp / "meta.json").write_text(json.dumps({**meta, "complete": True}, indent=1))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> SenseTable:
        """Read a folder written by :meth:`save`.

        Raises:
            FileNotFoundError: the folder is missing or was never completed.
        """
        path = Path(path)
        if not is_complete(path):
            raise FileNotFoundError(
                f"{path}: no complete sense table (missing or interrupted); rerun the step "
                f"that writes it (scripts/skd.py gather/merge/cluster)."
            )
        arrays = {k: np.load(path / f"{k}.npy", mmap_mode="r" if mmap else None) for k in ARRAYS}
        meta = json.loads((path / "meta.json").read_text())
        meta.pop("complete", None)
        return cls(**arrays, meta=meta)


def is_complete(path: str | Path) -> bool:
    """Whether ``path`` holds a completely written table."""
    meta = Path(path) / "meta.json"
    return meta.is_file() and json.loads(meta.read_text()).get("complete") is True


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of a fast tokenizer's definition (vocab, normaliser, …), 16 hex digits."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec.pop("truncation", None), spec.pop("padding", None)  # call state, not identity
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def texts_fingerprint(texts: Sequence[str]) -> str:
    """Hash of an ordered list of texts, 16 hex digits."""
    return hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:16]


# ------------------------------------------------------------------ gather
class ReservoirSampler:
    """Per-key reservoir sampling (Algorithm R): a uniform sample of ≤ ``cap`` items per key.

    The i-th occurrence of a key (1-based) is kept while i ≤ cap; afterwards it replaces slot
    ``r`` with ``r = ⌊u·i⌋`` (u uniform, seeded) when ``r < cap``. The result depends only on the
    seed and the order of the stream, not on how it is cut into batches.
    """

    def __init__(self, cap: int = 1000, seed: int = 0) -> None:
        if cap < 1:
            raise ValueError(f"cap must be ≥ 1 (got {cap}).")
        self.cap, self.rng = cap, np.random.default_rng(seed)
        self.store: dict[int, list[np.ndarray]] = {}
        self.seen: dict[int, int] = {}

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Offer ``keys`` (n,) with ``vectors`` (n, D), in stream order."""
        draws = self.rng.random(len(keys))  # one draw per item keeps the stream seeded
        for key, vec, u in zip(keys.tolist(), vectors, draws.tolist(), strict=True):
            count = self.seen[key] = self.seen.get(key, 0) + 1
            if count <= self.cap:
                self.store.setdefault(key, []).append(vec.copy())
            else:
                slot = int(u * count)
                if slot < self.cap:
                    self.store[key][slot] = vec.copy()

    def table(self, meta: dict | None = None, dim: int | None = None) -> SenseTable:
        """The sample as a :class:`SenseTable` (fp16 rows)."""
        rows = {k: np.stack(v) for k, v in self.store.items()}
        return SenseTable.from_dict(rows, self.seen, meta, dim=dim)


@torch.inference_mode()
def teacher_token_states(
    teacher, texts: Sequence[str], max_length: int = 128, batch_size: int = 32
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(token_ids (n,), last-layer states (n, D_t) fp16)`` per text, content tokens only.

    Specials, padding and prompt tokens are left out (``alignment.token_spans``' ``real``).
    """
    was_training = teacher.training
    teacher.eval()
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        spans = token_spans(teacher.tokenizer, chunk, max_length, prompt=teacher.spec.prompt)
        ids = torch.as_tensor(spans.input_ids, device=teacher.device)
        mask = torch.as_tensor(spans.attention_mask, device=teacher.device)
        hidden = teacher(input_ids=ids, attention_mask=mask)["token_embeddings"]  # (B, T, D_t)
        hidden = hidden.float().cpu().numpy().astype(np.float16)
        for b in range(len(chunk)):
            keep = spans.real[b]
            yield spans.input_ids[b][keep], hidden[b][keep]
    teacher.train(was_training)


def cache_token_states(cache, indices: Iterable[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Same stream as :func:`teacher_token_states`, read from a ``TeacherCache``."""
    for i in indices:
        item = cache.item(int(i))
        keep = item["real"].astype(bool)
        yield item["input_ids"][keep], item["hidden"][keep].astype(np.float16)


def gather_senses(
    stream: Iterable[tuple[np.ndarray, np.ndarray]],
    max_per_token: int = 1000,
    seed: int = 0,
    meta: dict | None = None,
    total: int | None = None,
    show_progress: bool = True,
) -> SenseTable:
    """Reservoir-sample up to ``max_per_token`` states per token id from a token-state stream.

    Args:
        stream: ``(token_ids (n,), states (n, D))`` per text, e.g. :func:`teacher_token_states`.
        max_per_token: cap per token id (reference: 1000).
        seed: reservoir seed.
        meta: provenance stored in the table (``teacher``, ``tokenizer``, …).
        total: number of texts (progress bar only).
        show_progress: tqdm bar.

    Returns:
        ``kind="states"`` table.
    """
    sampler = ReservoirSampler(max_per_token, seed)
    dim = None
    for ids, states in tqdm(stream, total=total, desc="gather senses", disable=not show_progress):
        dim = states.shape[1]
        if len(ids):
            sampler.add(np.asarray(ids, dtype=np.int64), states)
    info = {**(meta or {}), "kind": "states", "max_per_token": max_per_token, "seed": seed}
    return sampler.table(info, dim=dim)


def gather_task(
    teacher,
    texts: Sequence[str],
    out_dir: str | Path,
    task: str,
    max_per_token: int = 1000,
    seed: int = 0,
    max_length: int = 128,
    batch_size: int = 32,
    cache=None,
    cache_indices: Sequence[int] | None = None,
    show_progress: bool = True,
) -> Path:
    """Gather one task's table into ``out_dir/task``; skipped when a complete matching one exists.

    ``cache`` (a ``TeacherCache`` over ``texts``, optionally ``cache_indices`` into it) replaces
    the teacher forward; ``teacher`` still supplies the name and tokenizer fingerprint.
    """
    path = Path(out_dir) / task
    key = {
        "teacher": teacher.spec.name,
        "tokenizer": tokenizer_fingerprint(teacher.tokenizer),
        "task": task,
        "texts": texts_fingerprint(texts),
        "n_texts": len(texts),
        "max_length": max_length,
        "prompt": teacher.spec.prompt,
    }
    if is_complete(path):
        old = json.loads((path / "meta.json").read_text())
        if (
            all(old.get(k) == v for k, v in key.items())
            and old.get("max_per_token") == max_per_token
        ):
            log.info("gather %s: complete table found, skipped (%s)", task, path)
            return path
        log.warning("gather %s: table at %s was built with other settings; rebuilding", task, path)
    if cache is not None:
        stream = cache_token_states(cache, cache_indices or range(len(texts)))
    else:
        stream = teacher_token_states(teacher, texts, max_length, batch_size)
    table = gather_senses(stream, max_per_token, seed, key, len(texts), show_progress)
    return table.save(path)


# ------------------------------------------------------------------ merge
def merge_tables(
    tables: Sequence[SenseTable], max_per_token: int | None = None, seed: int = 0
) -> SenseTable:
    """Union of several gathered tables, with the per-id cap re-applied.

    Where an id has more than ``max_per_token`` rows in total, rows are drawn without replacement
    with probability ∝ ``seen / kept`` of their table (each kept row stands for that many
    occurrences), so the merged sample stays close to uniform over all occurrences. Below the
    cap the merge is the exact union (rows in table order).

    Raises:
        ValueError: tables from different teachers/tokenizers or of different widths.
    """
    if not tables:
        raise ValueError("merge_tables needs at least one table.")
    for key in ("tokenizer", "dim"):
        values = {t.meta.get(key, t.dim if key == "dim" else None) for t in tables}
        if len(values) > 1:
            raise ValueError(
                f"Cannot merge tables with different {key}s {sorted(map(str, values))}: they "
                f"come from different teachers; gather every task with the same teacher."
            )
    cap = max_per_token or max(int(t.meta.get("max_per_token", 1000)) for t in tables)
    rng = np.random.default_rng(seed)
    rows: dict[int, list[np.ndarray]] = {}
    weights: dict[int, list[np.ndarray]] = {}
    seen: dict[int, int] = {}
    for t in tables:
        for (v, a, b), s in zip(t._spans(), t.seen.tolist(), strict=True):
            rows.setdefault(v, []).append(np.asarray(t.vectors[a:b]))
            weights.setdefault(v, []).append(np.full(b - a, s / max(b - a, 1)))
            seen[v] = seen.get(v, 0) + s
    merged = {}
    for v in sorted(rows):
        stack = np.concatenate(rows[v])
        if len(stack) > cap:
            w = np.concatenate(weights[v])
            stack = stack[np.sort(rng.choice(len(stack), cap, replace=False, p=w / w.sum()))]
        merged[v] = stack
    meta = {
        **tables[0].meta,
        "kind": "states",
        "task": "+".join(str(t.meta.get("task", "?")) for t in tables),
        "n_texts": sum(int(t.meta.get("n_texts", 0)) for t in tables),
        "texts": "+".join(str(t.meta.get("texts", "?")) for t in tables),
        "max_per_token": cap,
        "merged_from": len(tables),
    }
    return SenseTable.from_dict(merged, seen, meta, dim=tables[0].dim)
