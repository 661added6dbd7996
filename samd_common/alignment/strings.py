"""String maps between two tokenizations: token strings, edit distances and the MinED map.

The **MinED map** (FuseLLM) pairs student (``T_s``) and teacher (``T_t``) tokens from their
strings alone: :func:`min_edit_distance_alignment`, built on :func:`normalize_token`,
:func:`normalized_edit_distance_matrix` and :func:`~samd_common.alignment.dtw.dtw_path`.
:func:`text_pair_maps` computes the string maps of one text pair that the CTKD baselines consume
(:data:`STRING_MAPS`), on token strings from :func:`token_strings` or :func:`surface_strings`.
Plain numpy arrays and lists in and out: no ``torch``, no model code.

References:
    Wan et al., "Knowledge Fusion of Large Language Models" (FuseLLM), ICLR 2024,
    https://arxiv.org/abs/2401.10491
"""

from __future__ import annotations

import numpy as np

from samd_common.alignment.dtw import dtw_path

_MARKERS = "▁Ġ"  # word-boundary markers of SentencePiece/Metaspace and byte-level BPE


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
