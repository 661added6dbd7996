"""DSKD — Dual-Space Knowledge Distillation with cross-model attention, adapted to encoders.

Zhang et al., "Dual-Space Knowledge Distillation for Large Language Models", EMNLP 2024,
https://arxiv.org/abs/2406.17328

DSKD observes that ordinary KD compares the two models' outputs in two different
representation spaces. It therefore projects the teacher's hidden states into the student's
space and the student's into the teacher's, and distils in *both* spaces. For models with
different vocabularies it aligns the two token sequences with a learned cross-model attention
(CMA): queries come from the student's input embeddings, keys from the teacher's (divided by
their standard deviation); ``A = QKᵀ/√d``; row-softmax(A) carries teacher states to every
student token, column-softmax(A)ᵀ carries student states to every teacher token. The
projectors are trained with their own, larger learning rate (1e-3 in the DSKD scripts).

``L = w_task·InfoNCE(s1, s2) + w_kd·(w_t2s·L_t2s + w_s2t·L_s2t + w_orth·L_orth)`` with
``Ĥ_t→s = softmax_row(A)·W_t2s(H_t/σ)``, ``Ĥ_s→t = softmax_col(A)ᵀ·W_s2t(H_s/σ)``,
``L_t2s = d(H_s/σ, Ĥ_t→s)``, ``L_s2t = d(H_t/σ, Ĥ_s→t)``, ``d`` = 1 − cos (default) or MSE.

Adaptation to sentence encoders (no LM heads, DESIGN.md §6.3):

* DSKD compares *logits*: the projected states go through the other model's LM head (KL to
  its distribution, CE to the target token). Encoders have no LM head, so both spaces compare
  token *representations* directly (cosine by default, or MSE on std-normalised states).
* Keys and queries use the token's own input embedding only: DSKD concatenates the embedding of
  the next (target) token, which a bidirectional encoder does not predict. ``√d`` is the key
  width. Teacher values are ``H_t/σ`` alone for the same reason (DSKD adds target embeddings).
* DSKD's t2s projectors are anchored by the ground-truth CE through the student's LM head and
  its s2t ones by the teacher's LM head. Without heads the student-space term is trained jointly
  (projectors and student on the same cosine) and could be met by shrinking or flattening the
  projectors, so a soft-orthogonality regulariser ``L_orth = mean_W ||W Wᵀ − I||²_F / k``
  (smaller Gram, ``k = min(d_in, d_out)``; Bansal et al. 2018) keeps every singular value of
  W_q, W_t2s, W_s2t near 1: a projector can then neither vanish nor fold onto one direction.
  The projectors start orthogonal (zero penalty), biases at zero; W_q has no bias (a query
  bias only adds a per-teacher-token offset to every row of A, i.e. an attention sink).
* Queries are ``W_q(E_s/σ)``: the student's embeddings are scaled by their standard deviation
  like the keys, so that an orthogonal W_q gives unit-scale logits and the regulariser does not
  fix the attention temperature too hot or too cold. As in DSKD, ``E_s`` is detached
  (``detach_query``): the alignment is learnt by W_q, not by moving the student's vocabulary.
* σ is a per-sample standard deviation over that sample's valid tokens (DSKD: one std over the
  whole batch, padding included), so a sample's loss does not depend on its batch-mates and the
  result is identical under DDP.
* Attention runs over real tokens only by default (no ``[CLS]``/``<s>``/``</s>``, no padding):
  the specials' constant embeddings would otherwise become attention sinks. Student rows and
  teacher columns outside the mask get weight 0 and no loss; a sample without any valid token on
  either side contributes 0 (never NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samd_common.losses.common import info_nce, masked_mean_across_ranks, params_from_dict
from samd_common.models import SentenceEncoder

CITATION = """@inproceedings{zhang2024dskd,
  title     = {Dual-Space Knowledge Distillation for Large Language Models},
  author    = {Zhang, Songming and Zhang, Xue and Sun, Zengkui and Chen, Yufeng and Xu, Jinan},
  booktitle = {Proceedings of the 2024 Conference on Empirical Methods in Natural Language
               Processing (EMNLP)},
  year      = {2024},
  note      = {arXiv:2406.17328}
}"""

BATCH_KEYS = ("input_ids", "attention_mask", "t_hidden", "t_embed")
DISTANCES = ("cosine", "mse")
PROJ_LR = 1e-3  # learning rate of the projectors in the DSKD scripts (TrainConfig.proj_lr)


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


@dataclass
class DSKDParams:
    """DSKD hyper-parameters (encoder adaptation); the projectors' lr is ``TrainConfig.proj_lr``."""

    w_task: float = 0.5  # weight of the SimCSE InfoNCE term
    w_kd: float = 0.5  # weight of the distillation terms
    temperature: float = 0.07  # InfoNCE τ
    distance: str = "cosine"  # token distance in both spaces: "cosine" or "mse" (on H/σ)
    w_t2s: float = 1.0  # weight of the student-space term (teacher states → student tokens)
    w_s2t: float = 1.0  # weight of the teacher-space term (student states → teacher tokens)
    # Weight of the projectors' soft-orthogonality (anti-collapse) term. Not in DSKD (its LM
    # heads anchor the projectors); 1.0 keeps every singular value within ≈10 % of 1 on tiny
    # models at 10× the default proj_lr, while 0.1 let single directions of W_t2s fade.
    w_orth: float = 1.0
    specials: bool = False  # also attend over special tokens ([CLS], <s>, …); padding never
    detach_query: bool = True  # queries from detached student embeddings, as in DSKD

    def __post_init__(self) -> None:
        weights = (self.w_task, self.w_kd, self.w_t2s, self.w_s2t, self.w_orth)
        ok = {
            "w_task, w_kd, w_t2s, w_s2t, w_orth ≥ 0": all(w >= 0 for w in weights),
            "temperature > 0": self.temperature > 0,
            f"distance in {DISTANCES}": self.distance in DISTANCES,
        }
        bad = [rule for rule, holds in ok.items() if not holds]
        if bad:
            raise ValueError(f"Invalid DSKDParams, need {'; '.join(bad)} (got {self}).")

    @classmethod
    def from_dict(cls, d: dict) -> DSKDParams:
        """Build from a plain dict; unknown keys raise ``ValueError`` with a suggestion."""
        return params_from_dict(cls, d, "DSKD")


class DSKDLoss(nn.Module):
    """DSKD objective around a student; owns the projectors W_q, W_t2s and W_s2t.

    The training loop gives every parameter outside ``.student`` the ``TrainConfig.proj_lr``
    learning rate: set it to ``PROJ_LR`` (1e-3, the DSKD scripts' value) for DSKD runs.
    """

    def __init__(
        self,
        student: SentenceEncoder,
        teacher_hidden_dim: int,
        teacher_embed_dim: int | None = None,
        params: DSKDParams | None = None,
    ) -> None:
        """Create the projectors (orthogonal weights, zero biases) on the student's device.

        Args:
            student: the encoder being trained.
            teacher_hidden_dim: D_t, width of the cached teacher token states ``t_hidden``.
            teacher_embed_dim: width of the cached teacher input embeddings ``t_embed``;
                None means D_t (true for BERT, XLM-R, E5, MiniLM; not for factorised
                embeddings such as ALBERT's).
            params: hyper-parameters; default ``DSKDParams()``.
        """
        super().__init__()
        self.student, self.params = student, params or DSKDParams()
        d_s = student.backbone.config.hidden_size
        d_se = student.backbone.get_input_embeddings().embedding_dim
        d_te = teacher_embed_dim or teacher_hidden_dim
        if min(teacher_hidden_dim, d_te) < 1:
            raise ValueError(f"Teacher widths must be ≥ 1, got {teacher_hidden_dim}, {d_te}.")
        device = student.device
        self.query = nn.Linear(d_se, d_te, bias=False, device=device)  # W_q: E_s → key space
        self.t2s = nn.Linear(teacher_hidden_dim, d_s, device=device)  # W_t2s: D_t → D_s
        self.s2t = nn.Linear(d_s, teacher_hidden_dim, device=device)  # W_s2t: D_s → D_t
        for proj in self.projectors():
            nn.init.orthogonal_(proj.weight)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)

    def projectors(self) -> list[nn.Linear]:
        """``[W_q, W_t2s, W_s2t]``."""
        return [self.query, self.t2s, self.s2t]

    def forward(
        self, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One DSKD training loss.

        Args:
            batch: padded tensors on the student's device: ``input_ids``/``attention_mask``
                (B, T_s); ``t_hidden`` (B, T_t, D_t) teacher last-layer states; ``t_embed``
                (B, T_t, D_e) teacher input embeddings; ``s_real`` (B, T_s) and ``t_real``
                (B, T_t) bool (or, with ``specials=True``, ``t_mask`` (B, T_t)).
            step: 0-based optimizer step (unused: DSKD has no schedule of its own).
            total_steps: number of steps of the run (unused).

        Returns:
            ``(loss, logs)``; logs hold floats ``loss``, ``task``, ``t2s``, ``s2t``, ``orth``.
        """
        p = self.params
        needed = BATCH_KEYS + (("t_mask",) if p.specials else ("s_real", "t_real"))
        missing = [key for key in needed if key not in batch]
        if missing:
            raise KeyError(f"DSKD batch lacks {missing}; build it with DistillDataset.collate.")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if p.specials:
            s_valid, t_valid = mask.bool(), batch["t_mask"].bool()
        else:  # real tokens only; s_real/t_real already exclude padding
            s_valid, t_valid = batch["s_real"].bool(), batch["t_real"].bool()
        t_embed, t_hidden = batch["t_embed"], batch["t_hidden"]
        if t_embed.shape[-1] != self.query.out_features:
            raise ValueError(
                f"t_embed has width {t_embed.shape[-1]} but W_q was built for "
                f"{self.query.out_features}; pass teacher_embed_dim={t_embed.shape[-1]}."
            )
        out1 = self.student(ids, mask)
        s1 = out1["sentence_embedding"]  # (B, D_s)
        s2 = self.student(ids, mask)["sentence_embedding"]  # (B, D_s), other dropout mask
        h_s = out1["token_embeddings"]  # (B, T_s, D_s)
        e_s = self.student.backbone.get_input_embeddings()(ids)  # (B, T_s, D_se)
        if p.detach_query:
            e_s = e_s.detach()
        dtype = self.query.weight.dtype
        q = self.query((e_s / sample_std(e_s, s_valid)).to(dtype))  # (B, T_s, D_e)
        k = t_embed.float() / sample_std(t_embed, t_valid)  # (B, T_t, D_e)
        h_t = t_hidden.float() / sample_std(t_hidden, t_valid)  # (B, T_t, D_t)
        t2s, s2t = cross_model_attention(q, k, t_valid, s_valid)
        h_s_scaled = h_s.float() / sample_std(h_s, s_valid)  # (B, T_s, D_s), unit scale like h_t
        values_t = self.t2s(h_t.to(dtype))  # (B, T_t, D_s)
        values_s = self.s2t(h_s_scaled.to(dtype))  # (B, T_s, D_t)
        terms = {"task": info_nce(s1, s2, p.temperature)}
        terms["t2s"], terms["s2t"] = dual_space_losses(
            h_s_scaled, h_t, values_t, values_s, t2s, s2t, p.distance
        )
        penalties = [orthogonality_penalty(proj.weight) for proj in self.projectors()]
        terms["orth"] = torch.stack(penalties).mean()
        kd = p.w_t2s * terms["t2s"] + p.w_s2t * terms["s2t"] + p.w_orth * terms["orth"]
        loss = p.w_task * terms["task"] + p.w_kd * kd
        values = torch.stack([loss.detach().float(), *(v.detach().float() for v in terms.values())])
        logs = dict(zip(["loss", *terms], values.tolist(), strict=True))  # one host sync
        return loss, logs


def build_dskd(student: SentenceEncoder, teacher, params: dict) -> DSKDLoss:
    """Registry builder (``methods.METHODS["DSKD"]``).

    The projectors' learning rate is not a loss parameter: runs set ``TrainConfig.proj_lr`` to
    ``PROJ_LR`` (the registry entry's training defaults).

    Raises:
        ValueError: no teacher, or invalid parameters.
    """
    if teacher is None:
        raise ValueError("DSKD needs a teacher (TeacherInfo); got None.")
    return DSKDLoss(
        student,
        teacher.hidden_dim,
        teacher_embed_dim=teacher.embed_dim,
        params=DSKDParams.from_dict(params),
    )
