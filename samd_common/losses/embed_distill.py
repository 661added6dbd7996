"""EmbedDistill — pointwise distillation of the pooled sentence embedding onto the teacher's.

Reimers & Gurevych, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
Distillation", EMNLP 2020, https://arxiv.org/abs/2004.09813; Kim et al., "EmbedDistill: A
Geometric Knowledge Distillation for Information Retrieval", 2023,
https://arxiv.org/abs/2301.12005 (sentence-transformers' ``EmbedDistillLoss``).

The plainest sentence-level recipe, and the one every published embedding distillation starts
from: the student's pooled embedding of a text regresses onto the teacher's embedding of the
same text (MSE in Reimers & Gurevych, an embedding-matching distance in EmbedDistill). The
teacher runs once into the cache; its embedding is a fixed target. It needs no token alignment,
so it works across tokenizers as it is. When the widths differ the two spaces are bridged in one
of two ways:

* ``projection`` — a trainable linear map on the **student** side, ``P: D_s → D_t``
  (EmbedDistill's projection head), owned by this objective and dropped after training: the
  saved student is the plain encoder, of width D_s. It trains at ``TrainConfig.proj_lr``.
* ``prefix`` — when the teacher is Matryoshka-trained (its first m dims are an embedding in
  their own right; the model table's ``matryoshka_dims``, e.g. EmbeddingGemma at 768/512/256/
  128) and at least as wide as the student, the target is the teacher's own prefix
  ``t_{:D_s}``, renormalised: no projection, nothing to learn on the teacher's side.
  ``target="auto"`` picks it when the teacher declares Matryoshka dims with
  ``min(dims) ≤ D_s ≤ D_t``, else ``projection``. With ``dims`` set, every listed student
  prefix ``s_{:m}`` also regresses onto the renormalised ``t_{:m}``.

``L = mean_b d(P s_b, t̂_b)`` (projection) or ``L = Σ_m w_m mean_b d(s_{b,:m}, t̂_{b,:m})``
(prefix), ``t̂`` = the L2-normalised teacher embedding (or prefix), with ``d`` = ``1 − cos``
(default) or the squared L2 distance ``‖x − t̂‖²`` (``mse``: D·MSE, on the scale of ``1 − cos``
for unit vectors, so ``w_kd`` means the same for both). The cached teacher embedding is
normalised because its raw norm is arbitrary (EmbeddingGemma's Dense output is ~1,000 long)
and every evaluation normalises anyway. Cosine leaves the student's norm free; ``mse`` also
pulls it to 1.

Default: no SimCSE (``w_task = 0``, ``w_kd = 1``), so the student runs once per step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samd_common.losses.base import Logged, Objective, Outputs
from samd_common.losses.matryoshka import check_matryoshka_dims
from samd_common.losses.params import DistillParams
from samd_common.models import SentenceEncoder

log = logging.getLogger(__name__)

CITATION = """@inproceedings{reimers2020multilingual,
  title     = {Making Monolingual Sentence Embeddings Multilingual using Knowledge Distillation},
  author    = {Reimers, Nils and Gurevych, Iryna},
  booktitle = {Proceedings of the 2020 Conference on Empirical Methods in Natural Language
               Processing (EMNLP)},
  year      = {2020},
  note      = {arXiv:2004.09813}
}

@article{kim2023embeddistill,
  title   = {{EmbedDistill}: A Geometric Knowledge Distillation for Information Retrieval},
  author  = {Kim, Seungyeon and Rawat, Ankit Singh and Zaheer, Manzil and Jayasumana, Sadeep and
             Sadhanala, Veeranjaneyulu and Jitkrittum, Wittawat and Menon, Aditya Krishna and
             Fergus, Rob and Kumar, Sanjiv},
  journal = {arXiv preprint arXiv:2301.12005},
  year    = {2023}
}"""

BATCH_KEYS = ("input_ids", "attention_mask", "t_pooled")
DISTANCES = ("cosine", "mse")
TARGETS = ("auto", "projection", "prefix")


def pointwise_loss(
    student: torch.Tensor, target: torch.Tensor, distance: str = "cosine"
) -> torch.Tensor:
    """Mean distance between each student embedding and its (renormalised) target.

    ``L = mean_b (1 − cos(s_b, t_b))`` (cosine) or ``mean_b ‖s_b − t̂_b‖²`` (mse, ``t̂ = t/‖t‖``)

    Args:
        student: (B, D) student embeddings (after the projection, if any).
        target: (B, D) teacher targets of the same width (normalised here).
        distance: ``"cosine"`` or ``"mse"``.

    Returns:
        0-d fp32 tensor; 0 when ``student`` equals the normalised target (any positive multiple
        of it for cosine).

    References:
        Reimers & Gurevych, EMNLP 2020, https://arxiv.org/abs/2004.09813; Kim et al.,
        "EmbedDistill", 2023, https://arxiv.org/abs/2301.12005

    Example:
        >>> t = torch.randn(8, 16)
        >>> float(pointwise_loss(3 * t, t)) < 1e-6
        True
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}.")
    if student.dim() != 2 or student.shape != target.shape:
        raise ValueError(
            f"pointwise_loss needs (B, D) student and target of the same shape, got "
            f"{tuple(student.shape)} and {tuple(target.shape)}; project or cut the prefix first."
        )
    student, target = student.float(), F.normalize(target.float(), dim=-1)
    if distance == "cosine":
        return (1 - F.cosine_similarity(student, target, dim=-1)).mean()
    return (student - target).pow(2).sum(-1).mean()


def prefix_pointwise_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    dims: Sequence[int],
    weights: Sequence[float] | None = None,
    distance: str = "cosine",
) -> torch.Tensor:
    """Each student prefix regresses onto the same-size prefix of a Matryoshka teacher.

    ``L = Σ_m w_m · mean_b d(s_{b,:m}, t_{b,:m} / ‖t_{b,:m}‖)``

    Args:
        student: (B, D_s) student embeddings.
        teacher: (B, D_t) Matryoshka-trained teacher embeddings, D_t ≥ max(dims).
        dims: K prefix sizes, each ≤ D_s and ≤ D_t.
        weights: K non-negative weights; None → 1 each.
        distance: ``"cosine"`` or ``"mse"`` (see :func:`pointwise_loss`).

    Returns:
        0-d fp32 tensor; 0 when every ``s_{:m}`` equals the renormalised ``t_{:m}``.

    References:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022,
        https://arxiv.org/abs/2205.13147 (why a prefix of the teacher is a target on its own).

    Example:
        >>> t = torch.randn(8, 64)
        >>> float(prefix_pointwise_loss(t[:, :32], t, [32])) < 1e-6
        True
    """
    if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"Expected (B, D_s) student and (B, D_t) teacher embeddings with the same B, got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}."
        )
    weights = check_matryoshka_dims(dims, [student.shape[-1], teacher.shape[-1]], weights)
    terms = [
        w * pointwise_loss(student[:, :m], teacher[:, :m], distance)
        for m, w in zip(dims, weights, strict=True)
    ]
    return torch.stack(terms).sum()


def resolve_target(
    target: str, student_dim: int, teacher_dim: int, matryoshka_dims: Sequence[int] = ()
) -> str:
    """``"prefix"`` or ``"projection"``: what the student regresses onto.

    ``auto`` is ``prefix`` when the teacher declares Matryoshka dims and
    ``min(matryoshka_dims) ≤ D_s ≤ D_t`` (its D_s-prefix is a trained-enough embedding), else
    ``projection``.

    Args:
        target: ``"auto"``, ``"projection"`` or ``"prefix"``.
        student_dim: D_s.
        teacher_dim: D_t of the cached teacher embedding.
        matryoshka_dims: dims the teacher was Matryoshka-trained at (empty: not Matryoshka).

    Returns:
        The resolved target.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}.")
    if target == "auto":
        fits = bool(matryoshka_dims) and min(matryoshka_dims) <= student_dim <= teacher_dim
        return "prefix" if fits else "projection"
    if target == "prefix" and student_dim > teacher_dim:
        raise ValueError(
            f"target='prefix' needs a teacher at least as wide as the student (D_t={teacher_dim} "
            f"< D_s={student_dim}); use target='projection'."
        )
    if target == "prefix" and not matryoshka_dims:
        log.warning("target='prefix' with a teacher that declares no Matryoshka dims.")
    return target


@dataclass
class EmbedDistillParams(DistillParams):
    """Pointwise-distillation hyper-parameters; no SimCSE by default (one student pass).

    ``w_task`` (0: SimCSE off) weighs the InfoNCE term, ``w_kd`` (1) the distillation term,
    ``temperature`` is the InfoNCE τ when SimCSE is switched on.
    """

    method = "EmbedDistill"
    w_task: float = 0.0  # SimCSE off: the papers regress onto the teacher alone
    w_kd: float = 1.0  # the distillation term carries the whole loss
    target: str = "auto"  # auto | projection (student-side P: D_s → D_t) | prefix (t_{:D_s})
    distance: str = "cosine"  # cosine (1 − cos) | mse (‖x − t̂‖², Reimers & Gurevych's MSE × D)
    dims: list[int] | None = None  # prefix target: student prefixes to distil; None → [D_s]
    weights: list[float] | None = None  # one weight per dim; None → 1 each

    def rules(self) -> dict[str, bool]:
        """Known target and distance; weights only with explicit dims."""
        return {
            **super().rules(),
            f"target in {TARGETS}": self.target in TARGETS,
            f"distance in {DISTANCES}": self.distance in DISTANCES,
            "explicit dims with weights (one weight per dim)": (
                self.weights is None or self.dims is not None
            ),
        }


class EmbedDistillLoss(Objective):
    """Pointwise embedding distillation through a student-side projection or a teacher prefix.

    ``L = w_kd·mean_b d(P s_b, t̂_b)`` (projection) or ``w_kd·Σ_m w_m mean_b d(s_{b,:m},
    t̂_{b,:m})`` (prefix); ``+ w_task·InfoNCE(s1, s2)`` only when ``w_task > 0``.

    Args:
        student: the encoder being trained.
        teacher_dim: D_t of the cached pooled teacher embedding ``t_pooled``.
        teacher_matryoshka_dims: dims the teacher was Matryoshka-trained at (model table);
            decides ``target="auto"``.
        params: ``EmbedDistillParams``; default auto target, cosine, no SimCSE.

    The batch (``DistillDataset.collate`` on the teacher cache) holds ``input_ids`` /
    ``attention_mask`` (B, T_s) and ``t_pooled`` (B, D_t). ``self.proj`` (D_s → D_t) exists
    only for the projection target and is never part of ``self.student`` (``save_encoder``
    writes the student alone). Logs: ``loss``, ``kd`` (and ``task`` with SimCSE on).

    References:
        Reimers & Gurevych, "Making Monolingual Sentence Embeddings Multilingual using Knowledge
        Distillation", EMNLP 2020, https://arxiv.org/abs/2004.09813; Kim et al., "EmbedDistill:
        A Geometric Knowledge Distillation for Information Retrieval", 2023,
        https://arxiv.org/abs/2301.12005

    Example:
        >>> objective = EmbedDistillLoss(student, 768, teacher_matryoshka_dims=(768, 512))
        >>> objective.target  # a student of width 384 fits inside the Matryoshka teacher
        'prefix'
        >>> loss, logs = objective(batch, step=0, total_steps=100)  # batch: with t_pooled
    """

    name = "EmbedDistill"
    batch_keys = BATCH_KEYS
    batch_hint = "build it with DistillDataset.collate on the teacher cache."

    def __init__(
        self,
        student: SentenceEncoder,
        teacher_dim: int,
        teacher_matryoshka_dims: Sequence[int] = (),
        params: EmbedDistillParams | None = None,
    ) -> None:
        super().__init__(student, params or EmbedDistillParams())
        p, d_s = self.params, student.dim
        self.teacher_dim = teacher_dim
        self.target = resolve_target(p.target, d_s, teacher_dim, tuple(teacher_matryoshka_dims))
        if p.dims is not None and self.target != "prefix":
            raise ValueError("dims apply to the prefix target only; drop them or set 'prefix'.")
        self.dims = list(p.dims) if p.dims else [d_s]
        self.weights = check_matryoshka_dims(self.dims, [d_s, teacher_dim], p.weights)
        self.proj = None
        if self.target == "projection":
            self.proj = nn.Linear(d_s, teacher_dim, device=student.device)
            if d_s == teacher_dim:
                nn.init.eye_(self.proj.weight)  # square: start from the identity map
                nn.init.zeros_(self.proj.bias)
        log.info("EmbedDistill: target %s (D_s=%d, D_t=%d)", self.target, d_s, teacher_dim)

    @property
    def uses_task(self) -> bool:
        """SimCSE (and its second pass) only with ``w_task > 0``."""
        return self.params.w_task > 0

    def kd_terms(
        self, out: Outputs, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, Logged]:
        """The pointwise term on the first pass's embedding; logs it as ``kd``."""
        s, t = out["sentence_embedding"], batch["t_pooled"]  # (B, D_s), (B, D_t)
        if t.shape[-1] != self.teacher_dim:
            raise ValueError(
                f"t_pooled has width {t.shape[-1]} but teacher_dim is {self.teacher_dim}; build "
                f"the objective from this cache's TeacherInfo."
            )
        if self.proj is None:
            kd = prefix_pointwise_loss(s, t, self.dims, self.weights, self.params.distance)
        else:
            projected = self.proj(s.to(self.proj.weight.dtype))  # (B, D_t)
            kd = pointwise_loss(projected, t, self.params.distance)
        return kd, {"kd": kd}
