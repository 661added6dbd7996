"""MinED — minimum-edit-distance token mapping (Wan et al., FuseLLM, ICLR 2024).

Paper: "Knowledge Fusion of Large Language Models", https://arxiv.org/abs/2401.10491

FuseLLM fuses language models with different tokenizers by aligning their tokens with the MinED
map: a dynamic-time-warping path over the two token-string sequences with edit-distance cost,
of which only the one-to-one pairs whose (normalised) strings are equal are kept. As a
cross-tokenizer distillation baseline for encoders (DESIGN.md §6.2) the map pairs student and
teacher tokens of the last layer, and the student's projected token states regress onto the
teacher's over those pairs; SimCSE keeps the embedding space contrastive. The map is computed
once per text by the dataset (``DistillDataset(..., maps=("mined",))``, key ``mined_pairs``) from
the tokens' surface strings (``alignment.surface_strings``), never inside the training step.

``L = w_task·InfoNCE(s1, s2) + w_kd·mean_{(j,i) ∈ MinED} ‖P·H_s[j] − H_t[i]‖² / D_t``

This module also holds the skeleton the token-level baselines share (:class:`TokenDistillLoss`:
two dropout passes, SimCSE, ``w_task``/``w_kd`` mix, one host sync for the logs) and the
per-pair distance (:func:`token_distance`); ``cdm.py`` and ``emo.py`` build on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samd_common.distributed import masked_mean_across_ranks
from samd_common.losses.common import info_nce, params_from_dict
from samd_common.models import SentenceEncoder

CITATION = """@inproceedings{wan2024knowledge,
  title     = {Knowledge Fusion of Large Language Models},
  author    = {Wan, Fanqi and Huang, Xinting and Cai, Deng and Quan, Xiaojun and Bi, Wei and
               Shi, Shuming},
  booktitle = {The Twelfth International Conference on Learning Representations (ICLR)},
  year      = {2024},
  url       = {https://arxiv.org/abs/2401.10491}
}"""

DISTANCES = ("mse", "cosine")


def token_distance(a: torch.Tensor, b: torch.Tensor, distance: str = "mse") -> torch.Tensor:
    """Distance between matched token states, in fp32 whatever the autocast dtype.

    ``mse``: ``mean_d (a − b)²``; ``cosine``: ``1 − cos(a, b)``.

    Args:
        a: (..., D) states (e.g. projected student states of matched tokens).
        b: (..., D) states of the same shape (e.g. teacher states).
        distance: ``"mse"`` or ``"cosine"``.

    Returns:
        (...) fp32 distances.
    """
    if a.shape != b.shape:
        raise ValueError(
            f"token_distance needs equal shapes, got {tuple(a.shape)}, {tuple(b.shape)}."
        )
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}.")
    with torch.autocast(device_type=a.device.type, enabled=False):
        a, b = a.float(), b.float()
        if distance == "mse":
            return (a - b).pow(2).mean(-1)
        return 1 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def gather_tokens(h: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Token states at per-sample positions: (B, T, D), (B, P) long ≥ 0 → (B, P, D)."""
    return h.gather(1, index[..., None].expand(-1, -1, h.shape[-1]))  # (B, P, D)


def mined_hidden_loss(
    h_s_proj: torch.Tensor, h_t: torch.Tensor, pairs: torch.Tensor, distance: str = "mse"
) -> torch.Tensor:
    """MinED distillation: distance between mapped student and teacher token states.

    ``L = mean_{(b, j, i) ∈ pairs} d(P·H_s[b, j], H_t[b, i])`` over the pairs of the whole
    (global, under DDP) batch.

    Args:
        h_s_proj: (B, T_s, D_t) student token states projected to the teacher width.
        h_t: (B, T_t, D_t) teacher token states.
        pairs: (B, P, 2) long ``(student, teacher)`` positions; rows with −1 are padding.
        distance: ``"mse"`` (FuseLLM-style regression, default) or ``"cosine"``.

    Returns:
        0-d fp32 tensor; exactly 0, still attached to ``h_s_proj``, when there is no pair.

    References:
        Wan et al., "Knowledge Fusion of Large Language Models", ICLR 2024,
        https://arxiv.org/abs/2401.10491

    Example:
        >>> pairs = torch.tensor([[[0, 1], [2, 0]]])
        >>> mined_hidden_loss(torch.randn(1, 3, 8), torch.randn(1, 2, 8), pairs).shape
        torch.Size([])
    """
    (b, _, d), t_t = h_s_proj.shape, h_t.shape[1]
    if h_t.shape != (b, t_t, d) or pairs.dim() != 3 or pairs.shape[::2] != (b, 2):
        raise ValueError(
            f"Expected h_s_proj (B, T_s, D_t), h_t (B, T_t, D_t), pairs (B, P, 2); got "
            f"{tuple(h_s_proj.shape)}, {tuple(h_t.shape)}, {tuple(pairs.shape)}. Project the "
            f"student states to the teacher width first."
        )
    valid = pairs[..., 0] >= 0  # (B, P)
    h_s = gather_tokens(h_s_proj, pairs[..., 0].clamp_min(0))  # (B, P, D_t)
    h_tt = gather_tokens(h_t, pairs[..., 1].clamp_min(0))  # (B, P, D_t)
    return masked_mean_across_ranks(token_distance(h_s, h_tt, distance), valid)


def require_eager_attention(student: SentenceEncoder, method: str, switch: str = "") -> None:
    """Raise a clear error when the student does not return attention maps (non-eager)."""
    impl = getattr(student.backbone.config, "_attn_implementation", "eager")
    if impl != "eager":
        hint = f" or set {switch}" if switch else ""
        raise ValueError(
            f"{method} needs the student's attention maps, but it uses {impl!r} attention: load "
            f"it with load_encoder(..., attn_implementation='eager'){hint}."
        )


@dataclass
class TokenDistillParams:
    """Hyper-parameters every token-level baseline shares (DESIGN.md §6 defaults)."""

    w_task: float = 0.5  # weight of the SimCSE InfoNCE term
    w_kd: float = 0.5  # weight of the distillation term
    temperature: float = 0.07  # InfoNCE τ

    def _check(self, rules: dict[str, bool]) -> None:
        rules = {
            "w_task, w_kd ≥ 0": self.w_task >= 0 and self.w_kd >= 0,
            "temperature > 0": self.temperature > 0,
            **rules,
        }
        bad = [rule for rule, holds in rules.items() if not holds]
        if bad:
            raise ValueError(f"Invalid {type(self).__name__}, need {'; '.join(bad)} (got {self}).")


@dataclass
class MinEDParams(TokenDistillParams):
    """MinED hyper-parameters."""

    distance: str = "mse"  # "mse" (DESIGN.md §6.2) or "cosine"

    def __post_init__(self) -> None:
        self._check({f"distance in {DISTANCES}": self.distance in DISTANCES})

    @classmethod
    def from_dict(cls, d: dict) -> MinEDParams:
        """Build from a plain dict; unknown keys raise ``ValueError`` with a suggestion."""
        return params_from_dict(cls, d, "MinED")


class TokenDistillLoss(nn.Module):
    """Shared skeleton of the token-level baselines: SimCSE plus one token-level KD term.

    ``forward`` runs the student twice (two dropout masks; attention maps on the first pass when
    ``needs_attention``), takes InfoNCE between the passes and adds ``kd_terms`` of the first
    pass: ``L = w_task·L_task + w_kd·L_kd``. Subclasses own their projections and implement
    ``kd_terms``.
    """

    method = "token KD"
    batch_keys: tuple[str, ...] = ("input_ids", "attention_mask")
    map_hint = ""  # how to get the keys a subclass adds (shown when they are missing)

    def __init__(self, student: SentenceEncoder, params: TokenDistillParams) -> None:
        super().__init__()
        self.student, self.params = student, params

    @property
    def needs_attention(self) -> bool:
        """Whether ``kd_terms`` reads the student's attention maps."""
        return False

    def kd_terms(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(L_kd, parts to log)`` from the first student pass and the batch."""
        raise NotImplementedError

    def forward(
        self, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One training loss.

        Args:
            batch: padded tensors on the student's device (``DistillDataset.collate`` with the
                method's ``maps``); see each subclass's ``batch_keys``.
            step: 0-based optimizer step (unused: these baselines have no schedule).
            total_steps: number of steps of the run.

        Returns:
            ``(loss, logs)``; logs hold floats ``loss``, ``task``, ``kd`` and the KD parts.
        """
        if total_steps <= 0:
            raise ValueError(f"total_steps must be ≥ 1, got {total_steps}.")
        missing = [key for key in self.batch_keys if key not in batch]
        if missing:
            raise KeyError(f"{self.method} batch lacks {missing}; {self.map_hint}")
        p, ids, mask = self.params, batch["input_ids"], batch["attention_mask"]
        extra = {"output_attentions": True} if self.needs_attention else {}
        out1 = self.student(ids, mask, **extra)
        s1 = out1["sentence_embedding"]  # (B, D_s)
        s2 = self.student(ids, mask)["sentence_embedding"]  # (B, D_s), other dropout mask
        task = info_nce(s1, s2, p.temperature)
        kd, parts = self.kd_terms(out1, batch)
        loss = p.w_task * task + p.w_kd * kd
        names = ["loss", "task", "kd", *parts]
        values = torch.stack([v.detach().float() for v in (loss, task, kd, *parts.values())])
        return loss, dict(zip(names, values.tolist(), strict=True))  # one host sync


class MinEDLoss(TokenDistillLoss):
    """MinED objective around a student; owns the trainable projection ``P: D_s → D_t``."""

    method = "MinED"
    batch_keys = ("input_ids", "attention_mask", "t_hidden", "mined_pairs")
    map_hint = "build the dataset with DistillDataset(..., maps=('mined',))."

    def __init__(
        self,
        student: SentenceEncoder,
        teacher_hidden_dim: int,
        params: MinEDParams | None = None,
    ) -> None:
        super().__init__(student, params or MinEDParams())
        hidden = student.backbone.config.hidden_size
        self.proj = nn.Linear(hidden, teacher_hidden_dim, device=student.device)  # P

    def kd_terms(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MinED MSE over the mapped pairs; logs the mean number of pairs per text."""
        pairs = batch["mined_pairs"]  # (B, P, 2)
        h_s = self.proj(out["token_embeddings"])  # (B, T_s, D_t)
        kd = mined_hidden_loss(h_s, batch["t_hidden"], pairs, self.params.distance)
        n_pairs = (pairs[..., 0] >= 0).sum(1).float().mean()
        return kd, {"pairs": n_pairs}
