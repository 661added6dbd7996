"""Similarity and alignment-weight building blocks on token tensors: linear CKA, overlap weights.

Pure functions on tensors (no model calls, no device moves); shape symbols as in the package
docstring. ``row_normalize`` and ``coverage_confidence`` are the device-side (torch, batched,
autograd-friendly) counterparts of the collator's numpy ``alignment.spans.row_normalize`` and
``alignment.spans.coverage``: the losses apply them to masked overlaps inside the step.
"""

from __future__ import annotations

import torch


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


def grouped_sums(
    h_a: torch.Tensor, group_a: torch.Tensor, h_b: torch.Tensor, group_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-(sample, group) sums and counts of token states on two sides sharing group ids.

    Args:
        h_a: (B, T_a, D_a) states of side a.
        group_a: (B, T_a) long group ids, −1 = in no group.
        h_b: (B, T_b, D_b) states of side b (its own width).
        group_b: (B, T_b) long group ids on the same scale as ``group_a``.

    Returns:
        ``(sum_a, count_a, sum_b, count_b)``: (B·G, D_a) / (B·G, D_b) fp32 sums and (B·G,)
        counts, row ``b·G + g`` for group g of sample b, G = 1 + the largest id on either side.
    """
    b = h_a.shape[0]
    n_groups = int(torch.cat([group_a.flatten(), group_b.flatten()]).max().clamp_min(0)) + 1
    offset = torch.arange(b, device=h_a.device)[:, None] * n_groups  # (B, 1)

    def sums(h: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slot = torch.where(group >= 0, group + offset, b * n_groups).flatten()  # (B·T,) −1 → dump
        flat = h.float().reshape(-1, h.shape[-1])  # (B·T, D)
        total = flat.new_zeros(b * n_groups + 1, flat.shape[1]).index_add(0, slot, flat)
        count = flat.new_zeros(b * n_groups + 1).index_add(0, slot, flat.new_ones(len(slot)))
        return total[:-1], count[:-1]  # (B·G, D), (B·G,)

    return (*sums(h_a, group_a), *sums(h_b, group_b))
