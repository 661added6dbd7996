"""Sense clustering (SKD, DESIGN.md §6.9): gathered token states → the sense dictionary.

:func:`cluster_senses` turns a gathered ``kind="states"`` :class:`~.senses.SenseTable`
into the dictionary (``kind="senses"``): per token id with ≥ 5 states, Markov clustering
(:func:`markov_clustering` on :func:`mcl_affinity`, ``1/(euclidean + 0.01)``, expansion 2,
inflation 1.65) sets the number of senses (:func:`sense_count`: ``k = ⌊0.1·n_MCL⌋`` for
``n_MCL ≤ 900``, else ``⌊0.4·n_MCL⌋``, at least 5), then k-means finds them
(:func:`cluster_token`); ids with ≤ k states keep their states as senses. ``method="kmeans"``
skips MCL (fast mode, ``k = max(5, ⌊0.1·n⌋)``). Parallel over token ids (``jobs``), resumable
shard by shard.

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
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.spatial.distance import pdist, squareform
from tqdm.auto import tqdm

from samd_common.skd.senses import SenseTable

log = logging.getLogger(__name__)

MIN_STATES = 5  # token ids with fewer states are never clustered


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


def _open_partial(
    out_dir: str | Path | None, table: SenseTable, kwargs: dict, shard_size: int
) -> Path | None:
    """``out_dir.partial/`` for finished shards, emptied when it holds other settings' shards."""
    if not out_dir:
        return None
    partial = Path(str(out_dir) + ".partial")
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
    return partial


def _load_finished(partial: Path | None, n_shards: int) -> tuple[dict[int, dict], list[int]]:
    """Shards already in ``partial`` (shard → result) and the shard numbers still to do."""
    results: dict[int, dict] = {}
    todo = []
    for s in range(n_shards):
        f = partial / f"shard-{s:05d}.npz" if partial else None
        if f is not None and f.is_file():
            with np.load(f) as z:
                results[s] = {k: z[k] for k in z.files}
        else:
            todo.append(s)
    return results, todo


def _shard_items(table: SenseTable, shard: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(token id, (n, D) states)`` of the ids at positions ``shard`` of ``table``."""
    ids, starts, ends = table.token_ids[shard], table.offsets[shard], table.offsets[shard + 1]
    return [
        (int(v), np.asarray(table.vectors[a:b])) for v, a, b in zip(ids, starts, ends, strict=True)
    ]


def _run_shards(
    table: SenseTable, shards: list[np.ndarray], todo: list[int], kwargs: dict, jobs: int
) -> Iterator[tuple[int, dict]]:
    """Cluster the ``todo`` shards, ``jobs`` at a time; yields ``(shard, result)`` as they end."""
    from joblib import Parallel, delayed

    calls = ((s, _shard_items(table, shards[s])) for s in todo)
    if jobs == 1:
        return (_cluster_shard(s, it, kwargs) for s, it in calls)
    runner = Parallel(n_jobs=jobs, return_as="generator_unordered")
    return runner(delayed(_cluster_shard)(s, it, kwargs) for s, it in calls)


def _save_shard(partial: Path, s: int, res: dict) -> None:
    """Write one finished shard atomically (temp file + rename)."""
    tmp = partial / f"shard-{s:05d}.tmp.npz"
    np.savez(tmp, **res)
    os.replace(tmp, partial / f"shard-{s:05d}.npz")


def _assemble(table: SenseTable, results: dict[int, dict], kwargs: dict) -> SenseTable:
    """The ``kind="senses"`` dictionary from every shard's centroids."""
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
    return SenseTable.from_dict(rows, seen, meta, dim=table.dim, dtype=np.float32)


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
    if table.meta.get("kind", "states") != "states":
        raise ValueError("cluster_senses expects a gathered 'states' table, got a dictionary.")
    kwargs = {"method": method, "seed": seed, "n_init": n_init, "inflation": inflation,
              "expansion": expansion}  # fmt: skip
    order = np.argsort(-table.counts, kind="stable")
    shards = [order[i : i + shard_size] for i in range(0, len(order), shard_size)]
    partial = _open_partial(out_dir, table, kwargs, shard_size)
    results, todo = _load_finished(partial, len(shards))
    bar = tqdm(total=len(shards), initial=len(results), desc=f"cluster ({method})",
               disable=not show_progress)  # fmt: skip
    for s, res in _run_shards(table, shards, todo, kwargs, jobs):
        if partial is not None:
            _save_shard(partial, s, res)
        results[s] = res
        bar.update(1)
    bar.close()
    out = _assemble(table, results, kwargs)
    if out_dir is not None:
        out.save(out_dir)
        shutil.rmtree(partial, ignore_errors=True)
    return out
