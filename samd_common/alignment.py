"""Cross-tokenizer alignment primitives: plain arrays in, plain arrays out.

Two families of maps between a student tokenization (``T_s`` tokens) and a teacher tokenization
(``T_t`` tokens) of the same text (DESIGN.md §6, "Alignment primitives"):

* **span maps** from fast-tokenizer character offsets: :func:`token_spans` →
  :func:`batch_overlap` (``O[j, i]`` = characters shared by student token j and teacher token i) →
  :func:`row_normalize`, :func:`coverage`, :func:`batch_span_groups` (connected components of the
  overlap graph), or all at once with :func:`align_batch`;
* the **MinED map** (FuseLLM) from token strings only: :func:`min_edit_distance_alignment`, built
  on :func:`normalize_token`, :func:`normalized_edit_distance_matrix` and :func:`dtw_path`.

Nothing here touches ``torch``: losses turn the arrays into tensors themselves.

References:
    Wan et al., "Knowledge Fusion of Large Language Models" (FuseLLM), ICLR 2024,
    https://arxiv.org/abs/2401.10491
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

logger = logging.getLogger(__name__)

_MARKERS = "▁Ġ"  # word-boundary markers of SentencePiece/Metaspace and byte-level BPE
_TIE = 1e-9  # tolerance for ties in DTW back-tracking


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
        ``s_group`` (B, T_s) and ``t_group`` (B, T_t) int64 (−1 = none), ``conf`` (B,) float32.
    """
    o = batch_overlap(s, t)
    s_gid, t_gid = batch_span_groups(o, s.real, t.real)
    conf = coverage(o, s.real, t.real)[2]
    return {"overlap": o.astype(np.float32), "s_group": s_gid, "t_group": t_gid, "conf": conf}


# ---------------------------------------------------------------- MinED map
def normalize_token(token: str) -> str:
    """Token string without ``▁``/``Ġ`` markers or a leading ``##``, lower-cased and stripped."""
    for marker in _MARKERS:
        token = token.replace(marker, "")
    return token.removeprefix("##").lower().strip()


def token_strings(tokenizer, input_ids_row: np.ndarray, real_row: np.ndarray) -> list[str]:
    """Token strings of one (T,) row of ids; ``""`` at non-real positions."""
    pieces = tokenizer.convert_ids_to_tokens([int(x) for x in input_ids_row])
    return [p if r else "" for p, r in zip(pieces, real_row, strict=True)]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (unit insert, delete and substitute costs)."""
    prev = list(range(len(b) + 1))
    for k, ca in enumerate(a, 1):
        cur = [k]
        for q, cb in enumerate(b, 1):
            cur.append(min(prev[q] + 1, cur[q - 1] + 1, prev[q - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _codes(words: list[str], pad: int) -> tuple[np.ndarray, np.ndarray]:
    lens = np.array([len(w) for w in words], dtype=np.int64)
    out = np.full((len(words), max(lens.max(initial=0), 1)), pad, dtype=np.int64)
    for k, w in enumerate(words):
        out[k, : len(w)] = [ord(c) for c in w]
    return out, lens


def edit_distance_matrix(a: list[str], b: list[str]) -> np.ndarray:
    """Levenshtein distance of every pair, one DP over all pairs at once.

    Args:
        a: n strings.
        b: m strings.

    Returns:
        (n, m) int64 with ``D[p, q] = edit_distance(a[p], b[q])``.
    """
    (ca, la), (cb, lb) = _codes(a, -1), _codes(b, -2)
    n, m = len(a), len(b)
    out = np.zeros((n, m), dtype=np.int64)
    if n == 0 or m == 0:
        return out
    width = int(lb.max())
    prev = [np.full((n, m), q, dtype=np.int64) for q in range(width + 1)]  # row 0 of the DP
    out[la == 0] = lb[None, :]
    for k in range(1, int(la.max()) + 1):
        cur = [np.full((n, m), k, dtype=np.int64)]
        for q in range(1, width + 1):
            sub = prev[q - 1] + (ca[:, k - 1, None] != cb[None, :, q - 1])  # (n, m)
            cur.append(np.minimum(np.minimum(prev[q], cur[q - 1]) + 1, sub))
        rows = la == k
        if rows.any():
            table = np.stack(cur)  # (width + 1, n, m)
            out[rows] = table[lb[None, :], np.nonzero(rows)[0][:, None], np.arange(m)[None, :]]
        prev = cur
    return out


def normalized_edit_distance_matrix(a: list[str], b: list[str]) -> np.ndarray:
    """``ed(a[p], b[q]) / max(len a[p], len b[q])`` (0 for two empty strings), (n, m) float64."""
    ed = edit_distance_matrix(a, b).astype(np.float64)  # (n, m)
    longest = np.maximum.outer([len(w) for w in a], [len(w) for w in b]).reshape(ed.shape)
    return np.divide(ed, longest, out=np.zeros_like(ed), where=longest > 0)


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost monotone path (steps (1,0), (0,1), (1,1)) from (0, 0) to (n−1, m−1).

    ``D[j, i] = cost[j, i] + min(D[j−1, i], D[j, i−1], D[j−1, i−1])``; ties prefer the diagonal.
    Any non-negative cost works, e.g. CDM's ``ned * w_s[:, None] * w_t[None, :]``.

    Args:
        cost: (n, m) pairwise costs.

    Returns:
        The path as ``[(j, i), …]``, ``[]`` when n or m is 0.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D (n, m) matrix, got shape {cost.shape}")
    n, m = cost.shape
    if n == 0 or m == 0:
        return []
    acc = np.empty((n, m))
    acc[0] = np.cumsum(cost[0])
    for j in range(1, n):
        # x_i = c_i + min(u_i, x_{i-1}) with u_i = min(D[j-1, i], D[j-1, i-1]) is a prefix-min:
        # x_i = C_i + min_{k<=i}(u_k - C_{k-1}), C = cumsum(c)  (min-plus scan, vectorised)
        up = acc[j - 1].copy()
        up[1:] = np.minimum(up[1:], acc[j - 1, :-1])
        csum = np.cumsum(cost[j])
        acc[j] = csum + np.minimum.accumulate(up - (csum - cost[j]))
    path, j, i = [(n - 1, m - 1)], n - 1, m - 1
    while j > 0 or i > 0:
        steps = [(j - 1, i - 1), (j - 1, i), (j, i - 1)]
        steps = [(a, b) for a, b in steps if a >= 0 and b >= 0]
        best = min(acc[a, b] for a, b in steps)
        j, i = next((a, b) for a, b in steps if acc[a, b] <= best + _TIE * (1 + abs(best)))
        path.append((j, i))
    return path[::-1]


def min_edit_distance_alignment(
    s_tokens: list[str], t_tokens: list[str], reciprocal: bool = False
) -> list[tuple[int, int]]:
    """MinED map: one-to-one (student, teacher) index pairs whose normalised strings are equal.

    Tokens whose normalised string is empty (``""`` for non-real positions, lone markers) take no
    part. Default: DTW over the remaining tokens with normalised edit distance as cost, keeping
    pairs (j, i) where j is on the path only with i and i only with j. ``reciprocal=True``: keep
    pairs that are each other's best match (ties → nearest relative position, then lower index).

    Args:
        s_tokens: T_s student token strings (e.g. from :func:`token_strings`).
        t_tokens: T_t teacher token strings.
        reciprocal: Use mutual best matches instead of the DTW path.

    Returns:
        Sorted ``[(j, i), …]`` indices into ``s_tokens`` and ``t_tokens``.
    """
    ns, nt = [normalize_token(x) for x in s_tokens], [normalize_token(x) for x in t_tokens]
    s_idx = [k for k, x in enumerate(ns) if x]
    t_idx = [k for k, x in enumerate(nt) if x]
    if not s_idx or not t_idx:
        return []
    a, b = [ns[k] for k in s_idx], [nt[k] for k in t_idx]
    cost = normalized_edit_distance_matrix(a, b)  # (n, m)
    n, m = cost.shape
    if reciprocal:
        rel = np.abs((np.arange(n)[:, None] + 0.5) / n - (np.arange(m)[None, :] + 0.5) / m)
        row_best = np.where(cost == cost.min(1, keepdims=True), rel, np.inf).argmin(1)  # (n,)
        col_best = np.where(cost == cost.min(0, keepdims=True), rel, np.inf).argmin(0)  # (m,)
        pairs = [(j, int(row_best[j])) for j in range(n) if col_best[row_best[j]] == j]
    else:
        path = dtw_path(cost)
        s_count = np.bincount([j for j, _ in path], minlength=n)
        t_count = np.bincount([i for _, i in path], minlength=m)
        pairs = [(j, i) for j, i in path if s_count[j] == 1 and t_count[i] == 1]
    return [(s_idx[j], t_idx[i]) for j, i in pairs if a[j] == b[i]]


# ---------------------------------------------------------------- string maps of a text pair
STRING_MAPS = ("mined", "mined_reciprocal", "ned")  # what text_pair_maps can compute


def surface_strings(text: str, spans: np.ndarray, real: np.ndarray) -> list[str]:
    """Each token's surface string ``text[start:end]``; ``""`` at non-real positions.

    The string-based maps compare these instead of vocabulary pieces: the surface form is what a
    marker-stripped, lower-cased piece approximates, and it is the same for both tokenizers
    whatever their normalisers do (accent stripping, NFKC) or how they spell bytes (byte-level
    BPE writes ``é`` as ``Ã©``; byte-fallback pieces ``<0xF0>…`` all get their character).

    Args:
        text: The text without any prompt (spans index into it).
        spans: (T, 2) ``[start, end)`` character offsets (e.g. :attr:`SpanBatch.spans` of a row).
        real: (T,) bool content-token mask.

    Returns:
        T strings.
    """
    return [text[s:e] if r else "" for (s, e), r in zip(np.asarray(spans), real, strict=True)]


def text_pair_maps(
    s_tokens: list[str], t_tokens: list[str], maps: tuple[str, ...] | list[str]
) -> dict[str, np.ndarray]:
    """The string maps of one text pair that the CTKD baselines consume (computed once per text).

    Args:
        s_tokens: T_s student token strings (``""`` = takes no part, e.g. non-real).
        t_tokens: T_t teacher token strings.
        maps: any of :data:`STRING_MAPS`: ``"mined"`` (:func:`min_edit_distance_alignment`, DTW
            variant), ``"mined_reciprocal"`` (its mutual-best variant) and ``"ned"``
            (normalised edit distances of every pair, the cost of CDM's contextual DTW).

    Returns:
        ``mined`` / ``mined_reciprocal``: (P, 2) int64 ``(j, i)`` pairs; ``ned``: (T_s, T_t)
        float16 (0 where a side takes no part) with ``s_lexical`` (T_s,) and ``t_lexical``
        (T_t,) bool masks of the tokens that take part (non-empty normalised string).

    Raises:
        ValueError: For an unknown map name.
    """
    unknown = sorted(set(maps) - set(STRING_MAPS))
    if unknown:
        raise ValueError(f"unknown string map(s) {unknown}; choose from {list(STRING_MAPS)}")
    out: dict[str, np.ndarray] = {}
    for name in ("mined", "mined_reciprocal"):
        if name in maps:
            pairs = min_edit_distance_alignment(s_tokens, t_tokens, reciprocal=name != "mined")
            out[name] = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)  # (P, 2)
    if "ned" in maps:
        ns, nt = [normalize_token(x) for x in s_tokens], [normalize_token(x) for x in t_tokens]
        s_lex, t_lex = np.array([bool(x) for x in ns]), np.array([bool(x) for x in nt])
        ned = np.zeros((len(ns), len(nt)), dtype=np.float16)  # (T_s, T_t)
        if s_lex.any() and t_lex.any():
            sub = normalized_edit_distance_matrix(
                [x for x in ns if x], [x for x in nt if x]
            )  # (n, m) over the lexical tokens
            ned[np.ix_(s_lex, t_lex)] = sub
        out.update(ned=ned, s_lexical=s_lex.reshape(-1), t_lexical=t_lex.reshape(-1))
    return out


def path_groups(path: list[tuple[int, int]], n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut a DTW path into merged steps: maximal runs joined by horizontal/vertical moves.

    A diagonal move starts a new step; within a step one token of one side meets several of the
    other (many-to-one) or an L-shaped run meets several on both sides. Every token on the path
    belongs to exactly one step, since the path is monotone.

    Args:
        path: ``[(j, i), …]`` from :func:`dtw_path` over an (n, m) cost.
        n: Number of student tokens.
        m: Number of teacher tokens.

    Returns:
        ``(s_gid, t_gid)``: (n,) and (m,) int64 step ids 0..G−1 in path order (−1 if off-path).
    """
    s_gid, t_gid = np.full(n, -1, dtype=np.int64), np.full(m, -1, dtype=np.int64)
    g = -1
    for k, (j, i) in enumerate(path):
        if k == 0 or (j != path[k - 1][0] and i != path[k - 1][1]):
            g += 1
        s_gid[j], t_gid[i] = g, g
    return s_gid, t_gid


def batch_dtw_groups(
    cost: np.ndarray, s_mask: np.ndarray, t_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """DTW over the masked tokens of every sample, cut into merged steps, vectorised over B.

    Per sample this equals :func:`dtw_path` on ``cost[b][s_mask[b]][:, t_mask[b]]`` followed by
    :func:`path_groups` (same tie rule: diagonal, then up, then left), with the step ids written
    back at the padded positions. The DP runs row by row over (B, T_t) slabs and the back-trace
    moves all samples at once, so a batch costs about T_s + (T_s + T_t) array operations.

    Args:
        cost: (B, T_s, T_t) non-negative costs (e.g. CDM's ``ned · w_s · w_t``).
        s_mask: (B, T_s) bool, student tokens that take part.
        t_mask: (B, T_t) bool, teacher tokens that take part.

    Returns:
        ``(s_gid, t_gid)``: (B, T_s) and (B, T_t) int64 step ids 0..G_b−1 in path order; −1 for
        masked tokens and for samples with no token on one side.
    """
    cost = np.asarray(cost, dtype=np.float64)
    s_mask, t_mask = np.asarray(s_mask, dtype=bool), np.asarray(t_mask, dtype=bool)
    n_b, t_s, t_t = cost.shape
    if s_mask.shape != (n_b, t_s) or t_mask.shape != (n_b, t_t):
        raise ValueError(
            f"masks {s_mask.shape}, {t_mask.shape} do not match cost (B, T_s, T_t) = {cost.shape}"
        )
    s_gid, t_gid = np.full((n_b, t_s), -1, np.int64), np.full((n_b, t_t), -1, np.int64)
    if n_b == 0 or t_s == 0 or t_t == 0:
        return s_gid, t_gid
    # 1) compact each sample's taking-part tokens to the front (stable: order is kept)
    s_ord = np.argsort(~s_mask, axis=1, kind="stable")  # (B, T_s) positions, taking part first
    t_ord = np.argsort(~t_mask, axis=1, kind="stable")  # (B, T_t)
    n_len, m_len = s_mask.sum(1), t_mask.sum(1)  # (B,)
    rows = np.arange(n_b)
    c = cost[rows[:, None, None], s_ord[:, :, None], t_ord[:, None, :]]  # (B, T_s, T_t) compact
    # 2) accumulated cost, one row at a time for the whole batch (min-plus scan, see dtw_path);
    # entries beyond a sample's lengths are computed too but no path of that sample reads them.
    acc = np.empty_like(c)
    acc[:, 0] = np.cumsum(c[:, 0], axis=1)
    for j in range(1, t_s):
        up = acc[:, j - 1].copy()  # (B, T_t)
        up[:, 1:] = np.minimum(up[:, 1:], acc[:, j - 1, :-1])
        csum = np.cumsum(c[:, j], axis=1)
        acc[:, j] = csum + np.minimum.accumulate(up - (csum - c[:, j]), axis=1)
    # 3) back-trace every sample from its own end cell; step ids count from the end first
    j, i = np.maximum(n_len - 1, 0), np.maximum(m_len - 1, 0)
    g = np.zeros(n_b, dtype=np.int64)
    live = np.nonzero((n_len > 0) & (m_len > 0))[0]
    cs, ct = np.full((n_b, t_s), -1, np.int64), np.full((n_b, t_t), -1, np.int64)  # compact ids
    while live.size:
        cs[live, j[live]], ct[live, i[live]] = g[live], g[live]
        live = live[(j[live] > 0) | (i[live] > 0)]
        if not live.size:
            break
        jl, il = j[live], i[live]
        jm, im = np.maximum(jl - 1, 0), np.maximum(il - 1, 0)
        diag = np.where((jl > 0) & (il > 0), acc[live, jm, im], np.inf)
        up = np.where(jl > 0, acc[live, jm, il], np.inf)
        left = np.where(il > 0, acc[live, jl, im], np.inf)
        best = np.minimum(np.minimum(diag, up), left)
        tol = best + _TIE * (1 + np.abs(best))
        take_diag = diag <= tol
        take_up = ~take_diag & (up <= tol)
        j[live] = np.where(take_diag | take_up, jm, jl)
        i[live] = np.where(take_up, il, im)
        g[live] += take_diag
    # 4) ids in path order, written back at the padded positions
    total = g + 1  # (B,) steps per sample (for samples with a path)
    cs = np.where(cs >= 0, total[:, None] - 1 - cs, -1)
    ct = np.where(ct >= 0, total[:, None] - 1 - ct, -1)
    np.put_along_axis(s_gid, s_ord, cs, axis=1)
    np.put_along_axis(t_gid, t_ord, ct, axis=1)
    s_gid[~s_mask], t_gid[~t_mask] = -1, -1
    return s_gid, t_gid
