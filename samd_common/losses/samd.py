"""SAMD — Span-Aware Matryoshka Distillation (this project's own method; no paper yet).

The student is trained with unsupervised SimCSE plus two distillation terms that need no shared
vocabulary. ``L_MRD`` distils the teacher's sentence embedding, through a trainable projection,
into every Matryoshka prefix of the student's embedding (cosine, weights ∝ 1/√m). ``L_SAM``
aligns attention: the teacher's attention map is carried into student token space through the
character-span overlap of the two tokenizations (``P = A·Att_t·Aᵀ``) and compared with the
student's on the most attended tokens with linear CKA, weighted by the alignment's coverage.
β ramps the MRD term in early, α switches the SAM term on later; both ramps are fractions of the
total step count. An optional term matches mean hidden states per span group.

``L = w_task·L_task + w_kd·(β(step)·L_MRD + α(step)·L_SAM [+ w_span·L_span])``
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samd_common.distributed import masked_mean_across_ranks
from samd_common.losses.common import (
    coverage_confidence,
    grouped_sums,
    info_nce,
    inverse_sqrt_weights,
    linear_cka,
    linear_ramp,
    matryoshka_distillation_loss,
    mrd_dims,
    params_from_dict,
    row_normalize,
)
from samd_common.models import SentenceEncoder

CITATION = """@misc{samd,
  title        = {{SAMD}: Span-Aware Matryoshka Distillation for Cross-Tokenizer Knowledge
                  Distillation of Sentence-Embedding Models},
  author       = {{SAMD contributors}},
  year         = {2025},
  howpublished = {Software: the samd_common package},
  note         = {Placeholder entry until the paper is published}
}"""

BATCH_KEYS = ("input_ids", "attention_mask", "t_pooled")
SAM_KEYS = ("s_real", "t_real", "t_attn", "overlap")
SPAN_KEYS = ("t_hidden", "s_group", "t_group")


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
    h_s: torch.Tensor, h_t_proj: torch.Tensor, s_group: torch.Tensor, t_group: torch.Tensor
) -> torch.Tensor:
    """Optional SAMD term: match mean hidden states of every span group.

    ``L = mean_{(b, g)} (1 − cos(mean_{j∈g} H_s[b, j], mean_{i∈g} (W H_t)[b, i]))``

    Args:
        h_s: (B, T_s, D_s) student token states.
        h_t_proj: (B, T_t, D_s) teacher token states projected to the student's hidden size.
        s_group: (B, T_s) long span-group id of each student token, −1 for none.
        t_group: (B, T_t) long span-group id of each teacher token, −1 for none.

    Returns:
        0-d fp32 tensor; 0 (attached to the graph) when no group has tokens on both sides.

    References:
        SAMD (this project); span groups are the connected components of the overlap graph.
    """
    (b, t_s, d), t_t = h_s.shape, h_t_proj.shape[1]
    if h_t_proj.shape != (b, t_t, d) or s_group.shape != (b, t_s) or t_group.shape != (b, t_t):
        raise ValueError(
            f"Expected h_s (B, T_s, D_s), h_t_proj (B, T_t, D_s), s_group (B, T_s), t_group "
            f"(B, T_t); got {tuple(h_s.shape)}, {tuple(h_t_proj.shape)}, "
            f"{tuple(s_group.shape)}, {tuple(t_group.shape)}. Project teacher states first."
        )
    sum_s, count_s, sum_t, count_t = grouped_sums(h_s, s_group, h_t_proj, t_group)
    both = (count_s > 0) & (count_t > 0)
    # cos(mean, mean) == cos(sum, sum): the counts only mark which groups exist on both sides.
    cos = F.cosine_similarity(sum_s, sum_t, dim=-1)  # (B·G,)
    return masked_mean_across_ranks(1 - cos, both)


@dataclass
class SAMDParams:
    """SAMD hyper-parameters; defaults reproduce the reference 5-epoch setting."""

    w_task: float = 0.5  # weight of the SimCSE InfoNCE term
    w_kd: float = 0.5  # weight of the distillation terms
    temperature: float = 0.07  # InfoNCE τ
    dims: list[int] | None = None  # Matryoshka dims of L_MRD; None → mrd_dims(student width)
    beta_ramp: float = 0.062  # β ramps 0→1 over this share of steps (1000/16090 in the reference)
    alpha_max: float = 0.02  # α's final value
    alpha_start: float = 0.09  # share of steps before α starts to ramp
    alpha_ramp: float = 0.16  # share of steps over which α ramps 0→alpha_max
    sam_every: int = 4  # L_SAM computed on every n-th step only (weight not rescaled)
    top_frac: float = 0.25  # share of real student tokens kept for CKA
    min_tokens: int = 2  # at least this many tokens kept; samples with fewer are skipped
    min_conf: float = 0.3  # samples with alignment coverage below this are skipped
    layers: int = 1  # align the last k student layers (teacher layers mapped uniformly)
    span_hidden: bool = False  # add the span-group hidden-state term
    span_hidden_weight: float = 1.0  # its weight inside the KD part
    use_mrd: bool = True  # ablation switch for L_MRD
    use_sam: bool = True  # ablation switch for L_SAM

    def __post_init__(self) -> None:
        p = self
        ok = {
            "w_task, w_kd, alpha_max, span_hidden_weight ≥ 0": all(
                x >= 0 for x in (p.w_task, p.w_kd, p.alpha_max, p.span_hidden_weight)
            ),
            "temperature > 0": p.temperature > 0,
            "beta_ramp, alpha_start, alpha_ramp in [0, 1] (shares of steps)": all(
                0 <= x <= 1 for x in (p.beta_ramp, p.alpha_start, p.alpha_ramp)
            ),
            "sam_every, min_tokens, layers ≥ 1": min(p.sam_every, p.min_tokens, p.layers) >= 1,
            "0 < top_frac ≤ 1 and 0 ≤ min_conf ≤ 1": 0 < p.top_frac <= 1 and 0 <= p.min_conf <= 1,
        }
        bad = [rule for rule, holds in ok.items() if not holds]
        if bad:
            raise ValueError(f"Invalid SAMDParams, need {'; '.join(bad)} (got {self}).")

    @classmethod
    def from_dict(cls, d: dict) -> SAMDParams:
        """Build from a plain dict; unknown keys raise ``ValueError`` with a suggestion."""
        return params_from_dict(cls, d, "SAMD")

    def schedule(self, progress: float) -> tuple[float, float]:
        """``(β, α)`` at a training progress in [0, 1]; 0 for a term that is switched off."""
        beta = linear_ramp(progress, 0.0, self.beta_ramp) if self.use_mrd else 0.0
        alpha = self.alpha_max * linear_ramp(progress, self.alpha_start, self.alpha_ramp)
        return beta, alpha if self.use_sam else 0.0


class SAMDLoss(nn.Module):
    """SAMD objective around a student; owns the trainable teacher→student projections.

    The batch comes from the teacher cache and the collator (see ``forward``). L_SAM needs the
    student's attention maps, so load it with ``attn_implementation="eager"``.
    """

    def __init__(
        self,
        student: SentenceEncoder,
        teacher_dim: int,
        teacher_layers: int = 1,
        params: SAMDParams | None = None,
        teacher_hidden_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.student, self.params = student, params or SAMDParams()
        p, cfg = self.params, student.backbone.config
        self.dims = list(p.dims) if p.dims else mrd_dims(student.dim)
        if max(self.dims) > student.dim:
            raise ValueError(f"dims {self.dims} exceed the student width {student.dim}.")
        self.dim_weights = inverse_sqrt_weights(self.dims)
        self.teacher_layers = teacher_layers
        if p.use_sam and (teacher_layers < 1 or p.layers > cfg.num_hidden_layers):
            raise ValueError(
                f"Need teacher_layers ≥ 1 and layers ≤ the student's {cfg.num_hidden_layers} "
                f"layers; got teacher_layers={teacher_layers}, layers={p.layers}."
            )
        if p.use_sam and getattr(cfg, "_attn_implementation", "eager") != "eager":
            raise ValueError(
                "L_SAM needs attention maps: load the student with "
                "load_encoder(..., attn_implementation='eager') or set use_sam=False."
            )
        # Last k student layers ↔ cached teacher layers, spread uniformly, last ↔ last.
        n_s, k = cfg.num_hidden_layers, p.layers
        self.layer_pairs = [(n_s - k + i, -(-(i + 1) * teacher_layers // k) - 1) for i in range(k)]
        device = student.device
        self.proj = nn.Linear(teacher_dim, student.dim, device=device)
        self.proj_tokens = (
            nn.Linear(teacher_hidden_dim or teacher_dim, cfg.hidden_size, device=device)
            if p.span_hidden
            else None
        )

    def trainable_groups(self, lr: float, proj_lr: float | None = None) -> list[dict]:
        """Optimizer parameter groups: the student, then the projections (``proj_lr`` or lr)."""
        proj = [*self.proj.parameters(), *(self.proj_tokens or nn.Identity()).parameters()]
        student = [q for q in self.student.parameters() if q.requires_grad]
        return [
            {"name": "student", "params": student, "lr": lr},
            {"name": "projection", "params": proj, "lr": proj_lr if proj_lr is not None else lr},
        ]

    def task_loss(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """L_task on the two dropout passes (SAMD-MRL overrides this with Matryoshka InfoNCE)."""
        return info_nce(s1, s2, self.params.temperature)

    def sam_loss(self, attentions: tuple[torch.Tensor, ...], batch: dict) -> torch.Tensor:
        """L_SAM averaged over the layer pairs, from the student's per-layer (B, H, T_s, T_s)."""
        t_attn = batch["t_attn"]  # (B, L, T_t, T_t)
        if t_attn.dim() != 4 or t_attn.shape[1] != self.teacher_layers:
            raise ValueError(
                f"t_attn must be (B, {self.teacher_layers}, T_t, T_t) (teacher_layers given at "
                f"construction), got {tuple(t_attn.shape)}."
            )
        p = self.params
        terms = [
            span_attention_cka_loss(
                attentions[i_s].mean(1),  # (B, T_s, T_s) head average
                t_attn[:, i_t],  # (B, T_t, T_t)
                batch["overlap"],
                batch["s_real"],
                batch["t_real"],
                top_frac=p.top_frac,
                min_tokens=p.min_tokens,
                min_conf=p.min_conf,
            )
            for i_s, i_t in self.layer_pairs
        ]
        return torch.stack(terms).mean()

    def forward(
        self, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One SAMD training loss.

        Args:
            batch: padded tensors on the student's device: ``input_ids``/``attention_mask``
                (B, T_s); ``t_pooled`` (B, D_t); for L_SAM ``s_real`` (B, T_s) bool, ``t_real``
                (B, T_t) bool, ``t_attn`` (B, L, T_t, T_t) head-averaged attention of the
                teacher's last L layers, ``overlap`` (B, T_s, T_t); for the span term
                ``t_hidden`` (B, T_t, D_t), ``s_group`` (B, T_s), ``t_group`` (B, T_t).
            step: 0-based optimizer step.
            total_steps: number of steps of the run (schedules are fractions of it).

        Returns:
            ``(loss, logs)``; logs hold floats ``loss``, ``task``, ``beta``, ``alpha`` and
            ``mrd`` / ``sam`` / ``span`` only on steps where that term was computed.
        """
        if total_steps <= 0:
            raise ValueError(f"total_steps must be ≥ 1, got {total_steps}.")
        p = self.params
        beta, alpha = p.schedule(min(max(step / total_steps, 0.0), 1.0))
        sam_due = alpha > 0 and step % p.sam_every == 0
        needed = BATCH_KEYS + (SAM_KEYS if sam_due else ()) + (SPAN_KEYS if p.span_hidden else ())
        missing = [key for key in needed if key not in batch]
        if missing:
            raise KeyError(f"SAMD batch lacks {missing}; build it with the SAMD collator.")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        out1 = self.student(ids, mask, **({"output_attentions": True} if sam_due else {}))
        s1 = out1["sentence_embedding"]  # (B, D_s)
        s2 = self.student(ids, mask)["sentence_embedding"]  # (B, D_s), other dropout mask
        terms = {"task": self.task_loss(s1, s2)}
        kd = []
        if p.use_mrd:
            t = self.proj(batch["t_pooled"].to(self.proj.weight.dtype))  # (B, D_s)
            terms["mrd"] = matryoshka_distillation_loss(s1, t, self.dims, self.dim_weights)
            kd.append(beta * terms["mrd"])
        if sam_due:
            terms["sam"] = self.sam_loss(out1["attentions"], batch)
            kd.append(alpha * terms["sam"])
        if p.span_hidden:
            h_t = self.proj_tokens(batch["t_hidden"].to(self.proj_tokens.weight.dtype))
            terms["span"] = span_group_hidden_loss(
                out1["token_embeddings"], h_t, batch["s_group"], batch["t_group"]
            )
            kd.append(p.span_hidden_weight * terms["span"])
        loss = p.w_task * terms["task"] + p.w_kd * sum(kd, torch.zeros((), device=s1.device))
        values = torch.stack([loss.detach().float(), *(v.detach().float() for v in terms.values())])
        logs = dict(zip(["loss", *terms], values.tolist(), strict=True))  # one host sync
        return loss, {**logs, "beta": beta, "alpha": alpha}
