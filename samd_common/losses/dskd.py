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

The stateless tensor functions (σ, cross-model attention, the two representation losses,
the orthogonality penalty) are in :mod:`samd_common.losses.dskd_functional`; this module
holds the hyper-parameters, the projectors and the training loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samd_common.losses.base import Logged, Objective, Outputs
from samd_common.losses.dskd_functional import (
    DISTANCES,
    cross_model_attention,
    dual_space_losses,
    orthogonality_penalty,
    sample_std,
)
from samd_common.losses.params import DistillParams
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
PROJ_LR = 1e-3  # learning rate of the projectors in the DSKD scripts (TrainConfig.proj_lr)


@dataclass
class DSKDParams(DistillParams):
    """DSKD hyper-parameters (encoder adaptation); the projectors' lr is ``TrainConfig.proj_lr``.

    ``w_task`` (0.5), ``w_kd`` (0.5) and the InfoNCE ``temperature`` come from ``DistillParams``.
    """

    method = "DSKD"
    distance: str = "cosine"  # token distance in both spaces: "cosine" or "mse" (on H/σ)
    w_t2s: float = 1.0  # weight of the student-space term (teacher states → student tokens)
    w_s2t: float = 1.0  # weight of the teacher-space term (student states → teacher tokens)
    # Weight of the projectors' soft-orthogonality (anti-collapse) term. Not in DSKD (its LM
    # heads anchor the projectors); 1.0 keeps every singular value within ≈10 % of 1 on tiny
    # models at 10× the default proj_lr, while 0.1 let single directions of W_t2s fade.
    w_orth: float = 1.0
    specials: bool = False  # also attend over special tokens ([CLS], <s>, …); padding never
    detach_query: bool = True  # queries from detached student embeddings, as in DSKD

    def rules(self) -> dict[str, bool]:
        """The shared weight rules, term weights ≥ 0 and a known distance."""
        return {
            **super().rules(),
            "w_t2s, w_s2t, w_orth ≥ 0": all(w >= 0 for w in (self.w_t2s, self.w_s2t, self.w_orth)),
            f"distance in {DISTANCES}": self.distance in DISTANCES,
        }


class DSKDLoss(Objective):
    """DSKD objective around a student; owns the projectors W_q, W_t2s and W_s2t.

    ``L = w_task·InfoNCE(s1, s2) + w_kd·(w_t2s·L_t2s + w_s2t·L_s2t + w_orth·L_orth)`` (module
    docstring). The training loop gives every parameter outside ``.student`` the
    ``TrainConfig.proj_lr`` learning rate: ``PROJ_LR`` (1e-3, the DSKD scripts' value) for DSKD
    runs (the registry entry's training defaults).

    Args:
        student: the encoder being trained.
        teacher_hidden_dim: D_t, width of the cached teacher token states ``t_hidden``.
        teacher_embed_dim: width of the cached teacher input embeddings ``t_embed``; None means
            D_t (true for BERT, XLM-R, E5, MiniLM; not for factorised embeddings such as
            ALBERT's).
        params: ``DSKDParams``; default cosine distance, ``w_orth = 1``.

    The batch (``DistillDataset.collate`` on the teacher cache) holds ``input_ids`` /
    ``attention_mask`` (B, T_s), ``t_hidden`` (B, T_t, D_t), ``t_embed`` (B, T_t, D_e) and
    ``s_real`` (B, T_s) / ``t_real`` (B, T_t) (with ``specials=True``: ``t_mask`` (B, T_t)).
    Logs: ``loss``, ``task``, ``t2s``, ``s2t``, ``orth``.

    References:
        Zhang et al., "Dual-Space Knowledge Distillation for Large Language Models", EMNLP
        2024, https://arxiv.org/abs/2406.17328

    Example:
        >>> objective = DSKDLoss(student, teacher_hidden_dim=768)  # student: a SentenceEncoder
        >>> loss, logs = objective(batch, step=0, total_steps=100)  # batch: as above
        >>> loss.backward()  # reaches the student, W_q, W_t2s and W_s2t
    """

    name = "DSKD"
    batch_keys = BATCH_KEYS

    def __init__(
        self,
        student: SentenceEncoder,
        teacher_hidden_dim: int,
        teacher_embed_dim: int | None = None,
        params: DSKDParams | None = None,
    ) -> None:
        super().__init__(student, params or DSKDParams())
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

    def required_keys(self, step: int, total_steps: int) -> tuple[str, ...]:
        """The teacher states and embeddings, and the token masks attention runs over."""
        return BATCH_KEYS + (("t_mask",) if self.params.specials else ("s_real", "t_real"))

    def check_batch(self, batch: dict[str, torch.Tensor], step: int, total_steps: int) -> None:
        """The keys, and ``t_embed`` of the width W_q was built for."""
        super().check_batch(batch, step, total_steps)
        width = batch["t_embed"].shape[-1]
        if width != self.query.out_features:
            raise ValueError(
                f"t_embed has width {width} but W_q was built for {self.query.out_features}; "
                f"pass teacher_embed_dim={width}."
            )

    def valid_tokens(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s_valid, t_valid)``: (B, T_s), (B, T_t) bool tokens the cross-model attention uses."""
        if self.params.specials:
            return batch["attention_mask"].bool(), batch["t_mask"].bool()
        return batch["s_real"].bool(), batch["t_real"].bool()  # real tokens; no padding either

    def kd_terms(
        self, out: Outputs, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, Logged]:
        """``w_t2s·L_t2s + w_s2t·L_s2t + w_orth·L_orth``; logs the three terms."""
        p, (s_valid, t_valid) = self.params, self.valid_tokens(batch)
        t_embed, t_hidden = batch["t_embed"], batch["t_hidden"]
        h_s = out["token_embeddings"]  # (B, T_s, D_s)
        e_s = self.student.backbone.get_input_embeddings()(batch["input_ids"])  # (B, T_s, D_se)
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
        loss_t2s, loss_s2t = dual_space_losses(
            h_s_scaled, h_t, values_t, values_s, t2s, s2t, p.distance
        )
        orth = torch.stack([orthogonality_penalty(proj.weight) for proj in self.projectors()])
        orth = orth.mean()
        kd = p.w_t2s * loss_t2s + p.w_s2t * loss_s2t + p.w_orth * orth
        return kd, {"t2s": loss_t2s, "s2t": loss_s2t, "orth": orth}
