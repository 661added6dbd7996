"""SAMD — Span-Aware Matryoshka Distillation (this project's own method; no paper yet).

SAMD distils a teacher into a student with another tokenizer. Its default objective has two
terms, computed from one student pass against targets that never move (the teacher runs once,
into the cache):

* ``L_span`` — the span-aware, cross-tokenizer term: both tokenizations of a text are cut into
  *span groups* (connected components of the character-overlap graph of their tokens, so each
  group covers the same characters on both sides); the mean student token state of each group,
  through a **student-side** head ``Q: H_s → H_t`` (dropped after training), regresses (mean
  squared error, CDM's distance; ``span_distance="cosine"`` is the first design's) onto the mean
  teacher token state of the same group. It carries token-level knowledge that a pooled
  embedding cannot, with no shared vocabulary.
* ``L_unif`` — SimCSE's in-batch InfoNCE with the first pass as its own positive,
  ``InfoNCE(s, s) = mean_i log Σ_j exp((cos(s_i, s_j) − 1)/τ)`` (τ = ``temperature``, 0.07): the
  repulsion of SimCSE's in-batch negatives (the uniformity of Wang & Isola, ICML 2020) without
  its dropout views, so without SimCSE's second student pass.

``L = w_kd·(λ_span·L_span + λ_unif·L_unif) = ½·L_span + ½·L_unif`` (w_kd = ½, λ_span = λ_unif =
1), ``L_span = mean_{(b, g)} mean_d (Q·mean_{j∈g} h_s[b, j] − mean_{i∈g} h_t[b, i])²``; after
training the student keeps half of its update (WiSE-FT, below); the `bench` preset trains SAMD at
lr 1e-4. The general form, with the optional terms below:
``L = w_task·InfoNCE(s¹, s²) + w_kd·(λ_point·L_point + L_rel + λ_span·L_span + λ_unif·L_unif
[+ λ_sam·L_SAM])``, ``L_point = Σ_m w_m (1 − cos(s_{:m}, t̃_{:m}))``, ``t̃ = t − μ_t``,
``L_rel = Σ_m w_m (λ_sim·L_sim(S(s_{:m}), S(t̃)) + λ_resim·L_resim(S(s_{:m}), S(t̃)))``,
m over the halving series of the student width down to ``min_dim`` (384, 192, 96, 48), w_m = 1.

Each part's place and weight was decided on the benchmark's dev protocol
(``results/bench-dev/README.md``, its numbered findings) and then read on test (``results/bench``):

* L_span in MSE, not cosine (finding 13): +0.38 ± 0.05 avg ID, +0.85 ± 0.35 OOD (two seeds).
  Its value (≈ 13 at the end of a run with EmbeddingGemma) follows the teacher's token-state
  scale (σ̄²_t, the per-dimension variance of its cached states: 17.24 EmbeddingGemma, 0.026
  e5-small); ``span_norm=True`` divides it by σ̄²_t (scale-free; off: at the implicit weight it
  cost the e5-small pair 2.9 points, finding 15). With another teacher, read the logged ``span``
  against ``unif`` and choose λ_span on a dev split. L_span pairs practically the same tokens as
  CDM's DTW path (15.7 span groups vs 15.9 merged steps per text, finding 16).
* L_unif in place of SimCSE (finding 25): SimCSE beside the span term, at CDM's ½ : ½ weights,
  gained on the STS tasks (finding 24) but doubles the step; L_unif keeps the gain (+0.13 ± 0.08
  avg ID over SimCSE on dev; on test +0.11 ± 0.05, three seeds) at 1.01× the pointwise step.
  Against the span term alone (finding 29) it is +0.05 ± 0.11 avg ID, −0.65 ± 0.15 OOD on
  minilm-l6's dev protocol (+0.06 ± 0.07 / +0.26 ± 0.11 on test, two seeds), +0.61 ± 0.15 on
  minilm-l3 and +3.7 with e5-small: it is kept for the
  pairs whose span term alone is weak. Without L_span (L_unif alone) SAMD falls below the
  undistilled student (−3.71 ± 0.23 avg ID against the default): the span term distils.
* ``L_rel`` — Jasper's relational terms at every student prefix: the in-batch cosine matrix of
  ``s_{:m}`` regresses onto the teacher's (``L_sim``) and ranks the in-batch pairs as the
  teacher does (``L_resim``, a hinge with margin) — was SAMD's sentence-level Matryoshka term
  until finding 27 and is **off by default** (``lambda_sim=3, lambda_resim=1`` restores it):
  with EmbeddingGemma it added nothing measurable (without it +0.15 ± 0.05 avg ID on minilm-l6,
  +0.61 ± 0.15 on minilm-l3, findings 16, 21); it had stayed only because the span term alone
  fails with e5-small's small token states (66.60 vs 70.46, finding 15), and L_unif now does that
  job (70.29 avg ID, +1.0 OOD, finding 27). On test (minilm-l6, lr 1e-4, α = ½, seeds 0–2) the
  switch from L_rel to L_unif is worth +0.31 ± 0.07 avg ID and +0.46 ± 0.27 OOD.
* ``L_point`` — each student prefix regresses (cosine) onto the same-size prefix of a
  Matryoshka-trained teacher's embedding (the model table's ``matryoshka_dims``), or, for a
  teacher that is not Matryoshka or narrower than the student, through a **student-side** head
  ``P: D_s → D_t`` (``target="projection"``; Reimers & Gurevych 2020; EmbedDistill) — **off**
  (``lambda_point=0``): its pull onto the teacher's pointwise directions cost 4 points avg ID
  (74.31 vs 78.37–78.58; STS-B 74.8 vs 84.8; the first dev findings).

The teacher targets of L_point and L_rel are **centred** (``center``): the corpus mean of the
cached teacher embeddings (``TeacherInfo.pooled_mean``) is subtracted. EmbeddingGemma's
embeddings are anisotropic (mean pairwise cosine 0.46 over the bench corpus): regressing onto
the raw directions first pulls every student embedding towards that shared mean (the pointwise
baseline after 250 steps: every pair at cosine ≈ 0.99, STS-B −26 points on dev). A prefix of a
centred vector is centred, so one mean serves every prefix.

Other options (off by default; kept for the ablations): SimCSE's InfoNCE as a task term (``w_task
> 0``, a second student pass); L_unif summed over the student's prefixes (``unif_prefixes``:
``Σ_m w_m InfoNCE(s_{:m}, s_{:m})``: −0.03 ± 0.06 avg ID, −0.25 ± 0.05 OOD, +0.10 ± 0.03 @96,
finding 28); ``L_SAM``, the span-projected attention CKA of
the first SAMD design (``use_sam``; needs eager attention); L_span at every student prefix
(``span_prefixes``: a head ``Q_m: m → H_t`` on the first m dims of each token state, summed over
m; −1.30 dev avg ID, +0.07 @96 on minilm-l3, finding 17); L_span's targets mapped through a
linear teacher Dense head (``span_space="embedding"``: ``W·h_t``; −0.03 ± 0.01 avg ID, +0.42 ±
0.19 @96, finding 18); and the span head fit by ridge regression before the first step
(``head_init="lstsq"``, LP-FT: +0.23 ± 0.12 avg ID, +4.05 ± 0.15 OOD on minilm-l3 at α = 1;
+0.11 ± 0.07 / −0.95 ± 0.15 on minilm-l6 at α = ½, where WiSE-FT already keeps the features:
for runs with ``interpolate=1``; finding 19).

After training, SAMD's student keeps **half of its update**: ``θ = θ₀ + α·(θ₁ − θ₀)``, α = ½
(WiSE-FT, Wortsman et al. 2022; ``models.merge``, ``TrainConfig.interpolate``, SAMD's registry
default). The objective is unchanged; the interpolation is applied once, by the run's train stage.
Chosen on the dev protocol (finding 10; one training run scored at α = 0, ¼, ½, ¾, 1): avg ID
77.79 / 78.53 / **78.79** / 78.65 / 78.37 — the distillation's gains on Tweet, MRPC and WiC are
mostly kept while STS-B and SICK-R return to (or above) the undistilled student's. A student
that keeps a real gap to close (minilm-l3, findings 9 and 14) keeps the whole update
(``interpolate=1``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from samd_common.config import halving_dims
from samd_common.distributed import gather_across_ranks
from samd_common.losses.base import Logged, Objective, Outputs, require_eager_attention
from samd_common.losses.contrastive import info_nce, matryoshka_info_nce
from samd_common.losses.embed_distill import pointwise_loss, prefix_pointwise_loss, resolve_target
from samd_common.losses.matryoshka import check_matryoshka_dims
from samd_common.losses.mined import DISTANCES
from samd_common.losses.params import DistillParams
from samd_common.losses.relational import relational_loss
from samd_common.losses.span_terms import (
    ridge_fit,
    span_attention_cka_loss,
    span_group_hidden_loss,
    span_group_means,
)
from samd_common.models import SentenceEncoder

log = logging.getLogger(__name__)

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


@dataclass
class SAMDParams(DistillParams):
    """SAMD hyper-parameters; defaults from the dev study (module docstring).

    ``w_task`` (0: no SimCSE, one student pass) weighs SimCSE's two-pass InfoNCE, ``w_kd`` (½)
    the distillation terms, ``temperature`` is the InfoNCE τ of SimCSE and of ``L_unif``.
    """

    method = "SAMD"
    w_task: float = 0.0  # SimCSE off: L_unif does its job in one pass (dev finding 25)
    w_kd: float = 0.5  # with λ_span = λ_unif = 1: ½·L_span + ½·L_unif (CDM's ½ : ½ mix)
    target: str = "auto"  # L_point's target: auto | prefix (t_{:m}) | projection (P s → t)
    center: bool = True  # subtract the teacher's corpus-mean embedding from the targets
    min_dim: int = 32  # smallest student prefix of the halving series (384 → 384 … 48)
    dims: list[int] | None = None  # explicit student prefixes; None → halving_dims(D_s, min_dim)
    lambda_point: float = 0.0  # weight of L_point; off by default (module docstring: dev study)
    lambda_sim: float = 0.0  # weight of L_sim inside L_rel (off: findings 21, 25, 27; Jasper: 3)
    lambda_resim: float = 0.0  # weight of L_resim inside L_rel (off; Jasper: 1)
    margin: float = 0.015  # L_resim's margin (Jasper)
    max_pairs: int | None = 2048  # L_resim's cap on in-batch pairs (exact for B ≤ 64)
    lambda_span: float = 1.0  # weight of L_span (0 switches it off)
    lambda_unif: float = 1.0  # weight of L_unif, SimCSE's negatives in one pass (finding 25)
    unif_prefixes: bool = False  # L_unif at every student prefix m (Σ_m w_m, as L_rel)
    span_distance: str = "mse"  # L_span's distance: mse (CDM's; dev finding 13) | cosine
    span_norm: bool = False  # MSE span term ÷ σ̄²_t, the teacher states' variance (scale-free)
    span_prefixes: bool = False  # L_span at every student prefix m (a head Q_m: m → H_t each)
    span_space: str = "hidden"  # L_span's targets: hidden (token states) | embedding (W·h_t)
    head_init: str = "random"  # L_span's head Q: random | lstsq (ridge fit first, LP-FT)
    head_init_texts: int = 2048  # corpus texts the lstsq fit reads (evenly strided)
    use_sam: bool = False  # add the attention-CKA term L_SAM (needs eager attention)
    lambda_sam: float = 0.1  # its weight
    sam_every: int = 4  # L_SAM on every n-th step only (weight not rescaled)
    top_frac: float = 0.25  # L_SAM: share of real student tokens kept for CKA
    min_tokens: int = 2  # L_SAM: at least this many tokens; samples with fewer are skipped
    min_conf: float = 0.3  # L_SAM: samples with alignment coverage below this are skipped
    layers: int = 1  # L_SAM: align the last k student layers (teacher layers mapped uniformly)

    def rules(self) -> dict[str, bool]:
        """Known target, non-negative weights, sane counts and fractions."""
        weights = (
            self.lambda_point,
            self.lambda_sim,
            self.lambda_resim,
            self.lambda_span,
            self.lambda_unif,
        )
        return {
            **super().rules(),
            "target in ('auto', 'prefix', 'projection')": self.target
            in ("auto", "prefix", "projection"),
            f"span_distance in {DISTANCES}": self.span_distance in DISTANCES,
            "span_norm only with span_distance='mse'": not self.span_norm
            or self.span_distance == "mse",
            "span_space in ('hidden', 'embedding')": self.span_space in ("hidden", "embedding"),
            "head_init in ('random', 'lstsq')": self.head_init in ("random", "lstsq"),
            "head_init_texts ≥ 1": self.head_init_texts >= 1,
            "span_norm only with span_space='hidden'": not self.span_norm
            or self.span_space == "hidden",
            "lambda_point, lambda_sim, lambda_resim, lambda_span, lambda_unif, lambda_sam, "
            "margin ≥ 0": min(*weights, self.lambda_sam, self.margin) >= 0,
            "max_pairs ≥ 2 or None": self.max_pairs is None or self.max_pairs >= 2,
            "min_dim, sam_every, min_tokens, layers ≥ 1": min(
                self.min_dim, self.sam_every, self.min_tokens, self.layers
            )
            >= 1,
            "0 < top_frac ≤ 1 and 0 ≤ min_conf ≤ 1": (
                0 < self.top_frac <= 1 and 0 <= self.min_conf <= 1
            ),
        }

    def resolve_dims(self, width: int) -> list[int]:
        """The student prefixes for a student of ``width`` (descending)."""
        dims = list(self.dims) if self.dims else halving_dims(width, self.min_dim)
        if max(dims) > width:
            raise ValueError(f"SAMD dims {dims} exceed the student width {width}; drop them.")
        return sorted(dims, reverse=True)


class SAMDLoss(Objective):
    """SAMD objective around a student; owns its student-side heads (never saved with it).

    ``L = w_task·InfoNCE(s¹, s²) + w_kd·(λ_point·L_point + L_rel + λ_span·L_span + λ_unif·L_unif
    [+ λ_sam·L_SAM])``; by default ``½·L_span + ½·L_unif`` (module docstring). The student runs
    once per step unless ``w_task > 0``.

    Args:
        student: the encoder being trained (eager attention only for ``use_sam``).
        teacher_dim: D_t of the cached pooled teacher embedding ``t_pooled``.
        teacher_layers: L, cached teacher attention layers in ``t_attn`` (L_SAM only).
        params: ``SAMDParams``; default the design chosen on the dev protocol.
        teacher_hidden_dim: width of ``t_hidden`` (L_span's head maps H_s to it); None means
            ``teacher_dim``.
        teacher_matryoshka_dims: dims the teacher was Matryoshka-trained at (model table); they
            decide ``target="auto"`` (prefix when the student fits inside them).
        teacher_mean: (D_t,) corpus mean of the cached teacher embeddings
            (``TeacherInfo.pooled_mean``) for ``center``; empty: the (global) batch's mean.
        teacher_hidden_var: σ̄²_t, the cached teacher token states' per-dimension variance
            averaged over dimensions (``TeacherInfo.hidden_var``) for ``span_norm``; 0: the
            batch's grouped teacher tokens'.
        teacher_head: (D_t, H_t) the teacher's linear Dense head (``TeacherInfo.head``) for
            ``span_space="embedding"``.

    The batch (``DistillDataset.collate`` on the teacher cache) holds ``input_ids`` /
    ``attention_mask`` (B, T_s) and ``t_pooled`` (B, D_t); for L_span ``t_hidden``
    (B, T_t, H_t), ``s_group`` (B, T_s), ``t_group`` (B, T_t); for L_SAM ``s_real``,
    ``t_real``, ``t_attn`` (B, L, T_t, T_t), ``overlap``. Logs: ``loss``, ``span``, ``unif`` by
    default, and ``point``, ``sim``, ``resim``, ``task``, ``sam`` when those are on.

    References:
        Reimers & Gurevych, EMNLP 2020, https://arxiv.org/abs/2004.09813; Zhang et al.,
        "Jasper and Stella", 2024, https://arxiv.org/abs/2412.19048; Kusupati et al.,
        "Matryoshka Representation Learning", NeurIPS 2022, https://arxiv.org/abs/2205.13147;
        Gao et al., "SimCSE", EMNLP 2021, https://arxiv.org/abs/2104.08821 and Wang & Isola,
        ICML 2020, https://arxiv.org/abs/2005.10242 (L_unif); SAMD (this project) for the span
        groups.

    Example:
        >>> objective = SAMDLoss(student, 768, teacher_matryoshka_dims=(768, 512, 256, 128))
        >>> objective.target, objective.dims  # a MiniLM student (width 384)
        ('prefix', [384, 192, 96, 48])
        >>> loss, logs = objective(batch, step=0, total_steps=100)  # batch: the collator's
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
        teacher_matryoshka_dims: Sequence[int] = (),
        teacher_mean: Sequence[float] = (),
        teacher_hidden_var: float = 0.0,
        teacher_head: torch.Tensor | None = None,
    ) -> None:
        super().__init__(student, params or SAMDParams())
        p, d_s, cfg = self.params, student.dim, student.backbone.config
        self.teacher_dim, self.teacher_layers = teacher_dim, teacher_layers
        if teacher_hidden_var < 0:
            raise ValueError(f"teacher_hidden_var is a variance (≥ 0); got {teacher_hidden_var}.")
        self.teacher_hidden_var = float(teacher_hidden_var)
        self.dims = p.resolve_dims(d_s)
        self.weights = check_matryoshka_dims(self.dims, [d_s])
        self.target = resolve_target(p.target, d_s, teacher_dim, tuple(teacher_matryoshka_dims))
        if p.lambda_point > 0 and self.target == "prefix":
            check_matryoshka_dims(self.dims, [d_s, teacher_dim])
        if p.use_sam:
            require_eager_attention(student, "SAMD's L_SAM", "use_sam=False")
            if teacher_layers < 1 or p.layers > cfg.num_hidden_layers:
                raise ValueError(
                    f"L_SAM needs teacher_layers ≥ 1 and layers ≤ the student's "
                    f"{cfg.num_hidden_layers}; got teacher_layers={teacher_layers}, "
                    f"layers={p.layers}."
                )
        # Last k student layers ↔ cached teacher layers, spread uniformly, last ↔ last.
        n_s, k = cfg.num_hidden_layers, p.layers
        self.layer_pairs = [(n_s - k + i, -(-(i + 1) * teacher_layers // k) - 1) for i in range(k)]
        device, point = student.device, p.lambda_point > 0
        mean = torch.tensor(list(teacher_mean), dtype=torch.float32, device=device)
        if mean.numel() not in (0, teacher_dim):
            raise ValueError(f"teacher_mean has {mean.numel()} values; expected D_t={teacher_dim}.")
        self.register_buffer("teacher_mean", mean, persistent=False)  # (D_t,) or (0,)
        self.proj = (
            nn.Linear(d_s, teacher_dim, device=device)
            if point and self.target == "projection"
            else None
        )
        span_map = self.embedding_map(teacher_head, teacher_hidden_dim or teacher_dim)
        self.register_buffer("span_map", span_map, persistent=False)  # (D_t, H_t) or (0, 0)
        h_t = span_map.shape[0] if span_map.numel() else teacher_hidden_dim or teacher_dim
        span_widths = self.span_widths(cfg.hidden_size)
        self.span_heads = nn.ModuleList(nn.Linear(m, h_t, device=device) for m in span_widths)

    def embedding_map(self, head: torch.Tensor | None, hidden_dim: int) -> torch.Tensor:
        """``span_space="embedding"``: W ÷ its rms singular value (D_t, H_t); else (0, 0).

        W is the teacher's linear Dense head: the pooled embedding is ``W·mean_i h_i``, so the
        mapped states ``W·h_i`` are what the embedding is made of. Dividing by the rms singular
        value keeps the targets on the states' own scale (λ_span keeps its meaning).
        """
        if self.params.span_space != "embedding" or self.params.lambda_span == 0:
            return torch.zeros(0, 0, device=self.student.device)
        if head is None:
            raise ValueError(
                "span_space='embedding' needs the teacher's linear Dense head (TeacherInfo.head, "
                "models.io.linear_head); this teacher has none: use span_space='hidden'."
            )
        head = torch.as_tensor(head, dtype=torch.float32, device=self.student.device)
        if head.dim() != 2 or head.shape[1] != hidden_dim:
            raise ValueError(f"teacher_head must be (D_t, {hidden_dim}); got {tuple(head.shape)}.")
        rms = head.square().sum().div(min(head.shape)).sqrt()
        return head / rms

    @property
    def span_head(self) -> nn.Linear | None:
        """Q, L_span's head on the full token state (the first of ``span_heads``)."""
        return self.span_heads[0] if len(self.span_heads) else None

    def span_widths(self, hidden: int) -> list[int]:
        """The student token-state widths L_span reads: none, the full H_s, or every prefix."""
        p = self.params
        if p.lambda_span == 0:
            return []
        if not p.span_prefixes:
            return [hidden]
        if hidden != self.student.dim:
            raise ValueError(
                f"span_prefixes needs token states as wide as the embedding ({self.student.dim}),"
                f" got {hidden}; set span_prefixes=False."
            )
        return self.dims

    @property
    def uses_task(self) -> bool:
        """SimCSE (and its second pass) only with ``w_task > 0``."""
        return self.params.w_task > 0

    def sam_due(self, step: int) -> bool:
        """Whether L_SAM is computed at ``step``."""
        return self.params.use_sam and step % self.params.sam_every == 0

    def required_keys(self, step: int, total_steps: int) -> tuple[str, ...]:
        """The pooled keys, the span keys with L_span, the L_SAM keys on its steps."""
        span = SPAN_KEYS if self.params.lambda_span > 0 else ()
        return BATCH_KEYS + span + (SAM_KEYS if self.sam_due(step) else ())

    def pass_options(self, step: int, total_steps: int) -> tuple[dict, dict]:
        """Attention maps from the first pass on L_SAM steps."""
        return {"output_attentions": True} if self.sam_due(step) else {}, {}

    def targets(self, t: torch.Tensor) -> torch.Tensor:
        """(B, D_t) teacher embeddings → the targets: ``t − μ_t`` with ``center``, else ``t``."""
        t = t.float()
        if not self.params.center:
            return t
        if self.teacher_mean.numel():
            return t - self.teacher_mean
        return t - gather_across_ranks(t).mean(0)  # the global batch's mean (exact under DDP)

    def point_loss(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """L_point from (B, D_s) student and (B, D_t) teacher embeddings."""
        if self.proj is None:
            return prefix_pointwise_loss(s, t, self.dims, self.weights)
        return pointwise_loss(self.proj(s.to(self.proj.weight.dtype)), t)

    def span_targets(self, t_hidden: torch.Tensor) -> torch.Tensor:
        """(B, T_t, H_t) cached teacher states → L_span's targets (mapped by W, if set)."""
        if self.span_map.numel():  # (B, T_t, H_t) → (B, T_t, D_t), the embedding's space
            return t_hidden.float() @ self.span_map.T
        return t_hidden

    def warm_start(self, dataset, collate_fn) -> None:
        """``head_init="lstsq"``: fit every span head by ridge regression before training.

        LP-FT (Kumar et al., ICLR 2022, https://arxiv.org/abs/2202.10054): while a randomly
        initialised head is learnt, its gradient distorts the pretrained features; a head fit
        first on the frozen model (here: the undistilled student's span-group means against the
        teacher's, over ``head_init_texts`` evenly strided corpus texts — a corpus file is often
        ordered by source, so its first texts would be one task's) starts the student's updates
        from the directions it already represents.
        """
        p = self.params
        if p.head_init != "lstsq" or not len(self.span_heads):
            return
        keys, n = ("input_ids", "attention_mask", "t_hidden", "s_group", "t_group"), 64
        xs, ys, training = [], [], self.student.training
        self.student.eval()
        with torch.no_grad():
            chosen = range(0, len(dataset), max(1, len(dataset) // p.head_init_texts))
            chosen = chosen[: p.head_init_texts]  # no random state used
            for start in range(0, len(chosen), n):
                items = collate_fn([dataset[i] for i in chosen[start : start + n]])
                b = {k: torch.as_tensor(items[k]).to(self.student.device) for k in keys}
                h_s = self.student(b["input_ids"], b["attention_mask"])["token_embeddings"]
                means = span_group_means(
                    h_s, self.span_targets(b["t_hidden"]), *(b["s_group"], b["t_group"])
                )
                xs.append(means[0][means[2]])
                ys.append(means[1][means[2]])
        self.student.train(training)
        x, y = torch.cat(xs), torch.cat(ys)  # (N, H_s), (N, H_t): the span groups' means
        for q in self.span_heads:
            weight, bias = ridge_fit(x[:, : q.in_features], y)
            q.weight.data.copy_(weight.to(q.weight.dtype))
            q.bias.data.copy_(bias.to(q.bias.dtype))
        log.info("span heads fit by ridge regression on %d span groups", len(x))

    def span_loss(self, out: Outputs, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """L_span; with ``span_norm`` divided by σ̄²_t (the share of the variance left)."""
        p, t_hidden, t_group = self.params, batch["t_hidden"], batch["t_group"]
        t_hidden = self.span_targets(t_hidden)
        h_s, groups = out["token_embeddings"], (batch["s_group"], t_group)
        weights = self.weights if p.span_prefixes else [1.0]
        terms = [  # Q_m on the first m dims of each token state (m = H_s without span_prefixes)
            w
            * span_group_hidden_loss(
                h_s[..., : q.in_features], t_hidden, *groups, q, p.span_distance
            )
            for w, q in zip(weights, self.span_heads, strict=True)
        ]
        loss = torch.stack(terms).sum()
        if not p.span_norm:
            return loss
        var = self.teacher_hidden_var
        if not var:  # (N, H_t) grouped teacher tokens of the batch → their mean variance
            var = t_hidden[t_group >= 0].float().var(0).mean().clamp_min(1e-12).detach()
        return loss / var

    def sam_loss(self, attentions: tuple[torch.Tensor, ...], batch: dict) -> torch.Tensor:
        """L_SAM averaged over the layer pairs, from the student's per-layer (B, H, T_s, T_s)."""
        t_attn = batch["t_attn"]  # (B, L, T_t, T_t)
        if t_attn.dim() != 4 or t_attn.shape[1] != self.teacher_layers:
            raise ValueError(
                f"t_attn must be (B, {self.teacher_layers}, T_t, T_t) (teacher_layers given at "
                f"construction), got {tuple(t_attn.shape)}."
            )
        p, b = self.params, batch
        terms = [
            span_attention_cka_loss(
                attentions[i_s].mean(1),  # (B, T_s, T_s) head average
                t_attn[:, i_t],  # (B, T_t, T_t)
                *(b["overlap"], b["s_real"], b["t_real"]),
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
        """``λ_point·L_point + L_rel + λ_span·L_span + λ_unif·L_unif [+ λ_sam·L_SAM]``, logged."""
        p, s, t = self.params, out["sentence_embedding"], batch["t_pooled"]  # (B, D_s), (B, D_t)
        if t.shape[-1] != self.teacher_dim:
            raise ValueError(
                f"t_pooled has width {t.shape[-1]} but teacher_dim is {self.teacher_dim}; build "
                f"the objective from this cache's TeacherInfo."
            )
        t = self.targets(t)  # (B, D_t) fp32, centred with ``center``
        terms: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=s.device)
        if p.lambda_point > 0:
            terms["point"] = self.point_loss(s, t)
            total = total + p.lambda_point * terms["point"]
        if p.lambda_sim > 0 or p.lambda_resim > 0:  # over the global batch under DDP
            rel, parts = relational_loss(
                gather_across_ranks(s),
                gather_across_ranks(t),
                *(self.dims, self.weights, p.lambda_sim, p.lambda_resim, p.margin, p.max_pairs),
            )
            terms.update(parts)
            total = total + rel
        if p.lambda_span > 0:
            terms["span"] = self.span_loss(out, batch)
            total = total + p.lambda_span * terms["span"]
        if p.lambda_unif > 0:  # SimCSE's InfoNCE with the first pass as its own positive
            terms["unif"] = (
                matryoshka_info_nce(s, s, self.dims, self.weights, p.temperature)
                if p.unif_prefixes
                else info_nce(s, s, p.temperature)
            )
            total = total + p.lambda_unif * terms["unif"]
        if self.sam_due(step):
            terms["sam"] = self.sam_loss(out["attentions"], batch)
            total = total + p.lambda_sam * terms["sam"]
        return total, dict(terms)
