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
from samd_common.losses.base import Logged, Objective, Outputs
from samd_common.losses.matryoshka import (
    inverse_sqrt_weights,
    matryoshka_distillation_loss,
    mrd_dims,
)
from samd_common.losses.params import DistillParams
from samd_common.losses.schedules import linear_ramp
from samd_common.losses.similarity import (
    coverage_confidence,
    grouped_sums,
    linear_cka,
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
class SAMDParams(DistillParams):
    """SAMD hyper-parameters; defaults reproduce the reference 5-epoch setting.

    ``w_task`` (0.5) weighs the SimCSE InfoNCE term, ``w_kd`` (0.5) the distillation terms and
    ``temperature`` (0.07) is the InfoNCE τ (``DistillParams``).
    """

    method = "SAMD"
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

    def rules(self) -> dict[str, bool]:
        """Weights ≥ 0, ramps as shares of steps, counts ≥ 1, fractions in range."""
        return {
            **super().rules(),
            "alpha_max, span_hidden_weight ≥ 0": all(
                x >= 0 for x in (self.alpha_max, self.span_hidden_weight)
            ),
            "beta_ramp, alpha_start, alpha_ramp in [0, 1] (shares of steps)": all(
                0 <= x <= 1 for x in (self.beta_ramp, self.alpha_start, self.alpha_ramp)
            ),
            "sam_every, min_tokens, layers ≥ 1": min(self.sam_every, self.min_tokens, self.layers)
            >= 1,
            "0 < top_frac ≤ 1 and 0 ≤ min_conf ≤ 1": (
                0 < self.top_frac <= 1 and 0 <= self.min_conf <= 1
            ),
        }

    def schedule(self, progress: float) -> tuple[float, float]:
        """``(β, α)`` at a training progress in [0, 1]; 0 for a term that is switched off."""
        beta = linear_ramp(progress, 0.0, self.beta_ramp) if self.use_mrd else 0.0
        alpha = self.alpha_max * linear_ramp(progress, self.alpha_start, self.alpha_ramp)
        return beta, alpha if self.use_sam else 0.0


class SAMDLoss(Objective):
    """SAMD objective around a student; owns the trainable teacher→student projections.

    ``L = w_task·InfoNCE(s1, s2) + w_kd·(β·L_MRD + α·L_SAM [+ w_span·L_span])``, with
    ``L_MRD = Σ_m w_m (1 − cos(s1[:, :m], (W t)[:, :m]))`` and ``L_SAM`` the span-aware attention
    CKA of :func:`span_attention_cka_loss`. L_SAM needs the student's attention maps, so load it
    with ``attn_implementation="eager"``.

    Args:
        student: the encoder being trained.
        teacher_dim: D_t of the cached pooled teacher embedding ``t_pooled`` (W: D_t → D_s).
        teacher_layers: L, number of cached teacher attention layers in ``t_attn``.
        params: ``SAMDParams``; default the reference setting.
        teacher_hidden_dim: width of ``t_hidden`` for the span term; None means ``teacher_dim``.

    The batch (``DistillDataset.collate`` on the teacher cache) holds ``input_ids`` /
    ``attention_mask`` (B, T_s) and ``t_pooled`` (B, D_t); for L_SAM ``s_real`` (B, T_s),
    ``t_real`` (B, T_t), ``t_attn`` (B, L, T_t, T_t), ``overlap`` (B, T_s, T_t); for the span
    term ``t_hidden`` (B, T_t, D_t), ``s_group`` (B, T_s), ``t_group`` (B, T_t). Logs: ``loss``,
    ``task``, ``beta``, ``alpha`` and ``mrd`` / ``sam`` / ``span`` on the steps that compute them.

    References:
        Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019,
        https://arxiv.org/abs/1905.00414 (linear CKA); Kusupati et al., "Matryoshka
        Representation Learning", NeurIPS 2022, https://arxiv.org/abs/2205.13147; SAMD.

    Example:
        >>> objective = SAMDLoss(student, teacher_dim=768)  # student: eager SentenceEncoder
        >>> loss, logs = objective(batch, step=500, total_steps=1000)  # batch: as above
        >>> loss.backward()  # reaches the student and the projection W
    """

    name = "SAMD"
    batch_keys = BATCH_KEYS
    batch_hint = "build it with DistillDataset.collate on the teacher cache (the SAMD collator)."

    def __init__(
        self,
        student: SentenceEncoder,
        teacher_dim: int,
        teacher_layers: int = 1,
        params: SAMDParams | None = None,
        teacher_hidden_dim: int | None = None,
    ) -> None:
        super().__init__(student, params or SAMDParams())
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

    def plan(self, step: int, total_steps: int) -> tuple[float, float, bool]:
        """``(β, α, whether L_SAM is computed)`` at ``step`` of ``total_steps``."""
        p = self.params
        beta, alpha = p.schedule(min(max(step / total_steps, 0.0), 1.0))
        return beta, alpha, alpha > 0 and step % p.sam_every == 0

    def required_keys(self, step: int, total_steps: int) -> tuple[str, ...]:
        """The MRD keys, plus the L_SAM keys on its steps and the span keys when it is on."""
        sam_due = self.plan(step, total_steps)[2]
        span = SPAN_KEYS if self.params.span_hidden else ()
        return BATCH_KEYS + (SAM_KEYS if sam_due else ()) + span

    def pass_options(self, step: int, total_steps: int) -> tuple[dict, dict]:
        """Attention maps from the first pass on L_SAM steps."""
        return {"output_attentions": True} if self.plan(step, total_steps)[2] else {}, {}

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

    def kd_terms(
        self, out: Outputs, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, Logged]:
        """``β·L_MRD + α·L_SAM [+ w_span·L_span]``; logs each computed term, β and α."""
        p, (beta, alpha, sam_due) = self.params, self.plan(step, total_steps)
        s1, terms, kd = out["sentence_embedding"], {}, []  # (B, D_s)
        if p.use_mrd:
            t = self.proj(batch["t_pooled"].to(self.proj.weight.dtype))  # (B, D_s)
            terms["mrd"] = matryoshka_distillation_loss(s1, t, self.dims, self.dim_weights)
            kd.append(beta * terms["mrd"])
        if sam_due:
            terms["sam"] = self.sam_loss(out["attentions"], batch)
            kd.append(alpha * terms["sam"])
        if p.span_hidden:
            h_t = self.proj_tokens(batch["t_hidden"].to(self.proj_tokens.weight.dtype))
            terms["span"] = span_group_hidden_loss(
                out["token_embeddings"], h_t, batch["s_group"], batch["t_group"]
            )
            kd.append(p.span_hidden_weight * terms["span"])
        total = sum(kd, torch.zeros((), device=s1.device))
        return total, {**terms, "beta": beta, "alpha": alpha}
