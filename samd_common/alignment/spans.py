"""Span maps between two tokenizations from fast-tokenizer character offsets.

:func:`token_spans` tokenizes a batch and gives each token its ``[start, end)`` character span;
:func:`batch_overlap` turns student (``T_s``) and teacher (``T_t``) spans into overlap counts
(``O[j, i]`` = characters shared by student token j and teacher token i), from which
:func:`row_normalize`, :func:`coverage` and :func:`batch_span_groups` (connected components of the
overlap graph) derive the alignment; :func:`align_batch` gives the overlap and the groups at once
(DESIGN.md §6, "Alignment primitives"). Plain numpy arrays in and out: no ``torch``, no model
code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from samd_common.alignment.strings import _MARKERS

logger = logging.getLogger(__name__)


@dataclass
class SpanBatch:
    """A tokenized batch with character spans into the original texts.

    Attributes:
        input_ids: (B, T) int64 token ids (prompt included).
        attention_mask: (B, T) int64, 1 for non-padding positions.
        spans: (B, T, 2) int32 ``[start, end)`` character offsets into the text *without* the
            prompt, trimmed of whitespace at both ends; ``(0, 0)`` where ``real`` is False.
        real: (B, T) bool content tokens: not special, not padding, not inside the prompt, not a
            lone word-boundary marker, and with a non-empty trimmed span.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    spans: np.ndarray
    real: np.ndarray


def _require_offsets(tokenizer, has_offsets: bool = True) -> None:
    if not (has_offsets and getattr(tokenizer, "is_fast", False)):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', type(tokenizer).__name__)!r} is not a "
            "fast tokenizer and gives no character offsets: span alignment needs a fast "
            "(Rust `tokenizers`) tokenizer; only the string-based MinED map works without offsets"
        )


def _trim_tables(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(L+1,) tables: ``nxt[k]`` first non-space index ≥ k; ``prv[k]`` 1 + last one < k."""
    n = len(text)
    content = ~np.fromiter((c.isspace() for c in text), dtype=bool, count=n)
    pos = np.arange(n)
    nxt = np.minimum.accumulate(np.where(content, pos, n)[::-1])[::-1]
    prv = np.maximum.accumulate(np.where(content, pos + 1, 0))
    return np.append(nxt, n), np.concatenate([[0], prv])


def token_spans(tokenizer, texts: list[str], max_length: int, prompt: str = "") -> SpanBatch:
    """Tokenize ``prompt + text`` and return each token's character span in ``text``.

    Args:
        tokenizer: A Hugging Face *fast* tokenizer.
        texts: B strings (without the prompt).
        max_length: Truncation length in tokens, specials included.
        prompt: Prefix prepended to every text (e.g. ``"query: "``); its tokens are not real.

    Returns:
        A :class:`SpanBatch` of (B, T) arrays, T = longest tokenization in the batch.

    Raises:
        ValueError: If the tokenizer has no offsets, or ``texts`` is empty.
    """
    _require_offsets(tokenizer)
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError("texts must be a non-empty list of strings")
    enc = tokenizer(
        [prompt + t for t in texts],
        max_length=max_length,
        truncation=True,
        padding=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_tensors="np",
    )
    _require_offsets(tokenizer, has_offsets="offset_mapping" in enc)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)  # (B, T)
    mask = np.asarray(enc["attention_mask"], dtype=np.int64)  # (B, T)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64)  # (B, T, 2) in prompt + text
    special = np.asarray(enc["special_tokens_mask"], dtype=bool)
    pieces = tokenizer.convert_ids_to_tokens(ids.ravel().tolist())
    marker_only = np.array([not p.strip(_MARKERS) for p in pieces]).reshape(ids.shape)
    candidate = (mask == 1) & ~special & ~marker_only

    p = len(prompt)
    spans = np.zeros((*ids.shape, 2), dtype=np.int32)  # (B, T, 2)
    real = np.zeros(ids.shape, dtype=bool)
    for b, text in enumerate(texts):
        nxt, prv = _trim_tables(prompt + text)
        off = np.clip(offsets[b], 0, len(nxt) - 1)  # (T, 2)
        start, end = nxt[off[:, 0]], prv[off[:, 1]]
        straddle = candidate[b] & (start < p) & (end > p)
        if straddle.any():
            logger.debug("sample %d: %d token(s) straddle the prompt; clipped", b, straddle.sum())
        start = np.maximum(start, p)
        ok = candidate[b] & (end > start)
        spans[b, ok, 0], spans[b, ok, 1] = start[ok] - p, end[ok] - p
        real[b] = ok
    return SpanBatch(input_ids=ids, attention_mask=mask, spans=spans, real=real)


def span_overlap_matrix(s_spans: np.ndarray, t_spans: np.ndarray) -> np.ndarray:
    """Characters shared by each student/teacher token pair, (T_s, 2), (T_t, 2) → (T_s, T_t).

    ``O[j, i] = max(0, min(end_s[j], end_t[i]) − max(start_s[j], start_t[i]))``, int32; also
    works batched ((B, T_s, 2), (B, T_t, 2) → (B, T_s, T_t)). ``(0, 0)`` spans overlap nothing.
    """
    s, t = np.asarray(s_spans)[..., :, None, :], np.asarray(t_spans)[..., None, :, :]
    inter = np.minimum(s[..., 1], t[..., 1]) - np.maximum(s[..., 0], t[..., 0])  # (…, T_s, T_t)
    return np.maximum(inter, 0).astype(np.int32)


def batch_overlap(s: SpanBatch, t: SpanBatch) -> np.ndarray:
    """:func:`span_overlap_matrix` over a batch, real tokens only.

    Args:
        s: Student batch, spans (B, T_s, 2).
        t: Teacher batch of the same B texts, spans (B, T_t, 2).

    Returns:
        (B, T_s, T_t) int32; rows/columns of non-real tokens are zero.
    """
    if s.spans.shape[0] != t.spans.shape[0]:
        raise ValueError(
            f"batch sizes differ: student {s.spans.shape[0]}, teacher "
            f"{t.spans.shape[0]}; tokenize the same texts on both sides"
        )
    o = span_overlap_matrix(s.spans, t.spans)  # (B, T_s, T_t)
    return o * (s.real[:, :, None] & t.real[:, None, :])


def naive_overlap(
    s_spans: np.ndarray, t_spans: np.ndarray, s_real: np.ndarray, t_real: np.ndarray
) -> np.ndarray:
    """Plain-loop reference for :func:`batch_overlap` on (B, T, 2) spans (tests/benchmark; slow)."""
    n_b, n_s, n_t = len(s_spans), len(s_spans[0]), len(t_spans[0])
    out = np.zeros((n_b, n_s, n_t), dtype=np.int32)
    for b in range(n_b):
        for j in range(n_s):
            for i in range(n_t):
                if s_real[b][j] and t_real[b][i]:
                    lo = max(int(s_spans[b][j][0]), int(t_spans[b][i][0]))
                    hi = min(int(s_spans[b][j][1]), int(t_spans[b][i][1]))
                    out[b, j, i] = max(0, hi - lo)
    return out


def row_normalize(overlap: np.ndarray) -> np.ndarray:
    """Row-stochastic alignment ``A = O / O.sum(-1)``, (…, T_s, T_t) float32; zero rows stay 0."""
    o = np.asarray(overlap, dtype=np.float32)
    total = o.sum(-1, keepdims=True)  # (…, T_s, 1)
    return np.divide(o, total, out=np.zeros_like(o), where=total > 0)


def coverage(
    overlap: np.ndarray, s_real: np.ndarray, t_real: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Share of real tokens with any overlap on each side; ``conf = min(c_s, c_t)``.

    Args:
        overlap: (…, T_s, T_t) overlap counts (e.g. (B, T_s, T_t)).
        s_real: (…, T_s) bool.
        t_real: (…, T_t) bool.

    Returns:
        ``(c_s, c_t, conf)``, each float32 of shape (…) (e.g. (B,)); 0 when a side has no
        real token.
    """
    linked = np.asarray(overlap) > 0
    c_s, c_t = (
        ((linked.any(axis) & real).sum(-1) / np.maximum(real.sum(-1), 1)).astype(np.float32)
        for axis, real in ((-1, np.asarray(s_real)), (-2, np.asarray(t_real)))
    )
    return c_s, c_t, np.minimum(c_s, c_t)


def batch_span_groups(
    overlap: np.ndarray, s_real: np.ndarray, t_real: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Span groups: connected components of the bipartite student/teacher overlap graph.

    Each group is a set of student tokens and a set of teacher tokens covering the same
    characters: the finest segmentation both tokenizations agree on. Group ids run 0..n−1 in
    order of each group's first student token; tokens in no group get −1.

    Args:
        overlap: (B, T_s, T_t) overlap counts.
        s_real: (B, T_s) bool.
        t_real: (B, T_t) bool.

    Returns:
        ``(s_gid, t_gid)``: (B, T_s) and (B, T_t) int64 group ids.
    """
    n_b, n_s, n_t = overlap.shape
    edge = (overlap > 0) & s_real[:, :, None] & t_real[:, None, :]  # (B, T_s, T_t)
    b, j, i = np.nonzero(edge)
    width = n_s + n_t  # nodes of sample b: students b·width + j, teachers b·width + T_s + i
    graph = coo_matrix(
        (np.ones(len(b), dtype=np.int8), (b * width + j, b * width + n_s + i)),
        shape=(n_b * width, n_b * width),
    )
    n_comp, labels = connected_components(graph, directed=False)
    labels = labels.reshape(n_b, width)  # (B, T_s + T_t)
    s_lab, t_lab = labels[:, :n_s], labels[:, n_s:]
    s_in, t_in = edge.any(2), edge.any(1)  # (B, T_s), (B, T_t)
    first = np.full(n_comp, n_s, dtype=np.int64)  # first student index of each component
    pos = np.broadcast_to(np.arange(n_s), (n_b, n_s))
    np.minimum.at(first, s_lab[s_in], pos[s_in])
    is_first = s_in & (first[s_lab] == pos)
    rank = np.cumsum(is_first, axis=1) - 1  # (B, T_s) group id at each group's first token
    rank = np.append(rank, np.full((n_b, 1), -1), axis=1)  # column T_s = "no group"
    s_gid = np.take_along_axis(rank, np.where(s_in, first[s_lab], n_s), axis=1)
    t_gid = np.take_along_axis(rank, np.where(t_in, first[t_lab], n_s), axis=1)
    return s_gid.astype(np.int64), t_gid.astype(np.int64)


def span_groups(
    overlap: np.ndarray, s_real: np.ndarray, t_real: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`batch_span_groups` on one (T_s, T_t) sample → ``(s_gid, t_gid, n_groups)``."""
    o, s_r, t_r = (np.asarray(x)[None] for x in (overlap, s_real, t_real))
    s_gid, t_gid = batch_span_groups(o, s_r, t_r)
    return s_gid[0], t_gid[0], int(s_gid.max(initial=-1)) + 1


def align_batch(s: SpanBatch, t: SpanBatch) -> dict[str, np.ndarray]:
    """Everything the span-based losses need for one batch of text pairs.

    Args:
        s: Student :class:`SpanBatch` (B, T_s).
        t: Teacher :class:`SpanBatch` (B, T_t) of the same texts.

    Returns:
        ``overlap`` (B, T_s, T_t) float32 character counts (:func:`row_normalize` gives ``A``),
        ``s_group`` (B, T_s) and ``t_group`` (B, T_t) int64 (−1 = none).
    """
    o = batch_overlap(s, t)
    s_gid, t_gid = batch_span_groups(o, s.real, t.real)
    return {"overlap": o.astype(np.float32), "s_group": s_gid, "t_group": t_gid}
