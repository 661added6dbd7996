"""Cross-tokenizer alignment primitives: plain arrays in, plain arrays out.

Two families of maps between a student tokenization (``T_s`` tokens) and a teacher tokenization
(``T_t`` tokens) of the same text (DESIGN.md §6, "Alignment primitives"):

* **span maps** from fast-tokenizer character offsets (:mod:`~samd_common.alignment.spans`):
  :func:`token_spans` → :func:`batch_overlap` (``O[j, i]`` = characters shared by student token j
  and teacher token i) → :func:`row_normalize`, :func:`coverage`, :func:`batch_span_groups`
  (connected components of the overlap graph); :func:`align_batch` gives overlap and groups;
* the **MinED map** (FuseLLM) and the other string maps from token strings only
  (:mod:`~samd_common.alignment.strings`): :func:`min_edit_distance_alignment`, built on
  :func:`normalize_token`, :func:`normalized_edit_distance_matrix` and :func:`dtw_path`
  (:mod:`~samd_common.alignment.dtw`, which also cuts paths into groups for CDM).

Nothing here touches ``torch``: losses turn the arrays into tensors themselves.

References:
    Wan et al., "Knowledge Fusion of Large Language Models" (FuseLLM), ICLR 2024,
    https://arxiv.org/abs/2401.10491
"""

from __future__ import annotations

from samd_common.alignment.dtw import batch_dtw_groups, dtw_path, path_groups
from samd_common.alignment.spans import (
    SpanBatch,
    align_batch,
    batch_overlap,
    batch_span_groups,
    coverage,
    naive_overlap,
    row_normalize,
    span_groups,
    span_overlap_matrix,
    token_spans,
)
from samd_common.alignment.strings import (
    STRING_MAPS,
    edit_distance,
    edit_distance_matrix,
    min_edit_distance_alignment,
    normalize_token,
    normalized_edit_distance_matrix,
    surface_strings,
    text_pair_maps,
    token_strings,
)

__all__ = [
    "STRING_MAPS",
    "SpanBatch",
    "align_batch",
    "batch_dtw_groups",
    "batch_overlap",
    "batch_span_groups",
    "coverage",
    "dtw_path",
    "edit_distance",
    "edit_distance_matrix",
    "min_edit_distance_alignment",
    "naive_overlap",
    "normalize_token",
    "normalized_edit_distance_matrix",
    "path_groups",
    "row_normalize",
    "span_groups",
    "span_overlap_matrix",
    "surface_strings",
    "text_pair_maps",
    "token_spans",
    "token_strings",
]
