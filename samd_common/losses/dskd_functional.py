"""DSKD's stateless pieces: per-sample σ, cross-model attention, dual-space and projector losses.

The tensor functions behind :class:`samd_common.losses.dskd.DSKDLoss` (that module describes the
method and its adaptation to sentence encoders): :func:`sample_std` (σ over a sample's valid
tokens), :func:`cross_model_attention` (``A = QKᵀ/√d``; row- and column-softmax over valid
pairs), :func:`token_representation_loss` (1 − cos or MSE over valid tokens),
:func:`dual_space_losses` (``L_t2s`` in the student space, ``L_s2t`` in the teacher space) and
:func:`orthogonality_penalty` (soft orthogonality of one projector). All compute in fp32 with
autocast off.

References:
    Zhang et al., "Dual-Space Knowledge Distillation for Large Language Models", EMNLP 2024,
    https://arxiv.org/abs/2406.17328
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from samd_common.distributed import masked_mean_across_ranks

DISTANCES = ("cosine", "mse")


def sample_std(x: torch.Tensor, valid: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Standard deviation of each sample's valid token vectors (all their entries), no gradient.

    ``σ_b = std({x[b, i, d] : valid[b, i]})``, clamped to ``eps`` (also for a sample without
    valid tokens).

    Args:
        x: (B, T, D) token vectors.
        valid: (B, T) bool, tokens that count.
        eps: lower bound of σ.

    Returns:
        (B, 1, 1) fp32 tensor, detached (a scale, not a learnt quantity).
    """
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        x, m = x.float(), valid.to(torch.float32)[..., None]  # (B, T, 1)
        n = (m.sum((1, 2)) * x.shape[-1]).clamp_min(1)  # (B,) number of entries
        mean = (x * m).sum((1, 2)) / n  # (B,)
        var = ((x - mean[:, None, None]) * m).pow(2).sum((1, 2)) / n
        return var.sqrt().clamp_min(eps)[:, None, None]


def cross_model_attention(
    q: torch.Tensor, k: torch.Tensor, t_valid: torch.Tensor, s_valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """DSKD's cross-model attention between student tokens (queries) and teacher tokens (keys).

    ``A = q·kᵀ/√D`` on valid pairs; ``t2s = softmax_row(A)``, ``s2t = softmax_col(A)ᵀ``.

    Computed in fp32 (autocast off). Each valid student row of ``t2s`` sums to 1 over the valid
    teacher tokens of its sample, and each valid teacher row of ``s2t`` to 1 over the valid
    student tokens; every other entry is exactly 0, so rows of invalid tokens (and all rows of a
    sample with no valid token on the other side) are all zeros, never NaN.

    Args:
        q: (B, T_s, D) queries (projected student input embeddings).
        k: (B, T_t, D) keys (teacher input embeddings / σ).
        t_valid: (B, T_t) bool, teacher tokens that may be attended to.
        s_valid: (B, T_s) bool, student tokens that take part.

    Returns:
        ``(t2s, s2t)``: (B, T_s, T_t) teacher→student weights and (B, T_t, T_s)
        student→teacher weights.

    References:
        Zhang et al., "Dual-Space Knowledge Distillation for Large Language Models", EMNLP
        2024, https://arxiv.org/abs/2406.17328

    Example:
        >>> q, k, ok = torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.ones(2, 5, dtype=bool)
        >>> t2s, s2t = cross_model_attention(q, k, ok, ok[:, :3])
        >>> t2s.shape, s2t.shape
        (torch.Size([2, 3, 5]), torch.Size([2, 5, 3]))
    """
    b, t_s, d = q.shape
    if k.dim() != 3 or k.shape[0] != b or k.shape[2] != d:
        raise ValueError(
            f"q {tuple(q.shape)} must be (B, T_s, D) and k {tuple(k.shape)} (B, T_t, D) with the "
            f"same B and D; project the student embeddings to the key width first (W_q)."
        )
    if s_valid.shape != (b, t_s) or t_valid.shape != (b, k.shape[1]):
        raise ValueError(
            f"s_valid {tuple(s_valid.shape)} must be (B, T_s) = {(b, t_s)} and t_valid "
            f"{tuple(t_valid.shape)} (B, T_t) = {(b, k.shape[1])}."
        )
    with torch.autocast(device_type=q.device.type, enabled=False):
        logits = q.float() @ k.float().transpose(1, 2) / math.sqrt(d)  # (B, T_s, T_t)
        pair = s_valid.bool()[:, :, None] & t_valid.bool()[:, None, :]  # (B, T_s, T_t)
        # A finite fill (not −inf): a fully masked row softmaxes to uniform, then × pair → 0.
        logits = logits.masked_fill(~pair, torch.finfo(torch.float32).min)
        t2s = logits.softmax(-1) * pair  # (B, T_s, T_t), rows over teacher tokens
        s2t = logits.transpose(1, 2).softmax(-1) * pair.transpose(1, 2)  # (B, T_t, T_s)
    return t2s, s2t


def token_representation_loss(
    h: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, distance: str = "cosine"
) -> torch.Tensor:
    """Mean token-level distance between two representations in the same space.

    ``L = mean_{(b, i): valid} d(h[b, i], target[b, i])``, ``d = 1 − cos`` or mean squared error.

    Computed in fp32 (autocast off); the mean is over the valid tokens of the global batch
    under DDP (``masked_mean_across_ranks``). Invalid tokens get an exactly zero gradient.

    Args:
        h: (B, T, D) representations (e.g. student states).
        target: (B, T, D) representations carried over from the other model.
        valid: (B, T) bool, tokens that count.
        distance: ``"cosine"`` (scale-free) or ``"mse"`` (give both sides the same scale).

    Returns:
        0-d fp32 tensor; 0 for ``h == target`` and when no token is valid.

    References:
        Zhang et al., "Dual-Space Knowledge Distillation for Large Language Models", EMNLP
        2024, https://arxiv.org/abs/2406.17328
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}.")
    if h.shape != target.shape or h.dim() != 3 or valid.shape != h.shape[:2]:
        raise ValueError(
            f"Expected h and target (B, T, D) of one shape and valid (B, T); got "
            f"{tuple(h.shape)}, {tuple(target.shape)}, {tuple(valid.shape)}."
        )
    with torch.autocast(device_type=h.device.type, enabled=False):
        keep = valid.bool()[..., None]  # (B, T, 1)
        # Constant stand-ins for invalid rows: zero rows would give cos an infinite gradient.
        h = torch.where(keep, h.float(), 1.0)
        target = torch.where(keep, target.float(), 1.0)
        if distance == "cosine":
            per_token = 1 - F.cosine_similarity(h, target, dim=-1)  # (B, T)
        else:
            per_token = (h - target).pow(2).mean(-1)  # (B, T)
        return masked_mean_across_ranks(per_token, valid.bool())


def orthogonality_penalty(weight: torch.Tensor) -> torch.Tensor:
    """Soft-orthogonality regulariser of one projector: its singular values are pushed to 1.

    ``P(W) = ||G − I_k||²_F / k``, ``G = W Wᵀ`` if d_out ≤ d_in else ``Wᵀ W``, ``k = min``.

    ``P = Σ_i (σ_i² − 1)² / k`` over the k singular values σ_i of W: 0 exactly for a (semi-)
    orthogonal W, 1 for W = 0 and (k − 1)/k for a rank-1 W of unit spectral norm: every
    vanishing direction costs 1/k, every inflated one grows as σ⁴. Computed in fp32.

    Args:
        weight: (d_out, d_in) weight of an ``nn.Linear``.

    Returns:
        0-d fp32 tensor.

    References:
        Bansal et al., "Can We Gain More from Orthogonality Regularizations in Training Deep
        CNNs?", NeurIPS 2018, https://arxiv.org/abs/1810.09102

    Example:
        >>> float(orthogonality_penalty(torch.eye(4)[:3]))
        0.0
    """
    if weight.dim() != 2:
        raise ValueError(f"weight must be a (d_out, d_in) matrix, got {tuple(weight.shape)}.")
    with torch.autocast(device_type=weight.device.type, enabled=False):
        w = weight.float()
        if w.shape[0] > w.shape[1]:
            w = w.T  # (k, d): the smaller Gram
        gram = w @ w.T  # (k, k)
        eye = torch.eye(gram.shape[0], device=w.device)
        return (gram - eye).pow(2).sum() / gram.shape[0]


def dual_space_losses(
    h_s: torch.Tensor,
    h_t: torch.Tensor,
    values_t: torch.Tensor,
    values_s: torch.Tensor,
    t2s: torch.Tensor,
    s2t: torch.Tensor,
    distance: str = "cosine",
) -> tuple[torch.Tensor, torch.Tensor]:
    """DSKD's two representation losses, from projected values and cross-model attention.

    ``L_t2s = d(H_s, t2s·V_t)`` over student tokens, ``L_s2t = d(H_t, s2t·V_s)`` over teacher
    tokens (``token_representation_loss``); a token counts when its attention row is non-zero,
    i.e. it is valid and its sample has a valid token on the other side.

    Args:
        h_s: (B, T_s, D_s) student token states (σ-normalised for MSE).
        h_t: (B, T_t, D_t) teacher token states (σ-normalised).
        values_t: (B, T_t, D_s) teacher states projected into the student space, W_t2s(H_t/σ).
        values_s: (B, T_s, D_t) student states projected into the teacher space, W_s2t(H_s/σ).
        t2s: (B, T_s, T_t) teacher→student weights of ``cross_model_attention``.
        s2t: (B, T_t, T_s) student→teacher weights.
        distance: ``"cosine"`` or ``"mse"``.

    Returns:
        ``(L_t2s, L_s2t)``, two 0-d fp32 tensors (student space, teacher space).

    References:
        Zhang et al., "Dual-Space Knowledge Distillation for Large Language Models", EMNLP
        2024, https://arxiv.org/abs/2406.17328
    """
    (b, t_s, d_s), (_, t_t, d_t) = h_s.shape, h_t.shape
    shapes = {
        "values_t": (values_t, (b, t_t, d_s)),
        "values_s": (values_s, (b, t_s, d_t)),
        "t2s": (t2s, (b, t_s, t_t)),
        "s2t": (s2t, (b, t_t, t_s)),
    }
    bad = [f"{n} {tuple(x.shape)} ≠ {s}" for n, (x, s) in shapes.items() if x.shape != s]
    if bad:
        raise ValueError(
            f"dual_space_losses shape mismatch for h_s {tuple(h_s.shape)}, h_t "
            f"{tuple(h_t.shape)}: {'; '.join(bad)}."
        )
    with torch.autocast(device_type=h_s.device.type, enabled=False):
        t2s, s2t = t2s.float(), s2t.float()
        h_t2s = t2s @ values_t.float()  # (B, T_s, D_s): teacher states at student tokens
        h_s2t = s2t @ values_s.float()  # (B, T_t, D_t): student states at teacher tokens
        s_rows, t_rows = t2s.sum(-1) > 0.5, s2t.sum(-1) > 0.5  # rows sum to 1 or are all 0
        loss_t2s = token_representation_loss(h_s, h_t2s, s_rows, distance)
        loss_s2t = token_representation_loss(h_t, h_s2t, t_rows, distance)
    return loss_t2s, loss_s2t
