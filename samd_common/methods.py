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

from samd_common.losses import samd
from samd_common.models import SentenceEncoder


@dataclass(frozen=True)
class TeacherInfo:
    """What a loss builder needs to know about the (cached) teacher."""

    name: str  # teacher short name / path
    dim: int  # D_t of the pooled sentence embedding
    hidden_dim: int  # width of the teacher's token states
    layers: int  # number of last layers whose attention is cached


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
