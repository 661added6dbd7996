"""Distillation batches: student tokenization once per text, cached teacher outputs, alignment.

``DistillDataset`` tokenizes the corpus for the student once (ids, character spans, content
mask) and pairs each text with its teacher-cache entry. ``DistillDataset.collate`` pads a batch
and computes the span alignment for the whole batch at once (vectorised), so no method aligns
tokens inside its training step.

Batch keys (tensors): ``input_ids``, ``attention_mask`` (B, T_s); ``s_real`` (B, T_s) bool;
with a teacher also ``t_input_ids``, ``t_mask``, ``t_real`` (B, T_t); ``t_hidden`` (B, T_t, D_t);
``t_embed`` (B, T_t, D_e) teacher input embeddings; ``t_attn`` (B, L, T_t, T_t);
``t_pooled`` (B, D_t); ``overlap`` (B, T_s, T_t) character counts;
``s_group`` (B, T_s), ``t_group`` (B, T_t) span-group ids (−1 = none).
With ``maps`` (string maps over the tokens' surface strings, computed once per text and kept):
``mined_pairs`` / ``mined_reciprocal_pairs`` (B, P, 2) long ``(student, teacher)`` positions,
−1 rows = padding; ``ned`` (B, T_s, T_t) normalised edit distances with ``s_lexical`` (B, T_s)
and ``t_lexical`` (B, T_t) bool masks of the tokens that take part.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from samd_common.alignment import (
    STRING_MAPS,
    SpanBatch,
    align_batch,
    surface_strings,
    text_pair_maps,
    token_spans,
)
from samd_common.training.teacher_cache import TeacherCache


def _pad(rows: list[np.ndarray], value, dtype) -> np.ndarray:
    """Stack 1-D/2-D/3-D arrays of different leading lengths into one right-padded array."""
    width = max(r.shape[0] for r in rows)
    out = np.full((len(rows), width, *rows[0].shape[1:]), value, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out


def _pad_pairs(rows: list[np.ndarray]) -> np.ndarray:
    """(P_b, 2) index pairs → (B, P, 2) int64, −1 padding, P ≥ 1 (so gathers never see size 0)."""
    out = np.full((len(rows), max(1, *(len(r) for r in rows)), 2), -1, dtype=np.int64)
    for b, r in enumerate(rows):
        out[b, : len(r)] = r
    return out


class DistillDataset(Dataset):
    """Corpus texts with the student's tokenization and (optionally) the teacher cache."""

    def __init__(
        self,
        texts: list[str],
        tokenizer,
        max_length: int,
        prompt: str = "",
        cache: TeacherCache | None = None,
        chunk: int = 4096,
        maps: tuple[str, ...] | list[str] = (),
    ) -> None:
        """Tokenize ``texts`` for the student; ``maps`` names string maps to add to each batch.

        ``maps`` takes names from ``alignment.STRING_MAPS`` (what a method's ``MethodSpec.maps``
        asks for); they need the teacher cache and are computed the first time a text is read,
        then memoised per index (the student tokens and the cached teacher tokens of a text never
        change), so later epochs reuse them. With DataLoader workers each worker keeps its own
        memo (``persistent_workers=True`` keeps it across epochs).
        """
        if cache is not None and len(cache) != len(texts):
            raise ValueError(
                f"teacher cache has {len(cache)} texts but the corpus has "
                f"{len(texts)}; rebuild the cache for this corpus."
            )
        unknown = sorted(set(maps) - set(STRING_MAPS))
        if unknown or (maps and cache is None):
            raise ValueError(
                f"maps={list(maps)}: choose names from {list(STRING_MAPS)}, and pass the teacher "
                f"cache (string maps pair student tokens with cached teacher tokens)."
            )
        self.maps, self._memo = tuple(dict.fromkeys(maps)), {}
        self.texts, self.cache, self.pad_id = texts, cache, tokenizer.pad_token_id or 0
        self.items: list[dict[str, np.ndarray]] = []
        for start in range(0, len(texts), chunk):  # chunks bound the padded array size
            s = token_spans(tokenizer, texts[start : start + chunk], max_length, prompt)
            for row in range(len(s.input_ids)):
                n = int(s.attention_mask[row].sum())
                self.items.append(
                    {
                        "input_ids": s.input_ids[row, :n],
                        "spans": s.spans[row, :n],
                        "real": s.real[row, :n],
                    }
                )

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        item = dict(self.items[i])
        if self.cache is not None:
            item.update({f"t_{k}": v for k, v in self.cache.item(i).items()})
        if self.maps:
            if i not in self._memo:  # once per text: both tokenizations are fixed
                text = self.texts[i]
                self._memo[i] = text_pair_maps(
                    surface_strings(text, item["spans"], item["real"]),
                    surface_strings(text, item["t_spans"], item["t_real"]),
                    self.maps,
                )
            item.update({f"map_{k}": v for k, v in self._memo[i].items()})
        return item

    def collate(self, items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        """Pad a list of items into a batch and align student and teacher spans."""
        ids = _pad([it["input_ids"] for it in items], self.pad_id, np.int64)
        mask = _pad([np.ones(len(it["input_ids"]), np.int64) for it in items], 0, np.int64)
        real = _pad([it["real"] for it in items], False, bool)
        batch = {"input_ids": ids, "attention_mask": mask, "s_real": real}
        if "t_input_ids" in items[0]:
            t_ids = _pad([it["t_input_ids"] for it in items], 0, np.int64)
            t_mask = _pad([np.ones(len(it["t_input_ids"]), np.int64) for it in items], 0, np.int64)
            t_real = _pad([it["t_real"] for it in items], False, bool)
            t_len = t_ids.shape[1]
            attn = np.zeros((len(items), items[0]["t_attn"].shape[0], t_len, t_len), np.float32)
            for i, it in enumerate(items):
                n = it["t_attn"].shape[-1]
                attn[i, :, :n, :n] = it["t_attn"]  # (L, n, n) into (L, T_t, T_t)
            s_spans = SpanBatch(ids, mask, _pad([it["spans"] for it in items], 0, np.int32), real)
            t_spans = SpanBatch(
                t_ids, t_mask, _pad([it["t_spans"] for it in items], 0, np.int32), t_real
            )
            aligned = align_batch(s_spans, t_spans)
            batch.update(
                t_input_ids=t_ids,
                t_mask=t_mask,
                t_real=t_real,
                t_attn=attn,
                t_hidden=_pad([it["t_hidden"] for it in items], 0, np.float32),
                t_embed=_pad([it["t_embed"] for it in items], 0, np.float32),
                t_pooled=np.stack([it["t_pooled"] for it in items]).astype(np.float32),
                overlap=aligned["overlap"],
                s_group=aligned["s_group"],
                t_group=aligned["t_group"],
            )
        for name in ("mined", "mined_reciprocal"):
            if f"map_{name}" in items[0]:
                batch[f"{name}_pairs"] = _pad_pairs([it[f"map_{name}"] for it in items])
        if "map_ned" in items[0]:
            ned = np.zeros((len(items), ids.shape[1], batch["t_input_ids"].shape[1]), np.float32)
            for b, it in enumerate(items):
                n_s, n_t = it["map_ned"].shape
                ned[b, :n_s, :n_t] = it["map_ned"]  # (n_s, n_t) into (T_s, T_t)
            batch.update(
                ned=ned,
                s_lexical=_pad([it["map_s_lexical"] for it in items], False, bool),
                t_lexical=_pad([it["map_t_lexical"] for it in items], False, bool),
            )
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
