"""MinED — minimum-edit-distance token mapping (Wan et al., FuseLLM, ICLR 2024).

Paper: "Knowledge Fusion of Large Language Models", https://arxiv.org/abs/2401.10491

FuseLLM fuses language models with different tokenizers by aligning their tokens with the MinED
map: a dynamic-time-warping path over the two token-string sequences with edit-distance cost,
of which only the one-to-one pairs whose (normalised) strings are equal are kept. As a
cross-tokenizer distillation baseline for encoders (DESIGN.md §6.2) the map pairs student and
teacher tokens of the last layer, and the student's projected token states regress onto the
teacher's over those pairs; SimCSE keeps the embedding space contrastive. The map is computed
once per text by the dataset (``DistillDataset(..., maps=("mined",))``, key ``mined_pairs``) from
the tokens' surface strings (``alignment.surface_strings``), never inside the training step.

``L = w_task·InfoNCE(s1, s2) + w_kd·mean_{(j,i) ∈ MinED} ‖P·H_s[j] − H_t[i]‖² / D_t``

This module also holds the per-pair distance (:func:`token_distance`) and the gather of token
states at mapped positions (:func:`gather_tokens`) that ``cdm.py`` and ``emo.py`` reuse.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samd_common.distributed import masked_mean_across_ranks
from samd_common.losses.base import Logged, Objective, Outputs
from samd_common.losses.params import DistillParams
from samd_common.models import SentenceEncoder

CITATION = """@inproceedings{wan2024knowledge,
  title     = {Knowledge Fusion of Large Language Models},
  author    = {Wan, Fanqi and Huang, Xinting and Cai, Deng and Quan, Xiaojun and Bi, Wei and
               Shi, Shuming},
  booktitle = {The Twelfth International Conference on Learning Representations (ICLR)},
  year      = {2024},
  url       = {https://arxiv.org/abs/2401.10491}
}"""

DISTANCES = ("mse", "cosine")


def token_distance(a: torch.Tensor, b: torch.Tensor, distance: str = "mse") -> torch.Tensor:
    """Distance between matched token states, in fp32 whatever the autocast dtype.

    ``mse``: ``mean_d (a − b)²``; ``cosine``: ``1 − cos(a, b)``.

    Args:
        a: (..., D) states (e.g. projected student states of matched tokens).
        b: (..., D) states of the same shape (e.g. teacher states).
        distance: ``"mse"`` or ``"cosine"``.

    Returns:
        (...) fp32 distances.
    """
    if a.shape != b.shape:
        raise ValueError(
            f"token_distance needs equal shapes, got {tuple(a.shape)}, {tuple(b.shape)}."
        )
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}.")
    with torch.autocast(device_type=a.device.type, enabled=False):
        a, b = a.float(), b.float()
        if distance == "mse":
            return (a - b).pow(2).mean(-1)
        return 1 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def gather_tokens(h: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Token states at per-sample positions: (B, T, D), (B, P) long ≥ 0 → (B, P, D)."""
    return h.gather(1, index[..., None].expand(-1, -1, h.shape[-1]))  # (B, P, D)


def mined_hidden_loss(
    h_s_proj: torch.Tensor, h_t: torch.Tensor, pairs: torch.Tensor, distance: str = "mse"
) -> torch.Tensor:
    """MinED distillation: distance between mapped student and teacher token states.

    ``L = mean_{(b, j, i) ∈ pairs} d(P·H_s[b, j], H_t[b, i])`` over the pairs of the whole
    (global, under DDP) batch.

    Args:
        h_s_proj: (B, T_s, D_t) student token states projected to the teacher width.
        h_t: (B, T_t, D_t) teacher token states.
        pairs: (B, P, 2) long ``(student, teacher)`` positions; rows with −1 are padding.
        distance: ``"mse"`` (FuseLLM-style regression, default) or ``"cosine"``.

    Returns:
        0-d fp32 tensor; exactly 0, still attached to ``h_s_proj``, when there is no pair.

    References:
        Wan et al., "Knowledge Fusion of Large Language Models", ICLR 2024,
        https://arxiv.org/abs/2401.10491

    Example:
        >>> pairs = torch.tensor([[[0, 1], [2, 0]]])
        >>> mined_hidden_loss(torch.randn(1, 3, 8), torch.randn(1, 2, 8), pairs).shape
        torch.Size([])
    """
    (b, _, d), t_t = h_s_proj.shape, h_t.shape[1]
    if h_t.shape != (b, t_t, d) or pairs.dim() != 3 or pairs.shape[::2] != (b, 2):
        raise ValueError(
            f"Expected h_s_proj (B, T_s, D_t), h_t (B, T_t, D_t), pairs (B, P, 2); got "
            f"{tuple(h_s_proj.shape)}, {tuple(h_t.shape)}, {tuple(pairs.shape)}. Project the "
            f"student states to the teacher width first."
        )
    valid = pairs[..., 0] >= 0  # (B, P)
    h_s = gather_tokens(h_s_proj, pairs[..., 0].clamp_min(0))  # (B, P, D_t)
    h_tt = gather_tokens(h_t, pairs[..., 1].clamp_min(0))  # (B, P, D_t)
    return masked_mean_across_ranks(token_distance(h_s, h_tt, distance), valid)


@dataclass
class MinEDParams(DistillParams):
    """MinED hyper-parameters (``w_task``, ``w_kd``, ``temperature`` from ``DistillParams``)."""

    method = "MinED"
    distance: str = "mse"  # "mse" (DESIGN.md §6.2) or "cosine"

    def rules(self) -> dict[str, bool]:
        """The shared weight rules and a known distance."""
        return {**super().rules(), f"distance in {DISTANCES}": self.distance in DISTANCES}


class MinEDLoss(Objective):
    """MinED objective around a student; owns the trainable projection ``P: D_s → D_t``.

    ``L = w_task·InfoNCE(s1, s2) + w_kd·mean_{(j,i) ∈ MinED} d(P·H_s[j], H_t[i])``

    Args:
        student: the encoder being trained.
        teacher_hidden_dim: D_t, width of the cached teacher token states ``t_hidden``.
        params: ``MinEDParams``; default MSE, ``w_task = w_kd = 0.5``.

    The batch (``DistillDataset(..., maps=("mined",)).collate``) holds ``input_ids`` /
    ``attention_mask`` (B, T_s), ``t_hidden`` (B, T_t, D_t) and ``mined_pairs`` (B, P, 2). Logs:
    ``loss``, ``task``, ``kd`` and ``pairs`` (mean number of mapped pairs per text).

    References:
        Wan et al., "Knowledge Fusion of Large Language Models", ICLR 2024,
        https://arxiv.org/abs/2401.10491

    Example:
        >>> objective = MinEDLoss(student, teacher_hidden_dim=768)  # student: a SentenceEncoder
        >>> loss, logs = objective(batch, step=0, total_steps=100)  # batch: as above
        >>> loss.backward()  # reaches the student and P
    """

    name = "MinED"
    batch_keys = ("input_ids", "attention_mask", "t_hidden", "mined_pairs")
    batch_hint = "build the dataset with DistillDataset(..., maps=('mined',))."

    def __init__(
        self,
        student: SentenceEncoder,
        teacher_hidden_dim: int,
        params: MinEDParams | None = None,
    ) -> None:
        super().__init__(student, params or MinEDParams())
        hidden = student.backbone.config.hidden_size
        self.proj = nn.Linear(hidden, teacher_hidden_dim, device=student.device)  # P

    def kd_terms(
        self, out: Outputs, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, Logged]:
        """MinED MSE over the mapped pairs; logs it and the mean number of pairs per text."""
        pairs = batch["mined_pairs"]  # (B, P, 2)
        h_s = self.proj(out["token_embeddings"])  # (B, T_s, D_t)
        kd = mined_hidden_loss(h_s, batch["t_hidden"], pairs, self.params.distance)
        n_pairs = (pairs[..., 0] >= 0).sum(1).float().mean()
        return kd, {"kd": kd, "pairs": n_pairs}
