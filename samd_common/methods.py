"""The methods registry: one entry per method, keyed by its notebook's name.

``METHODS[name]`` says how to build the method's loss module (which owns the student and any
trainable projections), its default hyper-parameters, family, paper and citation. The training
loop, the notebooks and the benchmark only ever go through ``get_method``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from samd_common.losses import cdm, dskd, emo, ese, mined, mrl, samd
from samd_common.models import SentenceEncoder
from samd_common.skd import loss as skd


@dataclass(frozen=True)
class TeacherInfo:
    """What a loss builder needs to know about the (cached) teacher."""

    name: str  # teacher short name / path
    dim: int  # D_t of the pooled sentence embedding
    hidden_dim: int  # width of the teacher's token states
    layers: int  # number of last layers whose attention is cached
    embed_dim: int | None = None  # width of the cached input embeddings (None: = hidden_dim)

    @classmethod
    def from_cache(cls, name: str, cache) -> TeacherInfo:
        """Widths read off a ``TeacherCache`` (``layers`` from its key)."""
        return cls(
            name,
            cache.dim,
            cache.hidden_dim,
            int(cache.meta["key"]["layers"]),
            int(cache.arrays["embed"].shape[1]),
        )


@dataclass(frozen=True)
class MethodSpec:
    """A registry entry."""

    name: str  # registry key = notebook file name (CTKD/<name>.ipynb or MRL/<name>.ipynb)
    family: str  # "ctkd" (cross-tokenizer KD) or "mrl" (Matryoshka family)
    build: Callable[[SentenceEncoder, TeacherInfo | None, dict[str, Any]], nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)  # paper hyper-parameters
    needs_teacher: bool = True  # False for teacher-free methods (MRL, ESE)
    paper: str = ""  # paper title
    summary: str = ""  # one paragraph, shown in the notebook and README
    citation: str = ""  # BibTeX
    elastic_depth: bool = False  # also evaluated on a layers × dims grid (ESE)
    maps: tuple[str, ...] = ()  # string maps DistillDataset adds (alignment.STRING_MAPS)
    train_defaults: dict[str, Any] = field(default_factory=dict)  # TrainConfig values (proj_lr)
    ours: bool = False  # the project's own method (SAMD, SAMD-MRL); the rest are baselines


def _build_samd(
    student: SentenceEncoder, teacher: TeacherInfo | None, params: dict[str, Any]
) -> nn.Module:
    if teacher is None:
        raise ValueError("SAMD needs a teacher (TeacherInfo); got None.")
    return samd.SAMDLoss(
        student,
        teacher_dim=teacher.dim,
        teacher_layers=teacher.layers,
        params=samd.SAMDParams.from_dict(params),
        teacher_hidden_dim=teacher.hidden_dim,
    )


def _build_mrl(
    student: SentenceEncoder, teacher: TeacherInfo | None, params: dict[str, Any]
) -> nn.Module:
    return mrl.MRLLoss(student, mrl.MRLParams.from_dict(params))


def _build_ese(
    student: SentenceEncoder, teacher: TeacherInfo | None, params: dict[str, Any]
) -> nn.Module:
    return ese.ESELoss(student, ese.ESEParams.from_dict(params))


def _build_samd_mrl(
    student: SentenceEncoder, teacher: TeacherInfo | None, params: dict[str, Any]
) -> nn.Module:
    if teacher is None:
        raise ValueError("SAMD-MRL needs a teacher (TeacherInfo); got None.")
    return mrl.SAMDMRLLoss(
        student,
        teacher_dim=teacher.dim,
        teacher_layers=teacher.layers,
        params=mrl.SAMDMRLParams.from_dict(params),
        teacher_hidden_dim=teacher.hidden_dim,
    )


def _build_skd(
    student: SentenceEncoder, teacher: TeacherInfo | None, params: dict[str, Any]
) -> nn.Module:
    return skd.build_skd(student, teacher, params)  # params["dictionary"]: the sense folder


def _build_mined(
    student: SentenceEncoder, teacher: TeacherInfo | None, params: dict[str, Any]
) -> nn.Module:
    if teacher is None:
        raise ValueError("MinED needs a teacher (TeacherInfo); got None.")
    return mined.MinEDLoss(student, teacher.hidden_dim, mined.MinEDParams.from_dict(params))


def _build_cdm(
    student: SentenceEncoder, teacher: TeacherInfo | None, params: dict[str, Any]
) -> nn.Module:
    if teacher is None:
        raise ValueError("CDM needs a teacher (TeacherInfo); got None.")
    return cdm.CDMLoss(student, teacher.hidden_dim, cdm.CDMParams.from_dict(params))


def _build_emo(
    student: SentenceEncoder, teacher: TeacherInfo | None, params: dict[str, Any]
) -> nn.Module:
    if teacher is None:
        raise ValueError("EMO needs a teacher (TeacherInfo); got None.")
    return emo.EMOLoss(student, teacher.hidden_dim, emo.EMOParams.from_dict(params))


METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        MethodSpec(
            "SAMD",
            "ctkd",
            _build_samd,
            defaults={},
            paper="Span-Aware Matryoshka Distillation",
            summary=(
                "Cross-tokenizer distillation that aligns teacher and student tokens through "
                "the character spans both cover: a Matryoshka representation-distillation "
                "loss on every prefix of the student embedding (trainable projection of the "
                "teacher embedding) plus a span-aware attention-CKA loss, on top of SimCSE."
            ),
            citation=samd.CITATION,
            ours=True,
        ),
        MethodSpec(
            "MRL",
            "mrl",
            _build_mrl,
            defaults={"min_dim": 16},
            needs_teacher=False,
            paper="Matryoshka Representation Learning",
            summary=(
                "Teacher-free Matryoshka Representation Learning: SimCSE's in-batch InfoNCE "
                "between two dropout passes, summed over nested prefixes of the embedding whose "
                "sizes halve from the student width down to 16 (unit weights), so every prefix "
                "is a usable embedding on its own."
            ),
            citation=mrl.CITATION,
        ),
        MethodSpec(
            "ESE",
            "mrl",
            _build_ese,
            defaults={"prefix_dim": None, "sample_layer": True},
            needs_teacher=False,
            paper="ESE: Espresso Sentence Embeddings",
            summary=(
                "Teacher-free embeddings elastic in depth and width: InfoNCE on the full "
                "embedding and on its first k dims, the same on one randomly sampled earlier "
                "layer weighted 1/(1+ln(1+i)), and a compression term that makes the k-dim prefix "
                "match the batch's PCA(k) projection (MSE + KL of in-batch similarities). "
                "Evaluated on a layers × dims grid."
            ),
            citation=ese.CITATION,
            elastic_depth=True,
        ),
        MethodSpec(
            "SAMD-MRL",
            "mrl",
            _build_samd_mrl,
            defaults={"mrl_min_dim": 16},
            paper="Span-Aware Matryoshka Distillation with a Matryoshka task loss",
            summary=(
                "SAMD whose task loss is MRL's: InfoNCE summed over the halving prefixes of the "
                "student embedding, plus SAMD's Matryoshka representation distillation (β) and "
                "span-aware attention alignment (α) from a cross-tokenizer teacher."
            ),
            citation=samd.CITATION + "\n\n" + mrl.CITATION,
            ours=True,
        ),
        MethodSpec(
            "SKD",
            "ctkd",
            _build_skd,
            defaults={"mode": "all", "projection": "auto", "w_kd": 1.0, "w_task": 0.0},
            paper="Multi-Sense Embeddings for Language Models and Knowledge Distillation",
            summary=(
                "Sense-dictionary distillation: the teacher's token states are clustered per "
                "token id (MCL, then k-means) into a dictionary of senses; the student learns to "
                "pick, for each token, the teacher's nearest sense (cross-entropy over that "
                "token's senses). Cross-tokenizer students map tokens through span groups and a "
                "trainable projection. Evaluated with the MTEB classification protocol, with "
                "token states replaced by their senses or left continuous."
            ),
            citation=skd.CITATION,
        ),
        MethodSpec(
            "DSKD",
            "ctkd",
            dskd.build_dskd,
            defaults={"distance": "cosine", "w_orth": 1.0, "specials": False},
            paper="Dual-Space Knowledge Distillation for Large Language Models",
            summary=(
                "Dual-space distillation with cross-model attention: queries from the student's "
                "input embeddings, keys from the teacher's, align the two tokenizations; teacher "
                "token states carried to student tokens (trainable projector) are matched in the "
                "student's space and student states carried to teacher tokens in the teacher's "
                "(cosine), with a soft-orthogonality term that keeps the projectors from "
                "collapsing. Encoder adaptation: representations instead of LM-head logits; "
                "projectors at their own learning rate (1e-3)."
            ),
            citation=dskd.CITATION,
            train_defaults={"proj_lr": dskd.PROJ_LR},
        ),
        MethodSpec(
            "MinED",
            "ctkd",
            _build_mined,
            defaults={"distance": "mse"},
            paper="Knowledge Fusion of Large Language Models",
            summary=(
                "FuseLLM's minimum-edit-distance token map as a cross-tokenizer baseline: a DTW "
                "path over the two token-string sequences (edit-distance cost) keeps the "
                "one-to-one student/teacher token pairs with equal normalised strings, and the "
                "student's last-layer token states, through a trainable projection, regress (MSE) "
                "onto the teacher's over those pairs, on top of SimCSE."
            ),
            citation=mined.CITATION,
            maps=("mined",),
        ),
        MethodSpec(
            "CDM",
            "ctkd",
            _build_cdm,
            defaults={"distance": "mse", "contextual": True},
            paper=(
                "Enhancing Cross-Tokenizer Knowledge Distillation with Contextual Dynamical Mapping"
            ),
            summary=(
                "Contextual dynamic mapping: DTW over the token strings with a normalised "
                "edit-distance cost weighted by each token's contextual uncertainty (for "
                "encoders the normalised entropy of its last-layer attention row: live for the "
                "student, cached for the teacher); many-to-one runs of the path are merged by "
                "mean pooling both sides, and the projected student states regress (MSE) onto the "
                "teacher's per merged step, on top of SimCSE."
            ),
            citation=cdm.CITATION,
            maps=("ned",),
        ),
        MethodSpec(
            "EMO",
            "ctkd",
            _build_emo,
            defaults={"w_cka": 0.1, "ot_reg": 0.1, "ot_iters": 100},
            paper=(
                "EMO: Embedding Model Distillation via Intra-Model Relation and Optimal Transport "
                "Alignments"
            ),
            summary=(
                "Embedding-model distillation with intra-model relation and optimal transport: on "
                "the top third (by teacher attention importance) of the reciprocal-MinED token "
                "pairs, linear CKA aligns the student's attention with the teacher's; all real "
                "tokens are matched by entropic OT (POT Sinkhorn, reg 0.1, ≤100 iterations) with "
                "attention-importance masses and cost 1 − softmax(H_s·(W H_t)ᵀ/√d_s) through a "
                "trainable W; L_kd = 0.1·L_CKA + L_OT, on top of SimCSE."
            ),
            citation=emo.CITATION,
            maps=("mined_reciprocal",),
        ),
    )
}


def get_method(name: str) -> MethodSpec:
    """Registry lookup with a "did you mean" on typos (case-insensitive)."""
    if name in METHODS:
        return METHODS[name]
    by_lower = {k.lower(): k for k in METHODS}
    if name.lower() in by_lower:
        return METHODS[by_lower[name.lower()]]
    close = difflib.get_close_matches(name, METHODS, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"Unknown method {name!r}.{hint} Known: {', '.join(METHODS)}")
