"""Sense dictionaries (SKD, DESIGN.md §6.9): gather teacher token states, merge, cluster.

A :class:`SenseTable` maps teacher token ids to a ragged set of vectors: gathered last-layer
states (``kind="states"``, up to ``max_per_token`` per id, reservoir-sampled) or sense centroids
(``kind="senses"``, the dictionary ``C_v`` of k_v × D_t). Tables are folders of ``.npy`` files plus
``meta.json``, written atomically (temp folder + rename), so every step can be resumed:

1. :func:`gather_senses` / :func:`gather_task` — run the teacher over a task's training texts;
2. :func:`merge_tables` — union of several tasks' states, cap re-applied (population-weighted);
3. :func:`cluster_senses` — per token id with ≥ 5 states: Markov clustering (affinity
   ``1/(euclidean + 0.01)``, expansion 2, inflation 1.65), then k-means with
   ``k = ⌊0.1·n_MCL⌋`` (``n_MCL ≤ 900``) or ``⌊0.4·n_MCL⌋`` (at least 5); ids with ≤ k states keep
   their states as senses. ``method="kmeans"`` skips MCL (fast mode, ``k = max(5, ⌊0.1·n⌋)``).
   Parallel over token ids (``jobs``), resumable shard by shard.

References:
    Wang et al., "Multi-Sense Embeddings for Language Models and Knowledge Distillation",
    Findings of ACL 2025, https://arxiv.org/abs/2504.06036 (code: Qitong-Wang/SenseDict);
    van Dongen, "Graph Clustering by Flow Simulation", PhD thesis, 2000 (MCL).
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
import scipy.sparse as sp
import torch
from scipy.spatial.distance import pdist, squareform
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

ARRAYS = ("token_ids", "offsets", "vectors", "seen")
MIN_STATES = 5  # token ids with fewer states are never clustered


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

    def as_dict(self) -> dict[int, np.ndarray]:
        """``{token_id: (k, D) array}`` (views)."""
        return {int(v): self.vectors[a:b] for v, a, b in self._spans()}

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
    from samd_common.alignment import token_spans

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


# ------------------------------------------------------------------ cluster
def sense_count(n_mcl: int, minimum: int = 5) -> int:
    """Senses kept for a token whose MCL found ``n_mcl`` clusters.

    ``k = ⌊0.1·n_MCL⌋`` if ``n_MCL ≤ 900`` else ``⌊0.4·n_MCL⌋``, and at least ``minimum``.
    """
    k = int(0.1 * n_mcl) if n_mcl <= 900 else int(0.4 * n_mcl)
    return max(minimum, k)


def mcl_affinity(states: np.ndarray, eps: float = 0.01) -> np.ndarray:
    """``1 / (‖x_a − x_b‖₂ + eps)`` for every pair, (n, D) → (n, n) float64."""
    return 1.0 / (squareform(pdist(np.asarray(states, dtype=np.float64), "euclidean")) + eps)


def _expand(m: np.ndarray, expansion: int) -> np.ndarray:
    """``m ** expansion`` (matrix power); sparse products once pruning has thinned ``m``."""
    if np.count_nonzero(m) < 0.1 * m.size:
        s = sp.csr_matrix(m)
        out = s
        for _ in range(expansion - 1):
            out = out @ s
        return out.toarray()
    return np.linalg.matrix_power(m, expansion)


def markov_clustering(
    affinity: np.ndarray,
    expansion: int = 2,
    inflation: float = 1.65,
    loop_value: float = 1.0,
    prune: float = 1e-3,
    max_iter: int = 100,
    tol: float = 1e-9,
) -> list[np.ndarray]:
    """Markov clustering (MCL) of a weighted undirected graph.

    Self-loops are set to ``loop_value`` and columns normalised; then repeat: expansion
    (matrix power), inflation (element-wise power, column normalisation), pruning of entries
    below ``prune`` (each column's maximum is kept) and re-normalisation, until the matrix stops
    changing. Clusters are the rows of the attractors (nodes with mass on their own diagonal).

    Args:
        affinity: (n, n) symmetric non-negative weights (e.g. :func:`mcl_affinity`).
        expansion: power of the expansion step (2).
        inflation: element-wise power of the inflation step (1.65 in SKD).
        loop_value: self-loop weight (as the ``markov_clustering`` package the reference uses).
        prune: entries below this are zeroed after each step.
        max_iter: iteration cap.
        tol: convergence threshold on the largest entry change.

    Returns:
        Disjoint clusters as sorted index arrays, ordered by their smallest member.
    """
    m = np.array(affinity, dtype=np.float64)
    n = m.shape[0]
    if m.shape != (n, n) or (m < 0).any():
        raise ValueError(f"affinity must be a square non-negative matrix, got shape {m.shape}.")
    if n == 0:
        return []
    np.fill_diagonal(m, loop_value)
    m /= m.sum(0, keepdims=True)  # column-stochastic
    for _ in range(max_iter):
        last = m
        m = _expand(m, expansion) ** inflation  # (n, n) expansion, then inflation
        m /= m.sum(0, keepdims=True)
        m[(m < prune) & (m < m.max(0, keepdims=True))] = 0.0  # prune, keep column maxima
        m /= m.sum(0, keepdims=True)
        if np.abs(m - last).max() <= tol:
            break
    clusters: dict[tuple[int, ...], None] = {}
    for i in np.flatnonzero(np.diag(m) > 0):  # attractors
        clusters[tuple(np.flatnonzero(m[i] > 0).tolist())] = None
    assigned = np.zeros(n, dtype=bool)  # overlapping attractor rows: the first cluster wins
    out = []
    for members in sorted(clusters, key=min):
        idx = np.array([j for j in members if not assigned[j]], dtype=np.int64)
        if len(idx):
            assigned[idx] = True
            out.append(idx)
    out += [np.array([j]) for j in np.flatnonzero(~assigned)]  # unreached nodes: singletons
    return sorted(out, key=lambda c: int(c[0]))


def cluster_token(
    states: np.ndarray,
    method: str = "mcl",
    seed: int = 0,
    n_init: int = 1,
    inflation: float = 1.65,
    expansion: int = 2,
    min_states: int = MIN_STATES,
) -> tuple[np.ndarray, int]:
    """Senses of one token id from its states.

    Args:
        states: (n, D) gathered states.
        method: ``"mcl"`` (MCL sets k, then k-means) or ``"kmeans"`` (``k = max(5, ⌊0.1·n⌋)``).
        seed: k-means ``random_state``.
        n_init: k-means restarts.
        inflation: MCL inflation.
        expansion: MCL expansion.
        min_states: ids with fewer states keep them as senses.

    Returns:
        ``(centroids (k, D) float32, n_mcl)``; ``n_mcl`` is 0 when MCL did not run.
    """
    from sklearn.cluster import KMeans

    x = np.asarray(states, dtype=np.float32)
    if len(x) < min_states:
        return x, 0
    if method == "mcl":
        n_mcl = len(markov_clustering(mcl_affinity(x), expansion, inflation))
        k = sense_count(n_mcl)
    elif method == "kmeans":
        n_mcl, k = 0, max(5, int(0.1 * len(x)))
    else:
        raise ValueError(f"Unknown clustering method {method!r}; use 'mcl' or 'kmeans'.")
    if len(x) <= k:
        return x, n_mcl
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
    return km.cluster_centers_.astype(np.float32), n_mcl


def _cluster_shard(
    shard: int, items: list[tuple[int, np.ndarray]], kwargs: dict
) -> tuple[int, dict]:
    ids, centroids, n_mcl = [], [], []
    for v, states in items:
        c, m = cluster_token(states, **kwargs)
        ids.append(v), centroids.append(c), n_mcl.append(m)
    counts = np.array([len(c) for c in centroids], dtype=np.int64)
    width = items[0][1].shape[1] if items else 0
    return shard, {
        "ids": np.array(ids, dtype=np.int64),
        "counts": counts,
        "centroids": np.concatenate(centroids) if centroids else np.zeros((0, width), np.float32),
        "n_mcl": np.array(n_mcl, dtype=np.int64),
    }


def cluster_senses(
    table: SenseTable,
    method: str = "mcl",
    jobs: int = 1,
    seed: int = 0,
    n_init: int = 1,
    inflation: float = 1.65,
    expansion: int = 2,
    out_dir: str | Path | None = None,
    shard_size: int = 256,
    show_progress: bool = True,
) -> SenseTable:
    """Turn a gathered ``states`` table into the sense dictionary (``kind="senses"``).

    Token ids are processed in shards of ``shard_size`` (largest first, so parallel workers stay
    busy), ``jobs`` at a time with joblib processes. With ``out_dir`` the result is saved there
    and each finished shard is kept in ``out_dir.partial/``, so an interrupted run resumes.

    Args:
        table: gathered states (``kind="states"``).
        method: ``"mcl"`` or ``"kmeans"`` (fast mode), see :func:`cluster_token`.
        jobs: parallel worker processes (``-1`` = all cores).
        seed: k-means seed (the same for every id, so results do not depend on ``jobs``).
        n_init: k-means restarts.
        inflation: MCL inflation (1.65).
        expansion: MCL expansion (2).
        out_dir: where to save the dictionary (resumable); None keeps it in memory only.
        shard_size: token ids per unit of work / resume granularity.
        show_progress: tqdm bar over shards.
    """
    from joblib import Parallel, delayed

    if table.meta.get("kind", "states") != "states":
        raise ValueError("cluster_senses expects a gathered 'states' table, got a dictionary.")
    kwargs = {"method": method, "seed": seed, "n_init": n_init, "inflation": inflation,
              "expansion": expansion}  # fmt: skip
    order = np.argsort(-table.counts, kind="stable")
    shards = [order[i : i + shard_size] for i in range(0, len(order), shard_size)]
    partial = Path(str(out_dir) + ".partial") if out_dir else None
    if partial is not None:
        partial.mkdir(parents=True, exist_ok=True)
        settings = partial / "settings.json"
        digest = hashlib.sha256(table.token_ids.tobytes() + table.counts.tobytes())
        digest.update(json.dumps(table.meta, sort_keys=True, default=str).encode())
        current = json.dumps({**kwargs, "shard_size": shard_size, "input": digest.hexdigest()})
        if settings.is_file() and settings.read_text() != current:
            log.warning("cluster: %s holds shards of other settings; starting over", partial)
            shutil.rmtree(partial)
            partial.mkdir(parents=True)
        settings.write_text(current)
    results: dict[int, dict] = {}
    todo = []
    for s in range(len(shards)):
        f = partial / f"shard-{s:05d}.npz" if partial else None
        if f is not None and f.is_file():
            with np.load(f) as z:
                results[s] = {k: z[k] for k in z.files}
        else:
            todo.append(s)

    def items(s: int) -> list[tuple[int, np.ndarray]]:
        ids, starts = table.token_ids[shards[s]], table.offsets[shards[s]]
        ends = table.offsets[shards[s] + 1]
        return [
            (int(v), np.asarray(table.vectors[a:b]))
            for v, a, b in zip(ids, starts, ends, strict=True)
        ]

    bar = tqdm(total=len(shards), initial=len(results), desc=f"cluster ({method})",
               disable=not show_progress)  # fmt: skip
    runner = Parallel(n_jobs=jobs, return_as="generator_unordered") if jobs != 1 else None
    calls = ((s, items(s)) for s in todo)
    if runner is not None:
        gen = runner(delayed(_cluster_shard)(s, it, kwargs) for s, it in calls)
    else:
        gen = (_cluster_shard(s, it, kwargs) for s, it in calls)
    for s, res in gen:
        if partial is not None:
            tmp = partial / f"shard-{s:05d}.tmp.npz"
            np.savez(tmp, **res)
            os.replace(tmp, partial / f"shard-{s:05d}.npz")
        results[s] = res
        bar.update(1)
    bar.close()
    rows = {}
    n_mcl = {}
    for res in results.values():
        starts = np.r_[0, np.cumsum(res["counts"])]
        spans = zip(
            res["ids"].tolist(), starts[:-1], starts[1:], res["n_mcl"].tolist(), strict=True
        )
        for v, a, b, m in spans:
            rows[v], n_mcl[v] = res["centroids"][a:b], m
    seen = dict(zip(table.token_ids.tolist(), table.seen.tolist(), strict=True))
    clustered = [m for m in n_mcl.values() if m > 0]
    meta = {
        **table.meta,
        **kwargs,
        "kind": "senses",
        "mean_senses": float(np.mean([len(r) for r in rows.values()])) if rows else 0.0,
        "mean_n_mcl": float(np.mean(clustered)) if clustered else 0.0,
    }
    out = SenseTable.from_dict(rows, seen, meta, dim=table.dim, dtype=np.float32)
    if out_dir is not None:
        out.save(out_dir)
        shutil.rmtree(partial, ignore_errors=True)
    return out
