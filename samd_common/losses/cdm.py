"""CDM — Contextual Dynamic Mapping (Chen et al., Findings of ACL 2025).

Paper: "Enhancing Cross-Tokenizer Knowledge Distillation with Contextual Dynamical Mapping",
https://arxiv.org/abs/2502.11104

CDM aligns the two token sequences with a dynamic-time-warping path whose cost is the
normalised edit distance of the token strings weighted by each token's contextual uncertainty
(the entropy of its prediction in the paper), so that confident tokens anchor the alignment and
uncertain ones may warp. For encoders there are no next-token distributions; following DESIGN.md
§6.4 each token's weight is the normalised entropy of its head-averaged attention row on the
last layer, ``H(Att[j, :]) / log n``. Many-to-one runs of the path (a student token against
several teacher tokens, or the reverse, joined by horizontal/vertical moves) are merged into one
step by mean pooling both sides, and the projected student states are regressed onto the
teacher's per merged step; SimCSE keeps the embedding space contrastive.

``cost[j, i] = ned(s_j, t_i)·w_s[j]·w_t[i]``; ``L = w_task·InfoNCE + w_kd·mean_steps d(P·H̄_s, H̄_t)``

Where the weights come from: the teacher's from its cached last-layer attention, the student's
from its *live* attention of the current step (the first dropout pass), so the path follows the
student as it trains. The string costs ``ned`` are computed once per text by the dataset
(``maps=("ned",)``); only the weighting and the DTW run in the step, as one batched numpy DP
(``alignment.batch_dtw_groups``) on a (B, T_s, T_t) cost copied to the host (about 3 ms for
B = 32 texts of 40 tokens on one CPU core). The path is discrete, so no gradient flows through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samd_common.alignment import batch_dtw_groups
from samd_common.distributed import masked_mean_across_ranks
from samd_common.losses.base import Logged, Objective, Outputs, require_eager_attention
from samd_common.losses.mined import DISTANCES, token_distance
from samd_common.losses.params import DistillParams
from samd_common.losses.similarity import grouped_sums
from samd_common.models import SentenceEncoder

CITATION = """@inproceedings{chen-etal-2025-enhancing-cross,
  title     = {Enhancing Cross-Tokenizer Knowledge Distillation with Contextual Dynamical
               Mapping},
  author    = {Chen, Yijie and Liu, Yijin and Meng, Fandong and Chen, Yufeng and Xu, Jinan and
               Zhou, Jie},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2025},
  pages     = {8005--8018},
  year      = {2025},
  doi       = {10.18653/v1/2025.findings-acl.419},
  note      = {arXiv:2502.11104}
}"""


def attention_entropy_weights(att: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Normalised entropy of every attention row, CDM's contextual weight for encoders.

    ``w[j] = −Σ_k Att[j, k]·log Att[j, k] / log n``, ``n`` = number of non-padding keys; in
    [0, 1] (1 = uniform attention, 0 = all on one key). Computed in fp32, without gradient.

    Args:
        att: (B, T, T) head-averaged attention of one layer (rows sum to 1 over the keys).
        key_mask: (B, T) bool/0-1, non-padding positions.

    Returns:
        (B, T) fp32 weights; 0 at padding rows and for texts with a single key.
    """
    if att.dim() != 3 or att.shape[:2] != key_mask.shape or att.shape[1] != att.shape[2]:
        raise ValueError(
            f"att must be (B, T, T) and key_mask (B, T), got {tuple(att.shape)} and "
            f"{tuple(key_mask.shape)}; head-average the attention first (att.mean(1))."
        )
    with torch.no_grad(), torch.autocast(device_type=att.device.type, enabled=False):
        keys = key_mask.bool()
        p = att.float() * keys[:, None, :]  # (B, T, T)
        h = -(p * p.clamp_min(1e-12).log()).sum(-1)  # (B, T)
        n = keys.sum(-1, keepdim=True).float()  # (B, 1)
        w = h / n.clamp_min(2).log()
        return torch.where(keys & (n > 1), w.clamp(0, 1), torch.zeros_like(w))


def contextual_dtw_groups(
    ned: torch.Tensor,
    s_lexical: torch.Tensor,
    t_lexical: torch.Tensor,
    w_s: torch.Tensor | None = None,
    w_t: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CDM's alignment: DTW over ``ned·w_s·w_t``, cut into merged steps (no gradient).

    Args:
        ned: (B, T_s, T_t) normalised edit distances of the token strings.
        s_lexical: (B, T_s) bool, student tokens that take part (real, non-empty string).
        t_lexical: (B, T_t) bool, teacher tokens that take part.
        w_s: (B, T_s) student contextual weights; None = 1 (plain edit-distance DTW).
        w_t: (B, T_t) teacher contextual weights; None = 1.

    Returns:
        ``(s_group, t_group)``: (B, T_s), (B, T_t) long merged-step ids on ``ned``'s device,
        0..G_b−1 in path order, −1 for tokens that take no part.
    """
    with torch.no_grad():
        cost = ned.float()
        if w_s is not None:
            cost = cost * w_s.float()[:, :, None]
        if w_t is not None:
            cost = cost * w_t.float()[:, None, :]
        s_gid, t_gid = batch_dtw_groups(
            cost.cpu().numpy(), s_lexical.bool().cpu().numpy(), t_lexical.bool().cpu().numpy()
        )  # one host copy of (B, T_s, T_t)
    return torch.from_numpy(s_gid).to(ned.device), torch.from_numpy(t_gid).to(ned.device)


def merged_step_loss(
    h_s_proj: torch.Tensor,
    h_t: torch.Tensor,
    s_group: torch.Tensor,
    t_group: torch.Tensor,
    distance: str = "mse",
) -> torch.Tensor:
    """Distance between the mean-pooled student and teacher states of every merged step.

    ``L = mean_{(b, g)} d(mean_{j∈g} P·H_s[b, j], mean_{i∈g} H_t[b, i])`` over the steps of the
    whole (global, under DDP) batch; a step needs tokens on both sides.

    Args:
        h_s_proj: (B, T_s, D_t) projected student token states.
        h_t: (B, T_t, D_t) teacher token states.
        s_group: (B, T_s) long step id of each student token, −1 for none.
        t_group: (B, T_t) long step id of each teacher token, −1 for none.
        distance: ``"mse"`` (default) or ``"cosine"``.

    Returns:
        0-d fp32 tensor; exactly 0, attached to ``h_s_proj``, when there is no step.

    References:
        Chen et al., "Enhancing Cross-Tokenizer Knowledge Distillation with Contextual
        Dynamical Mapping", Findings of ACL 2025, https://arxiv.org/abs/2502.11104
    """
    (b, t_s, d), t_t = h_s_proj.shape, h_t.shape[1]
    if h_t.shape != (b, t_t, d) or s_group.shape != (b, t_s) or t_group.shape != (b, t_t):
        raise ValueError(
            f"Expected h_s_proj (B, T_s, D), h_t (B, T_t, D), s_group (B, T_s), t_group "
            f"(B, T_t); got {tuple(h_s_proj.shape)}, {tuple(h_t.shape)}, "
            f"{tuple(s_group.shape)}, {tuple(t_group.shape)}. Project the student first."
        )
    with torch.autocast(device_type=h_s_proj.device.type, enabled=False):
        sum_s, count_s, sum_t, count_t = grouped_sums(h_s_proj, s_group, h_t, t_group)
        mean_s = sum_s / count_s[:, None].clamp_min(1)  # (B·G, D)
        mean_t = sum_t / count_t[:, None].clamp_min(1)
        both = (count_s > 0) & (count_t > 0)  # (B·G,)
        return masked_mean_across_ranks(token_distance(mean_s, mean_t, distance), both)


@dataclass
class CDMParams(DistillParams):
    """CDM hyper-parameters (``w_task``, ``w_kd``, ``temperature`` from ``DistillParams``)."""

    method = "CDM"
    distance: str = "mse"  # "mse" as MinED (the two then differ only in the map) or "cosine"
    contextual: bool = True  # weight the DTW cost by attention entropy (False: plain ned DTW)

    def rules(self) -> dict[str, bool]:
        """The shared weight rules and a known distance."""
        return {**super().rules(), f"distance in {DISTANCES}": self.distance in DISTANCES}


class CDMLoss(Objective):
    """CDM objective around a student; owns the trainable projection ``P: D_s → D_t``.

    ``L = w_task·InfoNCE(s1, s2) + w_kd·mean_steps d(mean_g P·H_s, mean_g H_t)`` over the merged
    steps of the contextual DTW path. With ``contextual=True`` (default) the student must return
    attention maps (eager attention).

    Args:
        student: the encoder being trained.
        teacher_hidden_dim: D_t, width of the cached teacher token states ``t_hidden``.
        params: ``CDMParams``; default contextual weights, MSE.

    The batch (``DistillDataset(..., maps=("ned",)).collate``) holds ``input_ids`` /
    ``attention_mask`` (B, T_s), ``t_hidden`` (B, T_t, D_t), ``t_mask`` (B, T_t), ``t_attn``
    (B, L, T_t, T_t), ``ned`` (B, T_s, T_t), ``s_lexical`` (B, T_s) and ``t_lexical`` (B, T_t).
    Logs: ``loss``, ``task``, ``kd`` and ``steps`` (mean merged steps per text).

    References:
        Chen et al., "Enhancing Cross-Tokenizer Knowledge Distillation with Contextual
        Dynamical Mapping", Findings of ACL 2025, https://arxiv.org/abs/2502.11104

    Example:
        >>> objective = CDMLoss(student, teacher_hidden_dim=768)  # student: eager SentenceEncoder
        >>> loss, logs = objective(batch, step=0, total_steps=100)  # batch: as above
        >>> loss.backward()  # the DTW path is discrete: the gradient flows through P·H_s
    """

    name = "CDM"
    batch_keys = ("input_ids", "attention_mask", "t_hidden", "t_mask", "t_attn", "ned")
    batch_keys += ("s_lexical", "t_lexical")
    batch_hint = "build the dataset with DistillDataset(..., maps=('ned',))."

    def __init__(
        self,
        student: SentenceEncoder,
        teacher_hidden_dim: int,
        params: CDMParams | None = None,
    ) -> None:
        super().__init__(student, params or CDMParams())
        if self.params.contextual:
            require_eager_attention(student, "CDM", "params={'contextual': False}")
        hidden = student.backbone.config.hidden_size
        self.proj = nn.Linear(hidden, teacher_hidden_dim, device=student.device)  # P

    def pass_options(self, step: int, total_steps: int) -> tuple[dict, dict]:
        """Contextual weights read the first pass's last-layer attention."""
        return {"output_attentions": True} if self.params.contextual else {}, {}

    def kd_terms(
        self, out: Outputs, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, Logged]:
        """Merged-step regression on the contextual DTW path; logs it and mean steps per text."""
        w_s = w_t = None
        if self.params.contextual:
            att_s = out["attentions"][-1].mean(1)  # (B, T_s, T_s) head average, last layer
            w_s = attention_entropy_weights(att_s, batch["attention_mask"])
            w_t = attention_entropy_weights(batch["t_attn"][:, -1], batch["t_mask"])  # (B, T_t)
        s_group, t_group = contextual_dtw_groups(
            batch["ned"], batch["s_lexical"], batch["t_lexical"], w_s, w_t
        )
        h_s = self.proj(out["token_embeddings"])  # (B, T_s, D_t)
        kd = merged_step_loss(h_s, batch["t_hidden"], s_group, t_group, self.params.distance)
        steps = (s_group.max(1).values + 1).float().mean()
        return kd, {"kd": kd, "steps": steps}
