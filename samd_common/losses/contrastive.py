"""Contrastive task losses: SimCSE's in-batch InfoNCE and its Matryoshka sum (MRL).

Pure functions on tensors (no model calls, no device moves); shape symbols as in the package
docstring (``B``, ``D``, ``K``).

Under DDP (an initialised ``torch.distributed`` process group) each rank holds ``B`` of the
``W·B`` texts of the global batch. The rule every loss of this package follows: a loss returned
on a rank is chosen so that its *mean over ranks* equals the single-process loss on the global
batch, and so is its gradient once DDP has averaged the ranks' gradients. Per-sample means over
the local batch satisfy this as they are; ``info_nce`` gathers its candidates
(``gather_across_ranks``) and ``masked_mean_across_ranks`` divides by the global count. Both are
collectives: every rank must call them, in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from samd_common.distributed import dist_info, gather_across_ranks
from samd_common.losses.matryoshka import check_matryoshka_dims


def info_nce(
    a: torch.Tensor, b: torch.Tensor, temperature: float = 0.07, gather: bool = True
) -> torch.Tensor:
    """In-batch InfoNCE of SimCSE (one direction, a → b, positives on the diagonal).

    ``L = −mean_i log softmax_j(cos(a_i, b_j) / τ)[i]``

    Under DDP the negatives are the whole global batch: the rows are this rank's anchors, the
    columns every rank's positives (``gather_across_ranks``), the targets offset by
    ``rank·B``; the returned value is the mean over the local anchors (see the module note).

    Args:
        a: (B, D) anchor embeddings (first dropout pass).
        b: (B, D) positive embeddings (second pass); the other rows are the negatives.
        temperature: τ > 0.
        gather: take the negatives from all ranks when a process group is initialised (then
            every rank must call this); False keeps them local.

    Returns:
        0-d tensor, the mean loss over the batch.

    References:
        Gao et al., "SimCSE: Simple Contrastive Learning of Sentence Embeddings", EMNLP 2021,
        https://arxiv.org/abs/2104.08821

    Example:
        >>> info_nce(torch.randn(8, 32), torch.randn(8, 32)).shape
        torch.Size([])
    """
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            f"info_nce expects two (B, D) tensors of the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}; pass sentence embeddings, not token states."
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (SimCSE uses 0.05–0.07), got {temperature}.")
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    rank, world = dist_info() if gather else (0, 1)
    candidates = gather_across_ranks(b) if world > 1 else b  # (W·B, D), rank r at [r·B, (r+1)·B)
    logits = a @ candidates.T / temperature  # (B, W·B): local anchors × global candidates
    # Gradient scaling under DDP: this rank returns L_r = mean of its B anchors' terms, so the
    # global loss (mean over W·B anchors) is L = (1/W)·Σ_r L_r. ∂L_r reaches the parameters of
    # rank r through its anchors a_r and, via the gather, through every rank's positives; the
    # gather's backward hands rank r' the sum Σ_r ∂L_r/∂b_r'. Rank r' therefore holds
    # ∂L_r'/∂a_r'·∂a_r'/∂θ + Σ_r ∂L_r/∂b_r'·∂b_r'/∂θ, and DDP's average over ranks (÷W) is
    # exactly ∂L/∂θ: no extra factor is needed (checked in tests/test_distributed.py).
    targets = torch.arange(a.shape[0], device=a.device) + rank * a.shape[0]
    return F.cross_entropy(logits, targets)


def matryoshka_info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    dims: Sequence[int],
    weights: Sequence[float] | None = None,
    temperature: float = 0.07,
) -> torch.Tensor:
    """InfoNCE summed over nested prefixes of the embeddings (Matryoshka Representation Learning).

    ``L = Σ_m w_m · InfoNCE(a[:, :m], b[:, :m])`` (negatives from all ranks under DDP)

    Args:
        a: (B, D) anchor embeddings.
        b: (B, D) positive embeddings.
        dims: K prefix sizes, each ≤ D (any order).
        weights: K non-negative weights; default 1 each.
        temperature: τ of every InfoNCE term.

    Returns:
        0-d tensor.

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022,
        https://arxiv.org/abs/2205.13147

    Example:
        >>> matryoshka_info_nce(torch.randn(8, 64), torch.randn(8, 64), [64, 32, 16]).shape
        torch.Size([])
    """
    weights = check_matryoshka_dims(dims, [a.shape[-1], b.shape[-1]], weights)
    terms = [
        w * info_nce(a[:, :m], b[:, :m], temperature) for m, w in zip(dims, weights, strict=True)
    ]
    return torch.stack(terms).sum()
