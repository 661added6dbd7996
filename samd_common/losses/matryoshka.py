"""Matryoshka dims and weights, and the cosine distillation of every Matryoshka prefix.

Pure functions on tensors (no model calls, no device moves); shape symbols as in the package
docstring. The Matryoshka InfoNCE (MRL's task loss) is in :mod:`~samd_common.losses.contrastive`.

References:
    Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022,
    https://arxiv.org/abs/2205.13147
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

MRD_DIMS: tuple[int, ...] = (64, 128, 256, 384, 512, 768)  # SAMD's default Matryoshka dims


def check_matryoshka_dims(
    dims: Sequence[int], widths: Sequence[int], weights: Sequence[float] | None = None
) -> list[float]:
    """Validate Matryoshka ``dims`` (and ``weights``) against tensor widths.

    Args:
        dims: K positive prefix sizes (any order).
        widths: widths of the tensors the prefixes are cut from; every dim must fit all of them.
        weights: K non-negative weights, or None for 1 each.

    Returns:
        The K weights as floats.
    """
    dims = list(dims)
    if not dims or any(int(m) != m or m <= 0 for m in dims):
        raise ValueError(f"dims must be a non-empty list of positive ints, got {dims}.")
    if max(dims) > min(widths):
        raise ValueError(
            f"Matryoshka dims {dims} exceed the embedding width {min(widths)}; drop dims above it "
            f"(mrd_dims(width) does this)."
        )
    if weights is None:
        return [1.0] * len(dims)
    weights = [float(w) for w in weights]
    if len(weights) != len(dims):
        raise ValueError(
            f"weights has {len(weights)} entries but dims has {len(dims)}; give one weight per "
            f"dim (e.g. inverse_sqrt_weights(dims))."
        )
    if any(w < 0 or math.isnan(w) for w in weights):
        raise ValueError(f"weights must be non-negative, got {weights}.")
    return weights


def mrd_dims(width: int, dims: Sequence[int] = MRD_DIMS) -> list[int]:
    """SAMD's Matryoshka dims: the candidate dims ≤ ``width`` plus ``width`` itself, ascending.

    Args:
        width: student embedding width D_s.
        dims: candidate dims (default {64, 128, 256, 384, 512, 768}).

    Returns:
        Sorted list of K unique dims whose last element is ``width``.

    Example:
        >>> mrd_dims(384)
        [64, 128, 256, 384]
    """
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}.")
    return sorted({int(m) for m in dims if 0 < m <= width} | {int(width)})


def inverse_sqrt_weights(dims: Sequence[int]) -> list[float]:
    """Weights ``w_m ∝ 1/√m`` normalised to sum to 1 (small prefixes weigh more).

    Args:
        dims: K positive dims.

    Returns:
        K floats summing to 1.
    """
    if not dims or any(m <= 0 for m in dims):
        raise ValueError(f"dims must be a non-empty list of positive ints, got {list(dims)}.")
    raw = [1.0 / math.sqrt(m) for m in dims]
    return [r / sum(raw) for r in raw]


def matryoshka_distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    dims: Sequence[int],
    weights: Sequence[float],
) -> torch.Tensor:
    """Cosine distillation of every Matryoshka prefix of the student onto the teacher's.

    ``L = Σ_m w_m · mean_b (1 − cos(student[b, :m], teacher[b, :m]))``

    Args:
        student: (B, D_s) student sentence embeddings.
        teacher: (B, D) teacher embeddings already projected to a width ≥ max(dims).
        dims: K prefix sizes, each ≤ both widths (any order).
        weights: K non-negative weights (SAMD: ``inverse_sqrt_weights(dims)``).

    Returns:
        0-d tensor; 0 when ``student == teacher``.

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022,
        https://arxiv.org/abs/2205.13147

    Example:
        >>> s = torch.randn(8, 64)
        >>> float(matryoshka_distillation_loss(s, s, [16, 64], [0.5, 0.5])) < 1e-6
        True
    """
    if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"Expected (B, D_s) student and (B, D) teacher embeddings with the same B, got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}."
        )
    weights = check_matryoshka_dims(dims, [student.shape[-1], teacher.shape[-1]], weights)
    student, teacher = student.float(), teacher.float()
    terms = [
        w * (1 - F.cosine_similarity(student[:, :m], teacher[:, :m], dim=-1)).mean()
        for m, w in zip(dims, weights, strict=True)
    ]
    return torch.stack(terms).sum()
