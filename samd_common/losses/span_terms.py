"""SAMD's span-aware terms: token-level signal across two tokenizations, no shared vocabulary.

Both functions read the span alignment of ``alignment.align_batch``: ``overlap`` (B, T_s, T_t)
character counts between student and teacher tokens, and the *span groups* (connected
components of that overlap graph; each group covers the same characters on both sides).
``span_group_hidden_loss`` is SAMD's L_span; ``span_attention_cka_loss`` is L_SAM, the
attention alignment of the first SAMD design, kept as an option for the ablations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from samd_common.distributed import masked_mean_across_ranks
from samd_common.losses.mined import token_distance
from samd_common.losses.similarity import (
    coverage_confidence,
    grouped_sums,
    linear_cka,
    row_normalize,
)


def span_attention_cka_loss(
    att_s: torch.Tensor,
    att_t: torch.Tensor,
    overlap: torch.Tensor,
    s_real: torch.Tensor,
    t_real: torch.Tensor,
    top_frac: float = 0.25,
    min_tokens: int = 2,
    min_conf: float = 0.3,
) -> torch.Tensor:
    """Span-aware attention alignment (L_SAM) for one layer pair, vectorised over the batch.

    ``L = mean_{b: conf_b ≥ min_conf} (1 − CKA(Att_s[sel, sel], P[sel, sel]))·conf_b``,
    ``P = A·Att_t·Aᵀ``, ``A`` = row-normalised overlap, ``sel`` = top tokens by column sums of P.

    Args:
        att_s: (B, T_s, T_s) head-averaged student attention (carries the gradient).
        att_t: (B, T_t, T_t) head-averaged teacher attention.
        overlap: (B, T_s, T_t) character-overlap counts of real tokens.
        s_real: (B, T_s) bool, real student tokens (no specials, no padding).
        t_real: (B, T_t) bool, real teacher tokens.
        top_frac: share of real student tokens kept, by projected-teacher importance.
        min_tokens: keep at least this many tokens; samples with fewer real tokens are skipped.
        min_conf: samples whose coverage confidence is below this are skipped.

    Returns:
        0-d fp32 tensor; exactly 0 (still attached to ``att_s``) when every sample is skipped.

    References:
        Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019,
        https://arxiv.org/abs/1905.00414 (linear CKA); SAMD (this project) for the span projection.
    """
    b, t_s, t_t = overlap.shape
    if att_s.shape != (b, t_s, t_s) or att_t.shape != (b, t_t, t_t):
        raise ValueError(
            f"att_s {tuple(att_s.shape)} must be (B, T_s, T_s) and att_t {tuple(att_t.shape)} "
            f"(B, T_t, T_t) for overlap (B, T_s, T_t) = {tuple(overlap.shape)}; head-average "
            f"attentions first (att.mean(1))."
        )
    if not 0 < top_frac <= 1 or min_tokens < 1 or not 0 <= min_conf <= 1:
        raise ValueError(
            f"Need 0 < top_frac ≤ 1, min_tokens ≥ 1, 0 ≤ min_conf ≤ 1; got {top_frac}, "
            f"{min_tokens}, {min_conf}."
        )
    s_real, t_real = s_real.bool(), t_real.bool()
    with torch.autocast(device_type=att_s.device.type, enabled=False):
        overlap = overlap.float() * (s_real[:, :, None] & t_real[:, None, :])
        a = row_normalize(overlap)  # (B, T_s, T_t)
        p = a @ att_t.float() @ a.transpose(1, 2)  # (B, T_s, T_s)
        conf = coverage_confidence(overlap, s_real, t_real)  # (B,)
        n_real = s_real.sum(-1)  # (B,)
        k = torch.ceil(top_frac * n_real).long().clamp_min(min_tokens).minimum(n_real)
        importance = (p * s_real[:, :, None]).sum(1).masked_fill(~s_real, -math.inf)  # (B, T_s)
        order = importance.argsort(dim=-1, descending=True, stable=True)
        sel = (order.argsort(dim=-1) < k[:, None]) & s_real  # (B, T_s): rank < k
        cols = sel[:, None, :].float()  # (B, 1, T_s): zero the unselected columns
        cka = linear_cka(att_s.float() * cols, p * cols, row_mask=sel)  # (B,)
        keep = (conf >= min_conf) & (n_real >= min_tokens)
        # Mean over kept samples of the *global* batch (exact under DDP; plain mean otherwise).
        return masked_mean_across_ranks((1 - cka) * conf, keep)


def span_group_hidden_loss(
    h_s: torch.Tensor,
    h_t: torch.Tensor,
    s_group: torch.Tensor,
    t_group: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor] | None = None,
    distance: str = "cosine",
) -> torch.Tensor:
    """L_span: the student's mean state of each span group against the teacher's.

    ``L = mean_{(b, g)} d(Q·mean_{j∈g} H_s[b, j], mean_{i∈g} H_t[b, i])`` over the groups with
    tokens on both sides; ``Q`` = ``head`` (identity when None); ``d`` = ``1 − cos`` (default)
    or ``mean_d (a − b)²`` (``distance="mse"``, CDM's and MinED's distance, which also asks the
    head to match the teacher states' norms).

    Args:
        h_s: (B, T_s, H_s) student token states (carry the gradient).
        h_t: (B, T_t, H_t) teacher token states (a fixed target).
        s_group: (B, T_s) long span-group id of each student token, −1 for none.
        t_group: (B, T_t) long span-group id of each teacher token, −1 for none.
        head: student-side map (N, H_s) → (N, H_t); None needs H_s == H_t.
        distance: ``"cosine"`` or ``"mse"``.

    Returns:
        0-d fp32 tensor; 0 (attached to the graph) when no group has tokens on both sides.

    References:
        SAMD (this project); span groups are the connected components of the overlap graph
        (``alignment.align_batch``).

    Example:
        >>> h = torch.randn(2, 5, 8)
        >>> g = torch.tensor([[0, 0, 1, 2, -1], [0, 1, 1, -1, -1]])
        >>> float(span_group_hidden_loss(h, 3 * h, g, g)) < 1e-6
        True
    """
    b, t_s = s_group.shape
    if h_s.shape[:2] != (b, t_s) or h_t.shape[:2] != t_group.shape or h_t.shape[0] != b:
        raise ValueError(
            f"Expected h_s (B, T_s, H_s), h_t (B, T_t, H_t), s_group (B, T_s), t_group (B, T_t); "
            f"got {tuple(h_s.shape)}, {tuple(h_t.shape)}, {tuple(s_group.shape)}, "
            f"{tuple(t_group.shape)}."
        )
    with torch.autocast(device_type=h_s.device.type, enabled=False):
        mean_s, mean_t, both = span_group_means(h_s, h_t.detach(), s_group, t_group)
        mapped = mean_s if head is None else head(mean_s)  # (B·G, H_t)
        if mapped.shape[-1] != mean_t.shape[-1]:
            raise ValueError(
                f"The student's group states map to width {mapped.shape[-1]} but the teacher's "
                f"are {mean_t.shape[-1]} wide; pass a head (H_s → H_t)."
            )
        dist = token_distance(mapped.float(), mean_t, distance)  # (B·G,)
        return masked_mean_across_ranks(dist, both)


def span_group_means(
    h_s: torch.Tensor, h_t: torch.Tensor, s_group: torch.Tensor, t_group: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean student and teacher state of every span group.

    Args:
        h_s: (B, T_s, H_s) student token states.
        h_t: (B, T_t, H_t) teacher token states.
        s_group: (B, T_s) long span-group id of each student token, −1 for none.
        t_group: (B, T_t) long span-group id of each teacher token, −1 for none.

    Returns:
        ``(mean_s, mean_t, both)``: (B·G, H_s) and (B·G, H_t) fp32 group means and the (B·G,)
        bool mask of the groups with tokens on both sides (the rows L_span compares).
    """
    sum_s, count_s, sum_t, count_t = grouped_sums(h_s, s_group, h_t, t_group)
    mean_s = sum_s / count_s.clamp_min(1)[:, None]
    mean_t = sum_t / count_t.clamp_min(1)[:, None]
    return mean_s, mean_t, (count_s > 0) & (count_t > 0)


def ridge_fit(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> tuple[torch.Tensor, ...]:
    """Least-squares affine map ``y ≈ W x + b`` with a ridge relative to the data's scale.

    Solves ``(X̃ᵀX̃ + λI) [Wᵀ; bᵀ] = X̃ᵀY`` with ``X̃ = [x, 1]``, λ = ``ridge`` ×
    the mean diagonal of ``X̃ᵀX̃`` (the bias row is not penalised).

    Args:
        x: (N, D_in) inputs.
        y: (N, D_out) targets.
        ridge: relative ridge strength (> 0).

    Returns:
        ``(weight, bias)``: (D_out, D_in) and (D_out,) fp32, an ``nn.Linear``'s layout.

    Example:
        >>> x = torch.randn(200, 3); w = torch.randn(2, 3)
        >>> weight, bias = ridge_fit(x, x @ w.T + 1.0, ridge=1e-9)
        >>> torch.allclose(weight, w, atol=1e-4), torch.allclose(bias, torch.ones(2), atol=1e-4)
        (True, True)
    """
    if x.dim() != 2 or y.dim() != 2 or len(x) != len(y) or not ridge > 0:
        raise ValueError(
            f"Need x (N, D_in), y (N, D_out) with the same N and ridge > 0; got "
            f"{tuple(x.shape)}, {tuple(y.shape)}, ridge={ridge}."
        )
    xt = torch.cat([x.double(), x.new_ones(len(x), 1, dtype=torch.float64)], dim=1)  # (N, D+1)
    gram = xt.T @ xt  # (D+1, D+1)
    penalty = ridge * gram.diagonal()[:-1].mean() * torch.ones(len(gram), dtype=torch.float64)
    penalty[-1] = 0.0  # no penalty on the bias
    sol = torch.linalg.solve(gram + torch.diag(penalty), xt.T @ y.double())  # (D+1, D_out)
    return sol[:-1].T.float().contiguous(), sol[-1].float().contiguous()
