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

SAMD-MRL keeps SAMD's distillation terms (``samd_common.losses.samd``) and adds ``L_MRL`` as
its task loss: ``L = w_task·L_MRL + w_kd·L_SAMD`` with ``w_task = w_kd = 1`` by default, i.e.
``L = Σ_m InfoNCE(s1[:m], s2[:m]) + λ_point·L_point + L_rel + λ_span·L_span`` (DESIGN.md §6.8,
with SAMD's current terms).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from samd_common.config import halving_dims
from samd_common.losses.base import Objective
from samd_common.losses.contrastive import matryoshka_info_nce
from samd_common.losses.params import Params
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
class MRLParams(Params):
    """MRL hyper-parameters (paper defaults: halving dims, unit weights)."""

    method = "MRL"
    temperature: float = 0.07  # InfoNCE τ (SimCSE setting, as every method here)
    min_dim: int = 16  # smallest nested dim of the halving series (the paper uses 16 or 32)
    dims: list[int] | None = None  # explicit nested dims; None → halving_dims(D_s, min_dim)
    weights: list[float] | None = None  # one weight per dim; None → 1 each (paper)

    def rules(self) -> dict[str, bool]:
        """Positive τ and min_dim; weights only with explicit dims."""
        return {
            "temperature > 0": self.temperature > 0,
            "min_dim ≥ 1 (16 or 32 in the paper)": self.min_dim >= 1,
            "explicit dims with weights (one weight per dim)": (
                self.weights is None or self.dims is not None
            ),
        }

    def resolve_dims(self, width: int) -> list[int]:
        """The nested dims for a student of ``width`` (descending)."""
        dims = list(self.dims) if self.dims else halving_dims(width, self.min_dim)
        if max(dims) > width:
            raise ValueError(f"MRL dims {dims} exceed the student width {width}; drop them.")
        return sorted(dims, reverse=True)


class MRLLoss(Objective):
    """MRL around a student: two dropout passes, Matryoshka InfoNCE; no teacher, no projection.

    ``L = Σ_m w_m · InfoNCE(s1[:, :m], s2[:, :m])`` over ``dims`` (halving from D_s to min_dim).

    Args:
        student: the encoder being trained.
        params: ``MRLParams``; default halving dims down to 16, unit weights.

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022,
        https://arxiv.org/abs/2205.13147

    Example:
        >>> objective = MRLLoss(student)  # student: a SentenceEncoder of width 64
        >>> objective.dims
        [64, 32, 16]
        >>> loss, logs = objective(student.tokenize(["a cat", "a dog"]), step=0, total_steps=1)
    """

    name = "MRL"
    log_task = False  # the loss is the task loss

    def __init__(self, student: SentenceEncoder, params: MRLParams | None = None) -> None:
        super().__init__(student, params or MRLParams())
        self.dims = self.params.resolve_dims(student.dim)
        self.weights = list(self.params.weights) if self.params.weights else None

    def task_loss(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """``Σ_m w_m · InfoNCE(s1[:, :m], s2[:, :m])``."""
        return mrl_loss(s1, s2, self.dims, self.weights, self.params.temperature)


@dataclass
class SAMDMRLParams(SAMDParams):
    """SAMD's hyper-parameters plus the Matryoshka task loss; weights 1 as in DESIGN.md §6.8."""

    method = "SAMD-MRL"

    w_task: float = 1.0  # weight of Σ_m InfoNCE (§6.8 writes the sum unweighted; SAMD: 0)
    w_kd: float = 1.0  # weight of SAMD's distillation terms
    # SAMD-MRL keeps the relational terms SAMD had when its bench rows ran (L_rel, no L_unif: its
    # Matryoshka InfoNCE already spreads the embeddings); SAMD's switch to L_unif is not re-run here
    lambda_sim: float = 3.0
    lambda_resim: float = 1.0
    lambda_unif: float = 0.0
    mrl_min_dim: int = 16  # smallest dim of the task loss's halving series
    mrl_dims: list[int] | None = None  # explicit task-loss dims; None → halving_dims(D_s, 16)

    def rules(self) -> dict[str, bool]:
        """SAMD's rules plus a positive ``mrl_min_dim``."""
        return {**super().rules(), "mrl_min_dim ≥ 1 (16 or 32)": self.mrl_min_dim >= 1}


class SAMDMRLLoss(SAMDLoss):
    """SAMD plus MRL's Matryoshka InfoNCE as its task loss (``task_loss`` overridden).

    ``L = w_task·Σ_m InfoNCE(s1[:, :m], s2[:, :m]) + w_kd·L_SAMD``, weights 1.

    Args:
        student: the encoder being trained (eager attention only for ``use_sam``).
        teacher_dim: D_t of the cached pooled teacher embedding ``t_pooled``.
        teacher_layers: number of cached teacher attention layers in ``t_attn``.
        params: ``SAMDMRLParams``.
        teacher_hidden_dim: width of ``t_hidden`` (L_span); None means ``teacher_dim``.
        teacher_matryoshka_dims: the teacher's Matryoshka dims (L_point's target).
        teacher_mean: the teacher's corpus-mean embedding (SAMD's centred targets).
        teacher_hidden_var: the teacher states' mean variance (SAMD's ``span_norm``).
        teacher_head: the teacher's linear Dense head (SAMD's ``span_space="embedding"``).

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022,
        https://arxiv.org/abs/2205.13147; SAMD (this project).

    Example:
        >>> objective = SAMDMRLLoss(student, teacher_dim=768)  # student: a SentenceEncoder
        >>> loss, logs = objective(batch, step=500, total_steps=1000)  # batch: the SAMD collator's
        >>> sorted(logs)  # doctest: +SKIP
        ['loss', 'resim', 'sim', 'span', 'task']
    """

    name = "SAMD-MRL"

    def __init__(
        self,
        student: SentenceEncoder,
        teacher_dim: int,
        teacher_layers: int = 1,
        params: SAMDMRLParams | None = None,
        teacher_hidden_dim: int | None = None,
        teacher_matryoshka_dims: Sequence[int] = (),
        teacher_mean: Sequence[float] = (),
        teacher_hidden_var: float = 0.0,
        teacher_head: torch.Tensor | None = None,
    ) -> None:
        params = params or SAMDMRLParams()
        widths = (teacher_dim, teacher_layers, params, teacher_hidden_dim, teacher_matryoshka_dims)
        super().__init__(student, *widths, teacher_mean, teacher_hidden_var, teacher_head)
        self.mrl_dims = MRLParams(min_dim=params.mrl_min_dim, dims=params.mrl_dims).resolve_dims(
            student.dim
        )

    def task_loss(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """``Σ_m InfoNCE(s1[:, :m], s2[:, :m])`` over the halving dims (unit weights)."""
        return mrl_loss(s1, s2, self.mrl_dims, temperature=self.params.temperature)
