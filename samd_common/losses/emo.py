"""EMO — embedding-model distillation via intra-model relation and optimal transport.

Paper: Truong et al., "EMO: Embedding Model Distillation via Intra-Model Relation and Optimal
Transport Alignments", EMNLP 2025 (ACL Anthology, main conference; no arXiv version known to us:
https://aclanthology.org/events/emnlp-2025/).

EMO distils an embedding teacher into a student with a different tokenizer through two
structural terms (DESIGN.md §6.5). Tokens are first paired one-to-one by the reciprocal MinED
map. *Intra-model relation*: on the most important third of the mapped teacher tokens (attention
importance = column sums of the teacher's last-layer attention over real tokens) the student's
attention among its mapped tokens must match the teacher's among theirs, measured by linear CKA.
*Optimal transport*: all real tokens of both sides are matched by entropic OT, with masses given
by each side's attention importance and cost ``1 − softmax_row(H_s·(W H_t)ᵀ/√d_s)`` through a
trainable ``W: D_t → D_s``; the loss is the transport cost ``⟨Π, C⟩``. SimCSE keeps the
embedding space contrastive.

``L = w_task·InfoNCE + w_kd·(0.1·(1 − CKA(Att_s[sel, sel], Att_t[sel, sel])) + ⟨Π, C⟩)``

Sinkhorn runs in POT (``reg`` 0.1, at most 100 iterations, torch backend). Gradient path,
``ot_grad="envelope"`` (default): the plan is solved on the detached cost and held fixed, so
``∂⟨Π, C⟩/∂C = Π`` flows into ``C`` and from there to ``W`` and the student's token states;
this is the gradient of the entropic OT value (envelope theorem), it needs no graph through the
iterations and matches the usual practice of OT-based distillation losses. ``ot_grad="unroll"``
backpropagates through the Sinkhorn iterations as well. The student's masses are importance
weights and carry no gradient. ``ot_solver="batch"`` (default) solves the batch's problems in
one POT call (``ot.solve_batch``, the same Sinkhorn–Knopp iteration, padding tokens get zero
mass); ``"sinkhorn"`` loops ``ot.sinkhorn(a, b, C, reg, numItermax)`` over the texts, as
written in the design, and gives the same plans (tested) at several times the cost (48 ms vs
357 ms forward + backward for B = 32 texts of 40 × 48 tokens on one CPU core; on a GPU POT's
per-problem loop also syncs the device every iteration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ot
import torch
from torch import nn

from samd_common.distributed import masked_mean_across_ranks
from samd_common.losses.base import Logged, Objective, Outputs, require_eager_attention
from samd_common.losses.mined import gather_tokens
from samd_common.losses.params import DistillParams
from samd_common.losses.similarity import linear_cka
from samd_common.models import SentenceEncoder

CITATION = """@inproceedings{truong2025emo,
  title     = {{EMO}: Embedding Model Distillation via Intra-Model Relation and Optimal
               Transport Alignments},
  author    = {Truong, Minh-Phuc and Vu, Hai An and Vu, Tu and Diep, Nguyen Thi Ngoc and
               Van, Linh Ngo and Nguyen, Thien Huu and Le, Trung},
  booktitle = {Proceedings of the 2025 Conference on Empirical Methods in Natural Language
               Processing (EMNLP)},
  year      = {2025}
}"""

OT_SOLVERS = ("batch", "sinkhorn")
OT_GRADS = ("envelope", "unroll")


def attention_importance(att: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Attention received by every token from the real tokens: column sums over real rows.

    ``imp[b, c] = Σ_{r real} Att[b, r, c]`` at real columns ``c``, 0 elsewhere; fp32.

    Args:
        att: (B, T, T) head-averaged attention of one layer.
        real: (B, T) bool content tokens (no specials, no padding).

    Returns:
        (B, T) fp32 importance (not normalised).
    """
    if att.dim() != 3 or att.shape[:2] != real.shape or att.shape[1] != att.shape[2]:
        raise ValueError(
            f"att must be (B, T, T) and real (B, T), got {tuple(att.shape)}, {tuple(real.shape)}."
        )
    real = real.bool()
    with torch.autocast(device_type=att.device.type, enabled=False):
        cols = (att.float() * real[:, :, None]).sum(1)  # (B, T) over real rows
        return cols * real


def mapped_attention_cka_loss(
    att_s: torch.Tensor,
    att_t: torch.Tensor,
    pairs: torch.Tensor,
    t_importance: torch.Tensor,
    top_frac: float = 1 / 3,
    min_tokens: int = 3,
) -> torch.Tensor:
    """EMO's intra-relation term: CKA between the attention among the top mapped tokens.

    ``L = mean_b (1 − CKA(Att_s[J, J], Att_t[I, I]))`` where ``(J, I)`` are the mapped pairs whose
    teacher token is among the ``⌈top_frac·P_b⌉`` (≥ ``min_tokens``) most important.

    Args:
        att_s: (B, T_s, T_s) head-averaged student attention (carries the gradient).
        att_t: (B, T_t, T_t) head-averaged teacher attention.
        pairs: (B, P, 2) long ``(student, teacher)`` positions (reciprocal MinED), −1 = padding.
        t_importance: (B, T_t) teacher token importance (:func:`attention_importance`).
        top_frac: share of each text's mapped pairs kept.
        min_tokens: keep at least this many; texts with fewer pairs are skipped. Linear CKA of
            two items is always 1 (their centred rows are ±v on both sides), so 3 is the
            smallest count that carries a signal.

    Returns:
        0-d fp32 tensor; exactly 0 (attached to ``att_s``) when every text is skipped.

    References:
        Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019,
        https://arxiv.org/abs/1905.00414 (linear CKA); Truong et al., EMO, EMNLP 2025.
    """
    b, t_s, t_t = att_s.shape[0], att_s.shape[1], att_t.shape[1]
    if att_s.shape != (b, t_s, t_s) or att_t.shape != (b, t_t, t_t) or pairs.shape[::2] != (b, 2):
        raise ValueError(
            f"Expected att_s (B, T_s, T_s), att_t (B, T_t, T_t), pairs (B, P, 2); got "
            f"{tuple(att_s.shape)}, {tuple(att_t.shape)}, {tuple(pairs.shape)}."
        )
    if not 0 < top_frac <= 1 or min_tokens < 1:
        raise ValueError(f"Need 0 < top_frac ≤ 1 and min_tokens ≥ 1; got {top_frac}, {min_tokens}.")
    valid = pairs[..., 0] >= 0  # (B, P)
    j, i = pairs[..., 0].clamp_min(0), pairs[..., 1].clamp_min(0)  # (B, P)
    with torch.autocast(device_type=att_s.device.type, enabled=False):
        imp = t_importance.float().gather(1, i).masked_fill(~valid, -math.inf)  # (B, P)
        n = valid.sum(-1)  # (B,)
        k = torch.ceil(top_frac * n).long().clamp_min(min_tokens).minimum(n)
        order = imp.argsort(dim=-1, descending=True, stable=True)
        sel = (order.argsort(dim=-1) < k[:, None]) & valid  # (B, P): rank < k
        x = gather_tokens(att_s.float(), j)  # (B, P, T_s) rows of the mapped student tokens
        x = x.gather(2, j[:, None, :].expand(-1, j.shape[1], -1))  # (B, P, P) their columns
        y = gather_tokens(att_t.float(), i)  # (B, P, T_t)
        y = y.gather(2, i[:, None, :].expand(-1, i.shape[1], -1))  # (B, P, P)
        cols = sel[:, None, :].float()  # (B, 1, P): zero the unselected columns
        cka = linear_cka(x * cols, y * cols, row_mask=sel)  # (B,)
        return masked_mean_across_ranks(1 - cka, n >= min_tokens)


def ot_cost_matrix(h_s: torch.Tensor, h_t_proj: torch.Tensor, t_real: torch.Tensor) -> torch.Tensor:
    """EMO's transport cost ``C = 1 − softmax_row(H_s·(W H_t)ᵀ / √d_s)`` over real teacher tokens.

    Args:
        h_s: (B, T_s, D_s) student token states.
        h_t_proj: (B, T_t, D_s) teacher token states projected to the student width (``W H_t``).
        t_real: (B, T_t) bool; the row softmax runs over these columns only.

    Returns:
        (B, T_s, T_t) fp32 costs in [0, 1]; 1 at non-real teacher columns (of texts with any).
    """
    (b, _, d), t_t = h_s.shape, h_t_proj.shape[1]
    if h_t_proj.shape != (b, t_t, d) or t_real.shape != (b, t_t):
        raise ValueError(
            f"Expected h_s (B, T_s, D_s), h_t_proj (B, T_t, D_s), t_real (B, T_t); got "
            f"{tuple(h_s.shape)}, {tuple(h_t_proj.shape)}, {tuple(t_real.shape)}."
        )
    with torch.autocast(device_type=h_s.device.type, enabled=False):
        logits = h_s.float() @ h_t_proj.float().transpose(1, 2) / math.sqrt(d)  # (B, T_s, T_t)
        # finite fill: a text without real teacher tokens gets uniform rows, not NaN gradients
        logits = logits.masked_fill(~t_real.bool()[:, None, :], torch.finfo(logits.dtype).min)
        return 1 - logits.softmax(-1)


def _masses(importance: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Importance → probability masses over real tokens; a text without one gets a dummy e_0."""
    m = importance.detach().float() * real
    total = m.sum(-1, keepdim=True)  # (B, 1)
    dummy = torch.zeros_like(m)
    dummy[:, 0] = 1.0
    return torch.where(total > 0, m / total.clamp_min(1e-30), dummy)


def sinkhorn_plans(
    cost: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    reg: float = 0.1,
    max_iter: int = 100,
    solver: str = "batch",
    grad: str = "envelope",
) -> torch.Tensor:
    """Entropic OT plans of a batch of problems with POT (torch backend).

    Args:
        cost: (B, T_s, T_t) costs.
        a: (B, T_s) source masses, each row summing to 1; zeros (padding) take no part.
        b: (B, T_t) target masses, each row summing to 1.
        reg: entropic regularisation ε.
        max_iter: Sinkhorn iterations at most.
        solver: ``"batch"`` (one ``ot.solve_batch`` call) or ``"sinkhorn"`` (``ot.sinkhorn`` per
            problem on its non-zero-mass rows and columns).
        grad: ``"envelope"`` (plan computed without gradient) or ``"unroll"`` (autograd through
            the iterations).

    Returns:
        (B, T_s, T_t) fp32 plans with marginals ``a`` and ``b`` (up to convergence), zero at
        zero-mass rows/columns.

    References:
        Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport", NeurIPS 2013,
        https://arxiv.org/abs/1306.0895; Flamary et al., "POT: Python Optimal Transport", JMLR
        2021.
    """
    if solver not in OT_SOLVERS or grad not in OT_GRADS:
        raise ValueError(f"solver must be in {OT_SOLVERS} and grad in {OT_GRADS}.")
    if reg <= 0 or max_iter < 1:
        raise ValueError(f"Need reg > 0 and max_iter ≥ 1; got {reg}, {max_iter}.")
    with torch.autocast(device_type=cost.device.type, enabled=False):
        cost, a, b = cost.float(), a.detach().float(), b.detach().float()
        with torch.set_grad_enabled(grad == "unroll" and torch.is_grad_enabled()):
            cost_in = cost if grad == "unroll" else cost.detach()
            if solver == "batch":
                return _solve_batch(cost_in, a, b, reg, max_iter, grad)
            return _solve_each(cost_in, a, b, reg, max_iter)


def _solve_batch(
    cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, reg: float, max_iter: int, grad: str
) -> torch.Tensor:
    """All problems in one ``ot.solve_batch`` call: (B, T_s, T_t) fp32 plans."""
    # POT 0.9 allocates its scaling vectors with torch defaults: keep them on device.
    with torch.device(cost.device):
        res = ot.solve_batch(
            cost,
            reg=reg,
            a=a,
            b=b,
            max_iter=max_iter,
            tol=1e-9,
            method="sinkhorn",
            grad="autodiff" if grad == "unroll" else "detach",
        )
    return res.plan


def _solve_each(
    cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, reg: float, max_iter: int
) -> torch.Tensor:
    """One ``ot.sinkhorn`` per problem on its non-zero-mass rows and columns: (B, T_s, T_t)."""
    plans = []
    for k in range(cost.shape[0]):
        rows, cols = a[k] > 0, b[k] > 0
        sub = ot.sinkhorn(
            a[k][rows], b[k][cols], cost[k][rows][:, cols], reg, numItermax=max_iter, warn=False
        )
        full = cost.new_zeros(cost.shape[1:])
        full[rows.nonzero()[:, :1], cols.nonzero()[:, 0]] = sub  # (n_s, n_t) into place
        plans.append(full)
    return torch.stack(plans)


def importance_ot_loss(
    cost: torch.Tensor,
    s_importance: torch.Tensor,
    t_importance: torch.Tensor,
    s_real: torch.Tensor,
    t_real: torch.Tensor,
    reg: float = 0.1,
    max_iter: int = 100,
    solver: str = "batch",
    grad: str = "envelope",
) -> torch.Tensor:
    """EMO's OT term with importance-scored masses: ``L = mean_b ⟨Π_b, C_b⟩``.

    Args:
        cost: (B, T_s, T_t) transport costs (:func:`ot_cost_matrix`), carrying the gradient.
        s_importance: (B, T_s) student token importance (masses, no gradient).
        t_importance: (B, T_t) teacher token importance.
        s_real: (B, T_s) bool real student tokens.
        t_real: (B, T_t) bool real teacher tokens.
        reg: entropic regularisation (EMO: 0.1).
        max_iter: Sinkhorn iterations at most (EMO: 100).
        solver: see :func:`sinkhorn_plans`.
        grad: see :func:`sinkhorn_plans`.

    Returns:
        0-d fp32 tensor; texts without real tokens on a side are skipped (0 if all are).
    """
    s_real, t_real = s_real.bool(), t_real.bool()
    a, b = _masses(s_importance, s_real), _masses(t_importance, t_real)
    plan = sinkhorn_plans(cost, a, b, reg, max_iter, solver, grad)  # (B, T_s, T_t)
    keep = s_real.any(-1) & t_real.any(-1)  # (B,)
    plan = torch.where(keep[:, None, None], plan, torch.zeros_like(plan))
    with torch.autocast(device_type=cost.device.type, enabled=False):
        value = (plan * cost.float()).sum((1, 2))  # (B,) ⟨Π, C⟩
        return masked_mean_across_ranks(value, keep)


@dataclass
class EMOParams(DistillParams):
    """EMO hyper-parameters (DESIGN.md §6.5; ``w_task``, ``w_kd``, τ from ``DistillParams``)."""

    method = "EMO"
    w_cka: float = 0.1  # weight of L_CKA inside L_kd
    w_ot: float = 1.0  # weight of L_OT inside L_kd
    top_frac: float = 1 / 3  # share of mapped pairs (by teacher importance) used by the CKA term
    min_tokens: int = 3  # texts with fewer mapped pairs skip CKA (CKA of 2 items is always 1)
    ot_reg: float = 0.1  # entropic regularisation of Sinkhorn
    ot_iters: int = 100  # Sinkhorn iterations at most
    ot_solver: str = "batch"  # "batch" (one POT call) or "sinkhorn" (ot.sinkhorn per text)
    ot_grad: str = "envelope"  # "envelope" (plan held fixed) or "unroll" (through the iterations)

    def rules(self) -> dict[str, bool]:
        """The shared weight rules, term weights ≥ 0, CKA selection and Sinkhorn settings."""
        return {
            **super().rules(),
            "w_cka, w_ot ≥ 0": self.w_cka >= 0 and self.w_ot >= 0,
            "0 < top_frac ≤ 1, min_tokens ≥ 1": 0 < self.top_frac <= 1 and self.min_tokens >= 1,
            "ot_reg > 0, ot_iters ≥ 1": self.ot_reg > 0 and self.ot_iters >= 1,
            f"ot_solver in {OT_SOLVERS}": self.ot_solver in OT_SOLVERS,
            f"ot_grad in {OT_GRADS}": self.ot_grad in OT_GRADS,
        }


class EMOLoss(Objective):
    """EMO objective around a student; owns the trainable projection ``W: D_t → D_s``.

    ``L = w_task·InfoNCE(s1, s2) + w_kd·(w_cka·L_CKA + w_ot·L_OT)``: L_CKA from
    :func:`mapped_attention_cka_loss`, L_OT from :func:`importance_ot_loss` on the cost
    :func:`ot_cost_matrix`. The CKA term and the student's masses need attention maps: load the
    student with ``attn_implementation="eager"``.

    Args:
        student: the encoder being trained.
        teacher_hidden_dim: D_t, width of the cached teacher token states ``t_hidden``.
        params: ``EMOParams``; default the paper's weights and Sinkhorn settings.

    The batch (``DistillDataset(..., maps=("mined_reciprocal",)).collate``) holds ``input_ids`` /
    ``attention_mask`` (B, T_s), ``s_real`` (B, T_s), ``t_real`` (B, T_t), ``t_hidden``
    (B, T_t, D_t), ``t_attn`` (B, L, T_t, T_t) and ``mined_reciprocal_pairs`` (B, P, 2). Logs:
    ``loss``, ``task``, ``kd``, ``cka`` and ``ot``.

    References:
        Truong et al., "EMO: Embedding Model Distillation via Intra-Model Relation and Optimal
        Transport Alignments", EMNLP 2025, https://aclanthology.org/events/emnlp-2025/

    Example:
        >>> objective = EMOLoss(student, teacher_hidden_dim=768)  # student: eager SentenceEncoder
        >>> loss, logs = objective(batch, step=0, total_steps=100)  # batch: as above
        >>> loss.backward()  # envelope gradient: the Sinkhorn plan is held fixed
    """

    name = "EMO"
    batch_keys = ("input_ids", "attention_mask", "s_real", "t_real", "t_hidden", "t_attn")
    batch_keys += ("mined_reciprocal_pairs",)
    batch_hint = "build the dataset with DistillDataset(..., maps=('mined_reciprocal',))."

    def __init__(
        self,
        student: SentenceEncoder,
        teacher_hidden_dim: int,
        params: EMOParams | None = None,
    ) -> None:
        super().__init__(student, params or EMOParams())
        require_eager_attention(student, "EMO")
        hidden = student.backbone.config.hidden_size
        self.proj = nn.Linear(teacher_hidden_dim, hidden, device=student.device)  # W

    def pass_options(self, step: int, total_steps: int) -> tuple[dict, dict]:
        """The CKA term and the student masses read the first pass's last-layer attention."""
        return {"output_attentions": True}, {}

    def kd_terms(
        self, out: Outputs, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, Logged]:
        """``w_cka·L_CKA + w_ot·L_OT``; logs it and both terms."""
        p = self.params
        s_real, t_real = batch["s_real"].bool(), batch["t_real"].bool()
        att_s = out["attentions"][-1].mean(1)  # (B, T_s, T_s) head average, last layer
        att_t = batch["t_attn"][:, -1]  # (B, T_t, T_t) cached, last layer
        t_imp = attention_importance(att_t, t_real)  # (B, T_t)
        cka = mapped_attention_cka_loss(
            att_s, att_t, batch["mined_reciprocal_pairs"], t_imp, p.top_frac, p.min_tokens
        )
        h_t = self.proj(batch["t_hidden"].to(self.proj.weight.dtype))  # (B, T_t, D_s)
        cost = ot_cost_matrix(out["token_embeddings"], h_t, t_real)  # (B, T_s, T_t)
        s_imp = attention_importance(att_s.detach(), s_real)  # (B, T_s) masses, no gradient
        ot_loss = importance_ot_loss(
            cost, s_imp, t_imp, s_real, t_real, p.ot_reg, p.ot_iters, p.ot_solver, p.ot_grad
        )
        kd = p.w_cka * cka + p.w_ot * ot_loss
        return kd, {"kd": kd, "cka": cka, "ot": ot_loss}
