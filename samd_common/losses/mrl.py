"""MRL — Matryoshka Representation Learning, and SAMD-MRL (SAMD with a Matryoshka task loss).

Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022,
https://arxiv.org/abs/2205.13147

MRL trains one embedding whose nested prefixes are each usable on their own: the training loss
is applied to every prefix ``s[:m]`` of a list of nested dims and summed, so the first
coordinates carry the most information and an embedding can be truncated after training
without re-training or a projection. Here it is teacher-free and unsupervised: the per-prefix
loss is SimCSE's in-batch InfoNCE between two dropout passes of the student, the dims halve from
the student width down to 16 (or 32), and every dim weighs 1, as in the paper.

``L_MRL = Σ_m InfoNCE(s1[:, :m], s2[:, :m])``, ``m ∈ {D_s, D_s/2, …, ≥ min_dim}``

SAMD-MRL keeps SAMD's distillation terms (``samd_common.losses.samd``) and replaces its task
loss with ``L_MRL``: ``L = w_task·L_MRL + w_kd·(β·L_MRD + α·L_SAM)`` with ``w_task = w_kd = 1``
by default, i.e. ``L = Σ_m InfoNCE(s1[:m], s2[:m]) + β·L_MRD + α·L_SAM`` (DESIGN.md §6.8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from samd_common.config import halving_dims
from samd_common.losses.common import matryoshka_info_nce, params_from_dict
from samd_common.losses.samd import SAMDLoss, SAMDParams
from samd_common.models import SentenceEncoder

CITATION = """@inproceedings{kusupati2022matryoshka,
  title     = {Matryoshka Representation Learning},
  author    = {Kusupati, Aditya and Bhatt, Gantavya and Rege, Aniket and Wallingford, Matthew and
               Sinha, Aditya and Ramanujan, Vivek and Howard-Snyder, William and Chen, Kaifeng and
               Kakade, Sham and Jain, Prateek and Farhadi, Ali},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2022},
  note      = {arXiv:2205.13147}
}"""


def mrl_loss(
    s1: torch.Tensor,
    s2: torch.Tensor,
    dims: Sequence[int],
    weights: Sequence[float] | None = None,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Matryoshka InfoNCE between two dropout views: the MRL objective.

    ``L = Σ_m w_m · InfoNCE(s1[:, :m], s2[:, :m])`` (w_m = 1 by default)

    Args:
        s1: (B, D_s) embeddings of the first dropout pass (anchors).
        s2: (B, D_s) embeddings of the second pass (positives; other rows are negatives).
        dims: K nested prefix sizes, each ≤ D_s (``halving_dims(D_s, 16)`` in MRL).
        weights: K non-negative weights; None → 1 each (the paper's choice).
        temperature: InfoNCE τ.

    Returns:
        0-d tensor.

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022,
        https://arxiv.org/abs/2205.13147

    Example:
        >>> s1, s2 = torch.randn(8, 64), torch.randn(8, 64)
        >>> mrl_loss(s1, s2, halving_dims(64, 16)).shape
        torch.Size([])
    """
    return matryoshka_info_nce(s1, s2, dims, weights, temperature)


@dataclass
class MRLParams:
    """MRL hyper-parameters (paper defaults: halving dims, unit weights)."""

    temperature: float = 0.07  # InfoNCE τ (SimCSE setting, as every method here)
    min_dim: int = 16  # smallest nested dim of the halving series (the paper uses 16 or 32)
    dims: list[int] | None = None  # explicit nested dims; None → halving_dims(D_s, min_dim)
    weights: list[float] | None = None  # one weight per dim; None → 1 each (paper)

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.min_dim < 1:
            raise ValueError(
                f"Invalid MRLParams: need temperature > 0 and min_dim ≥ 1 (16 or 32 in the "
                f"paper); got temperature={self.temperature}, min_dim={self.min_dim}."
            )
        if self.weights is not None and self.dims is None:
            raise ValueError("MRLParams.weights needs explicit dims (one weight per dim).")

    @classmethod
    def from_dict(cls, d: dict) -> MRLParams:
        """Build from a plain dict; unknown keys raise ``ValueError`` with a suggestion."""
        return params_from_dict(cls, d, "MRL")

    def resolve_dims(self, width: int) -> list[int]:
        """The nested dims for a student of ``width`` (descending)."""
        dims = list(self.dims) if self.dims else halving_dims(width, self.min_dim)
        if max(dims) > width:
            raise ValueError(f"MRL dims {dims} exceed the student width {width}; drop them.")
        return sorted(dims, reverse=True)


class MRLLoss(nn.Module):
    """MRL around a student: two dropout passes, Matryoshka InfoNCE; no teacher, no projection."""

    def __init__(self, student: SentenceEncoder, params: MRLParams | None = None) -> None:
        super().__init__()
        self.student, self.params = student, params or MRLParams()
        self.dims = self.params.resolve_dims(student.dim)
        self.weights = list(self.params.weights) if self.params.weights else None

    def forward(
        self, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss on ``input_ids``/``attention_mask`` (B, T_s); ``step`` is unused."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        s1 = self.student(ids, mask)["sentence_embedding"]  # (B, D_s)
        s2 = self.student(ids, mask)["sentence_embedding"]  # (B, D_s), other dropout mask
        loss = mrl_loss(s1, s2, self.dims, self.weights, self.params.temperature)
        return loss, {"loss": loss.item()}


@dataclass
class SAMDMRLParams(SAMDParams):
    """SAMD's hyper-parameters plus the Matryoshka task loss; weights 1 as in DESIGN.md §6.8."""

    w_task: float = 1.0  # weight of Σ_m InfoNCE (SAMD uses 0.5; §6.8 writes the sum unweighted)
    w_kd: float = 1.0  # weight of β·L_MRD + α·L_SAM (SAMD uses 0.5)
    mrl_min_dim: int = 16  # smallest dim of the task loss's halving series
    mrl_dims: list[int] | None = None  # explicit task-loss dims; None → halving_dims(D_s, 16)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mrl_min_dim < 1:
            raise ValueError(f"mrl_min_dim must be ≥ 1 (16 or 32), got {self.mrl_min_dim}.")


class SAMDMRLLoss(SAMDLoss):
    """SAMD whose task loss is MRL's Matryoshka InfoNCE (``task_loss`` overridden)."""

    def __init__(
        self,
        student: SentenceEncoder,
        teacher_dim: int,
        teacher_layers: int = 1,
        params: SAMDMRLParams | None = None,
        teacher_hidden_dim: int | None = None,
    ) -> None:
        params = params or SAMDMRLParams()
        super().__init__(student, teacher_dim, teacher_layers, params, teacher_hidden_dim)
        self.mrl_dims = MRLParams(min_dim=params.mrl_min_dim, dims=params.mrl_dims).resolve_dims(
            student.dim
        )

    def task_loss(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """``Σ_m InfoNCE(s1[:, :m], s2[:, :m])`` over the halving dims (unit weights)."""
        return mrl_loss(s1, s2, self.mrl_dims, temperature=self.params.temperature)
