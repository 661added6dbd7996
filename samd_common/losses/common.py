"""Loss building blocks shared by every method: InfoNCE, Matryoshka terms, CKA, schedules.

Everything here is a pure function on tensors (no model calls, no device moves). Shape symbols
are those of the package docstring (``B``, ``T_s``, ``T_t``, ``D_s``, ``D_t``, ``K``).

Under DDP (an initialised ``torch.distributed`` process group) each rank holds ``B`` of the
``W·B`` texts of the global batch. The rule followed here: a loss returned on a rank is chosen so
that its *mean over ranks* equals the single-process loss on the global batch, and so is its
gradient once DDP has averaged the ranks' gradients. Per-sample means over the local batch
satisfy this as they are; ``info_nce`` gathers its candidates (``gather_across_ranks``) and
``masked_mean_across_ranks`` divides by the global count. Both are collectives: every rank must
call them, in the same order.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import fields

import torch
import torch.nn.functional as F

from samd_common.distributed import dist_info, gather_across_ranks

MRD_DIMS: tuple[int, ...] = (64, 128, 256, 384, 512, 768)  # SAMD's default Matryoshka dims


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


def _check_dims(dims: Sequence[int], widths: Sequence[int], weights=None) -> list[float]:
    """Validate Matryoshka ``dims`` (and ``weights``) against tensor widths; return weights."""
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
    """
    weights = _check_dims(dims, [a.shape[-1], b.shape[-1]], weights)
    terms = [
        w * info_nce(a[:, :m], b[:, :m], temperature) for m, w in zip(dims, weights, strict=True)
    ]
    return torch.stack(terms).sum()


def mrd_dims(width: int, dims: Sequence[int] = MRD_DIMS) -> list[int]:
    """SAMD's Matryoshka dims: the candidate dims ≤ ``width`` plus ``width`` itself, ascending.

    Args:
        width: student embedding width D_s.
        dims: candidate dims (default {64, 128, 256, 384, 512, 768}).

    Returns:
        Sorted list of K unique dims whose last element is ``width``.
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
    """
    if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"Expected (B, D_s) student and (B, D) teacher embeddings with the same B, got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}."
        )
    weights = _check_dims(dims, [student.shape[-1], teacher.shape[-1]], weights)
    student, teacher = student.float(), teacher.float()
    terms = [
        w * (1 - F.cosine_similarity(student[:, :m], teacher[:, :m], dim=-1)).mean()
        for m, w in zip(dims, weights, strict=True)
    ]
    return torch.stack(terms).sum()


def _safe_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Frobenius norm over the last two dims with a finite gradient at 0."""
    return (x.pow(2).sum((-2, -1)) + eps).sqrt()


def linear_cka(
    x: torch.Tensor, y: torch.Tensor, row_mask: torch.Tensor | None = None, eps: float = 1e-12
) -> torch.Tensor:
    """Linear centered kernel alignment between two representations of the same n items.

    ``CKA = ||Yᶜᵀ Xᶜ||²_F / (||Xᶜᵀ Xᶜ||_F · ||Yᶜᵀ Yᶜ||_F)`` with column-centred ``Xᶜ``, ``Yᶜ``.

    Computed in fp32 (autocast off) whatever the input dtype; 1 for ``x == y``, invariant to
    isotropic scaling and orthogonal transforms, in [0, 1] up to rounding, and 0 (never NaN) when
    either side is constant.

    Args:
        x: (..., n, p) representation; leading dims are batch dims.
        y: (..., n, q) representation of the same items.
        row_mask: optional (..., n) bool; only these rows count (others must be ignored, e.g.
            a per-sample token selection of varying size). Columns to ignore should be zero.
        eps: stabiliser added under the square roots.

    Returns:
        (...) fp32 tensor (0-d for 2-D inputs).

    References:
        Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019,
        https://arxiv.org/abs/1905.00414

    Example:
        >>> x = torch.randn(10, 4)
        >>> round(float(linear_cka(x, 3 * x)), 4)
        1.0
    """
    if x.dim() < 2 or x.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            f"linear_cka needs (..., n, p) and (..., n, q) with the same n, got {tuple(x.shape)} "
            f"and {tuple(y.shape)}."
        )
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, y = x.float(), y.float()
        if row_mask is None:
            x = x - x.mean(-2, keepdim=True)
            y = y - y.mean(-2, keepdim=True)
        else:
            m = row_mask.to(x.dtype).unsqueeze(-1)  # (..., n, 1)
            count = m.sum(-2, keepdim=True).clamp_min(1.0)
            x = (x - (x * m).sum(-2, keepdim=True) / count) * m
            y = (y - (y * m).sum(-2, keepdim=True) / count) * m
        # Scale each side to unit norm first so eps is relative, whatever the input scale.
        x = x / _safe_norm(x, eps)[..., None, None]
        y = y / _safe_norm(y, eps)[..., None, None]
        n, p, q = x.shape[-2], x.shape[-1], y.shape[-1]
        if n <= max(p, q):  # (n, n) Gram form: ||K L||, same value, cheaper for small n
            k, ell = x @ x.transpose(-2, -1), y @ y.transpose(-2, -1)  # (..., n, n)
            cross = (k * ell).sum((-2, -1))
        else:  # (p, q) feature form
            k, ell = x.transpose(-2, -1) @ x, y.transpose(-2, -1) @ y  # (..., p, p), (..., q, q)
            cross = (y.transpose(-2, -1) @ x).pow(2).sum((-2, -1))
        return cross / (_safe_norm(k, eps) * _safe_norm(ell, eps))


def row_normalize(overlap: torch.Tensor) -> torch.Tensor:
    """Turn overlap counts into alignment weights: rows sum to 1, empty rows stay 0.

    ``A[j, i] = O[j, i] / Σ_i' O[j, i']`` (0 where the row sum is 0)

    Args:
        overlap: (..., T_s, T_t) non-negative character-overlap counts.

    Returns:
        (..., T_s, T_t) float tensor.
    """
    overlap = overlap.float()
    return overlap / overlap.sum(-1, keepdim=True).clamp_min(1e-12)


def coverage_confidence(
    overlap: torch.Tensor, s_real: torch.Tensor, t_real: torch.Tensor
) -> torch.Tensor:
    """Alignment confidence per sample: the smaller share of real tokens with any overlap.

    ``conf = min(|{j real: Σ_i O[j,i] > 0}| / n_s, |{i real: Σ_j O[j,i] > 0}| / n_t)``

    Args:
        overlap: (B, T_s, T_t) character-overlap counts.
        s_real: (B, T_s) bool, real student tokens (no specials, no padding).
        t_real: (B, T_t) bool, real teacher tokens.

    Returns:
        (B,) float tensor in [0, 1]; 0 for a sample without real tokens.
    """
    if overlap.shape != (*s_real.shape, t_real.shape[-1]) or s_real.shape[0] != t_real.shape[0]:
        raise ValueError(
            f"overlap {tuple(overlap.shape)} must be (B, T_s, T_t) matching s_real "
            f"{tuple(s_real.shape)} and t_real {tuple(t_real.shape)}."
        )
    s_real, t_real = s_real.bool(), t_real.bool()
    s_hit = ((overlap > 0).any(-1) & s_real).sum(-1).float()
    t_hit = ((overlap > 0).any(-2) & t_real).sum(-1).float()
    c_s = s_hit / s_real.sum(-1).clamp_min(1)
    c_t = t_hit / t_real.sum(-1).clamp_min(1)
    return torch.minimum(c_s, c_t)


def linear_ramp(progress: float, start: float, length: float, end_value: float = 1.0) -> float:
    """Schedule value at a training progress (fraction of total steps).

    ``v = end_value · clip((progress − start) / length, 0, 1)`` (a step at ``start`` if length=0)

    Args:
        progress: step / total_steps, in [0, 1].
        start: progress at which the ramp begins (value 0 before it).
        length: progress span of the ramp; 0 gives a step function.
        end_value: value reached at ``start + length`` and kept after.

    Returns:
        The schedule value as a float.
    """
    if length < 0 or start < 0:
        raise ValueError(f"start and length must be ≥ 0, got start={start}, length={length}.")
    if progress < start:
        return 0.0
    if length == 0:
        return float(end_value)
    return float(end_value) * min(1.0, (progress - start) / length)


def params_from_dict(cls, d: dict, method: str):
    """Build the params dataclass ``cls`` from a plain dict; unknown keys raise ``ValueError``.

    Args:
        cls: a dataclass type (``MRLParams``, ``ESEParams``, …).
        d: notebook/registry parameters.
        method: method name used in the error message.

    Returns:
        ``cls(**d)`` (its ``__post_init__`` validates the values).
    """
    names = [f.name for f in fields(cls)]
    for key in d:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown {method} parameter {key!r}.{hint} Known: {', '.join(names)}")
    return cls(**d)


def grouped_sums(
    h_a: torch.Tensor, group_a: torch.Tensor, h_b: torch.Tensor, group_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-(sample, group) sums and counts of token states on two sides sharing group ids.

    Args:
        h_a: (B, T_a, D) states of side a.
        group_a: (B, T_a) long group ids, −1 = in no group.
        h_b: (B, T_b, D) states of side b.
        group_b: (B, T_b) long group ids on the same scale as ``group_a``.

    Returns:
        ``(sum_a, count_a, sum_b, count_b)``: (B·G, D) fp32 sums and (B·G,) counts, row
        ``b·G + g`` for group g of sample b, with G = 1 + the largest id in either side.
    """
    b, d = h_a.shape[0], h_a.shape[-1]
    n_groups = int(torch.cat([group_a.flatten(), group_b.flatten()]).max().clamp_min(0)) + 1
    offset = torch.arange(b, device=h_a.device)[:, None] * n_groups  # (B, 1)

    def sums(h: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slot = torch.where(group >= 0, group + offset, b * n_groups).flatten()  # (B·T,) −1 → dump
        flat = h.float().reshape(-1, d)  # (B·T, D)
        total = flat.new_zeros(b * n_groups + 1, d).index_add(0, slot, flat)
        count = flat.new_zeros(b * n_groups + 1).index_add(0, slot, flat.new_ones(len(slot)))
        return total[:-1], count[:-1]  # (B·G, D), (B·G,)

    return (*sums(h_a, group_a), *sums(h_b, group_b))
