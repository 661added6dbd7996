"""The methods registry: one entry per method, keyed by its notebook's name.

``METHODS[name]`` is data: the method's objective class (which owns the student and any
trainable projections), its parameters class, which teacher widths the objective takes, its
default hyper-parameters, family, paper and citation. One function, :func:`build`, turns an
entry into a loss module. The training loop, the notebooks and the benchmark only ever go
through ``get_method``.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samd_common.config import RunHooks
from samd_common.losses import cdm, dskd, embed_distill, emo, ese, mined, mrl, relational, samd
from samd_common.losses.base import Objective
from samd_common.losses.params import Params
from samd_common.models import MODELS, SentenceEncoder, spec_from_directory
from samd_common.models.io import linear_head
from samd_common.skd import loss as skd
from samd_common.skd import stages as skd_stages

HIDDEN_VAR_ROWS = 65536  # token rows sampled for TeacherInfo.hidden_var


@dataclass(frozen=True)
class TeacherInfo:
    """What a loss builder needs to know about the (cached) teacher."""

    name: str  # teacher short name / path
    dim: int  # D_t of the pooled sentence embedding
    hidden_dim: int  # width of the teacher's token states
    layers: int  # number of last layers whose attention is cached
    embed_dim: int | None = None  # width of the cached input embeddings (None: = hidden_dim)
    matryoshka_dims: tuple[int, ...] = ()  # dims it was Matryoshka-trained at (model table)
    pooled_mean: tuple[float, ...] = ()  # (D_t,) corpus mean of the cached pooled embeddings
    hidden_var: float = 0.0  # σ̄²: per-dimension variance of the cached token states, averaged

    @functools.cached_property
    def head(self) -> torch.Tensor | None:
        """(D_t, H_t) the teacher's Dense head as one matrix when it is linear, else None.

        Read off the model folder on first use only (``models.io.linear_head``): the one
        objective that needs it is SAMD with ``span_space="embedding"``.
        """
        return linear_head(self.name) if self.name else None

    @classmethod
    def from_cache(cls, name: str, cache) -> TeacherInfo:
        """Widths read off a ``TeacherCache``; Matryoshka dims off the model table.

        ``layers`` comes from the cache key; the table is looked up by ``name``, else by the
        short name the cache recorded. ``pooled_mean`` is the mean of the cached (unnormalised)
        pooled embeddings over the corpus, a fixed vector (SAMD centres its targets with it);
        ``hidden_var`` the variance of the cached content-token states, per dimension, averaged
        over the dimensions (SAMD's ``span_norm`` divides its MSE span term by it), read off at
        most ``HIDDEN_VAR_ROWS`` evenly strided token rows. ``head`` is read lazily.
        """
        key = cache.meta["key"]
        mean = np.mean(cache.arrays["pooled"], axis=0, dtype=np.float64)  # (D_t,)
        hidden, real = cache.arrays["hidden"], cache.arrays["real"]  # (N_tok, H_t), (N_tok,)
        stride = max(1, len(hidden) // HIDDEN_VAR_ROWS)
        rows = np.asarray(hidden[::stride], dtype=np.float32)[np.asarray(real[::stride], bool)]
        var = float(rows.var(axis=0, dtype=np.float64).mean()) if len(rows) > 1 else 0.0
        return cls(
            name,
            cache.dim,
            cache.hidden_dim,
            int(key["layers"]),
            int(cache.arrays["embed"].shape[1]),
            matryoshka_dims(name) or matryoshka_dims(str(key.get("teacher", ""))),
            tuple(float(v) for v in mean),
            var,
        )


def matryoshka_dims(name: str) -> tuple[int, ...]:
    """The Matryoshka dims the model table declares for a short name, HF id or model folder.

    Args:
        name: what a config names the teacher by.

    Returns:
        The declared dims, or ``()`` for a model the table does not know or marks as none.
    """
    by_id = {s.hf_id.lower(): s for s in MODELS.values()}
    spec = MODELS.get(name) or by_id.get(name.lower())
    if spec is None and name and Path(name).expanduser().is_dir():
        spec = spec_from_directory(Path(name).expanduser())
    return tuple(spec.matryoshka_dims) if spec is not None else ()


@dataclass(frozen=True)
class MethodSpec:
    """A registry entry: what to build, with which teacher widths, and how to cite it."""

    name: str  # registry key = notebook file name (CTKD/<name>.ipynb or MRL/<name>.ipynb)
    family: str  # "ctkd" (cross-tokenizer KD) or "mrl" (Matryoshka family)
    objective: type[Objective]  # the loss module class; owns the student and its projections
    params_class: type[Params]  # its hyper-parameters; ``from_dict`` validates the notebook's
    # objective keyword → TeacherInfo field it is given, e.g. {"teacher_hidden_dim": "hidden_dim"}
    teacher_widths: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # paper hyper-parameters
    needs_teacher: bool = True  # False for teacher-free methods (MRL, ESE)
    paper: str = ""  # paper title
    summary: str = ""  # one paragraph, shown in the notebook and README
    citation: str = ""  # BibTeX
    elastic_depth: bool = False  # also evaluated on a layers × dims grid (ESE)
    maps: tuple[str, ...] = ()  # string maps DistillDataset adds (alignment.STRING_MAPS)
    train_defaults: dict[str, Any] = field(default_factory=dict)  # TrainConfig values (proj_lr)
    ours: bool = False  # the project's own method (SAMD, SAMD-MRL); the rest are baselines
    hooks: RunHooks = RunHooks()  # its own stages of experiment.run_experiment (SKD's)
    formula: str = ""  # the loss in one LaTeX line (the notebook's Method section)
    url: str = ""  # the paper's page (arXiv or anthology); empty for the project's own method
    # extra lines of the notebook's parameters cell (``name: type = default  # help``)
    notebook_parameters: tuple[str, ...] = ()

    def build(
        self, student: SentenceEncoder, teacher: TeacherInfo | None, params: dict[str, Any]
    ) -> Objective:
        """``build(self, student, teacher, params)``: this method's loss module."""
        return build(self, student, teacher, params)


def build(
    spec: MethodSpec,
    student: SentenceEncoder,
    teacher: TeacherInfo | None,
    params: dict[str, Any],
) -> Objective:
    """Build a method's loss module around ``student``.

    Args:
        spec: the registry entry.
        student: the encoder to train (the module owns it).
        teacher: widths of the cached teacher; None only for teacher-free methods.
        params: the method's parameters (``spec.defaults`` merged with the notebook's).

    Returns:
        ``spec.objective(student, **teacher widths, params=spec.params_class.from_dict(params))``.

    Raises:
        ValueError: no teacher for a method that needs one, or invalid parameters.
    """
    if spec.needs_teacher and teacher is None:
        raise ValueError(f"{spec.name} needs a teacher (TeacherInfo); got None.")
    widths = (
        {arg: getattr(teacher, f) for arg, f in spec.teacher_widths.items()}
        if teacher is not None
        else {}
    )
    return spec.objective(student, params=spec.params_class.from_dict(params), **widths)


SAMD_WIDTHS = {
    "teacher_dim": "dim",
    "teacher_layers": "layers",
    "teacher_hidden_dim": "hidden_dim",
    "teacher_matryoshka_dims": "matryoshka_dims",
    "teacher_mean": "pooled_mean",
    "teacher_hidden_var": "hidden_var",
    "teacher_head": "head",
}
TOKEN_WIDTHS = {"teacher_hidden_dim": "hidden_dim"}

METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in (
        MethodSpec(
            "SAMD",
            "ctkd",
            samd.SAMDLoss,
            samd.SAMDParams,
            teacher_widths=SAMD_WIDTHS,
            defaults={},
            train_defaults={"interpolate": 0.5},  # WiSE-FT; dev study, bench-dev finding 10
            paper="Span-Aware Matryoshka Distillation",
            summary=(
                "Cross-tokenizer distillation in one student pass with two terms: a span-aware "
                "term makes the student's mean state over each span group (the characters both "
                "tokenizers cover) regress, through a student-side head, onto the teacher's "
                "(mean squared error, CDM's distance), and L_unif — SimCSE's in-batch InfoNCE "
                "with the student's own embedding as its positive — spreads the embeddings as "
                "SimCSE's negatives do, without SimCSE's second pass. Weighted ½ : ½ (CDM's mix). "
                "Sentence-level Matryoshka terms with fixed, centred teacher targets (Jasper's "
                "in-batch similarity matrix and ranking at every prefix; the pointwise prefix "
                "regression) are options, off: on the dev protocol they added nothing with "
                "EmbeddingGemma, and L_unif took over the relational term's job on e5-small. "
                "After training the student keeps half of its update, θ₀ + ½(θ − θ₀) (WiSE-FT "
                "weight interpolation with its starting point): +0.4 points in-domain on dev. "
                "On the bench test sweep (minilm-l6, 3 seeds): 49 % of the teacher–student gap "
                "in-domain, 24 % out of domain, at 1.01× the pointwise baseline's step."
            ),
            citation=samd.CITATION,
            ours=True,
            formula=(
                r"\mathcal{L} = \tfrac12\,\mathrm{mean}_g \lVert Q \bar h^s_g - \bar h^t_g "
                r"\rVert^2 / H_t + \tfrac12\,\mathrm{mean}_i \log \sum_j "
                r"e^{(\cos(s_i, s_j) - 1)/\tau}; \quad \theta_\text{student} = "
                r"\theta_0 + \alpha(\theta - \theta_0),\ \alpha = \tfrac12"
            ),
        ),
        MethodSpec(
            "MRL",
            "mrl",
            mrl.MRLLoss,
            mrl.MRLParams,
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
            formula=(
                r"\mathcal{L} = \sum_{m \in \{D_s, D_s/2, \dots, 16\}} "
                r"\mathrm{InfoNCE}(s^{(1)}_{:m}, s^{(2)}_{:m})"
            ),
            url="https://arxiv.org/abs/2205.13147",
        ),
        MethodSpec(
            "ESE",
            "mrl",
            ese.ESELoss,
            ese.ESEParams,
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
            formula=(
                r"\mathcal{L} = \ell(s^{(n)}) + \tfrac{1}{1 + \ln(1 + "
                r"i)}\,\ell(s^{(i)}),\quad \ell(s) = \mathrm{InfoNCE}(s) + "
                r"\mathrm{InfoNCE}(s_{:k}) + \mathrm{MSE}(s_{:k}, \mathrm{PCA}_k(s)) + "
                r"\mathrm{KL}(P(\mathrm{PCA}_k(s)) \,\|\, P(s_{:k}))"
            ),
            url="https://arxiv.org/abs/2402.14776",
        ),
        MethodSpec(
            "SAMD-MRL",
            "mrl",
            mrl.SAMDMRLLoss,
            mrl.SAMDMRLParams,
            teacher_widths=SAMD_WIDTHS,
            # its dev study and bench rows ran with SAMD's first (cosine) span term; the MSE
            # span term (SAMD's default since dev finding 13) is not re-run for it yet
            defaults={"mrl_min_dim": 16, "span_distance": "cosine"},
            paper="Span-Aware Matryoshka Distillation with a Matryoshka task loss",
            summary=(
                "SAMD plus MRL's task loss: InfoNCE between two dropout passes summed over the "
                "halving prefixes of the student embedding, next to SAMD's prefix, relational "
                "and span-group distillation terms from a cross-tokenizer teacher."
            ),
            citation=samd.CITATION + "\n\n" + mrl.CITATION,
            ours=True,
            formula=(
                r"\mathcal{L} = \sum_{m} \mathrm{InfoNCE}(s^{(1)}_{:m}, s^{(2)}_{:m}) + "
                r"\mathcal{L}_\text{SAMD}"
            ),
        ),
        MethodSpec(
            "SKD",
            "ctkd",
            skd.SKDLoss,  # params["dictionary"]: the sense folder (skd.stages passes it)
            skd.SKDParams,
            teacher_widths=TOKEN_WIDTHS,
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
            hooks=skd_stages.HOOKS,  # sense dictionary, MTEB protocol (samd_common.skd.stages)
            formula=(
                r"\mathcal{L} = w_\text{kd}\,\operatorname{mean}_{(j,i)} "
                r"\mathrm{CE}\big(C_v W h_s^{(j)},\ \arg\max_k\, C_v h_t^{(i)}\big),\quad "
                r"v = \text{teacher token id of } i"
            ),
            url="https://arxiv.org/abs/2504.06036",
            notebook_parameters=(
                "mode: Optional[str] = None  # preset full: all (one dictionary), sep: one a task",
                "tasks: Optional[str] = None  # preset full: the 16 reference tasks (names, 1-16)",
                "cluster: Optional[str] = None  # preset full: mcl (MCL, k-means); kmeans: fast",
                "jobs: Optional[int] = None  # preset full: 1 clustering process (-1: all cores)",
            ),
        ),
        MethodSpec(
            "DSKD",
            "ctkd",
            dskd.DSKDLoss,
            dskd.DSKDParams,
            teacher_widths={"teacher_hidden_dim": "hidden_dim", "teacher_embed_dim": "embed_dim"},
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
            formula=(
                r"\mathcal{L} = w_\text{task}\,\mathrm{InfoNCE} + w_\text{kd}\big(d(H_s, "
                r"\mathrm{softmax}(Q_s K_t^\top/\sqrt{d})\,P_{t\to s} H_t) + d(H_t, "
                r"\mathrm{softmax}(Q_t K_s^\top/\sqrt{d})\,P_{s\to t} H_s) + "
                r"w_\text{orth}\,\mathcal{L}_\text{orth}\big)"
            ),
            url="https://arxiv.org/abs/2406.17328",
        ),
        MethodSpec(
            "MinED",
            "ctkd",
            mined.MinEDLoss,
            mined.MinEDParams,
            teacher_widths=TOKEN_WIDTHS,
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
            formula=(
                r"\mathcal{L} = w_\text{task}\,\mathrm{InfoNCE}(s^{(1)}, s^{(2)}) + "
                r"w_\text{kd}\,\operatorname{mean}_{(j,i) \in \mathrm{MinED}} \lVert P "
                r"h_s^{(j)} - h_t^{(i)} \rVert^2 / D_t"
            ),
            url="https://arxiv.org/abs/2401.10491",
        ),
        MethodSpec(
            "CDM",
            "ctkd",
            cdm.CDMLoss,
            cdm.CDMParams,
            teacher_widths=TOKEN_WIDTHS,
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
            formula=(
                r"\mathcal{L} = w_\text{task}\,\mathrm{InfoNCE}(s^{(1)}, s^{(2)}) + "
                r"w_\text{kd}\,\operatorname{mean}_{g} \lVert P \bar h_s^{(g)} - \bar "
                r"h_t^{(g)} \rVert^2 / D_t,\quad g \text{ = merged steps of the "
                r"entropy-weighted DTW path}"
            ),
            url="https://arxiv.org/abs/2502.11104",
        ),
        MethodSpec(
            "EMO",
            "ctkd",
            emo.EMOLoss,
            emo.EMOParams,
            teacher_widths=TOKEN_WIDTHS,
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
            formula=(
                r"\mathcal{L} = w_\text{task}\,\mathrm{InfoNCE}(s^{(1)}, s^{(2)}) + "
                r"w_\text{kd}\big(0.1\,[1 - \mathrm{CKA}(\mathrm{Att}_s^{\mathrm{sel}}, "
                r"\mathrm{Att}_t^{\mathrm{sel}})] + \langle \Pi, C \rangle\big)"
            ),
            url="https://aclanthology.org/events/emnlp-2025/",
        ),
        MethodSpec(
            "EmbedDistill",
            "ctkd",
            embed_distill.EmbedDistillLoss,
            embed_distill.EmbedDistillParams,
            teacher_widths={"teacher_dim": "dim", "teacher_matryoshka_dims": "matryoshka_dims"},
            defaults={"target": "auto", "distance": "cosine", "w_task": 0.0, "w_kd": 1.0},
            paper="EmbedDistill: A Geometric Knowledge Distillation for Information Retrieval",
            summary=(
                "Pointwise embedding distillation (Reimers & Gurevych 2020; EmbedDistill, Kim et "
                "al. 2023), tokenizer-free: the student's pooled "
                "embedding regresses (1 − cos, or squared L2) onto the cached, L2-normalised "
                "teacher embedding of the same text. Across widths the target is the teacher's "
                "own first D_s dims (renormalised) when the teacher is Matryoshka-trained and "
                "wide enough, else the student goes through a trainable student-side projection "
                "D_s → D_t that is dropped after training. No SimCSE; one student pass per step."
            ),
            citation=embed_distill.CITATION,
            formula=(
                r"\mathcal{L} = \operatorname{mean}_b\, d\big(P s_b,\ \hat t_b\big)\ "
                r"\text{or}\ \operatorname{mean}_b\, d\big(s_b,\ \widehat{t_{b,:D_s}}\big)\ "
                r"\text{(Matryoshka teacher)},\quad d(x, y) = 1 - \cos(x, y)\ \text{or}\ "
                r"\lVert x - y \rVert^2"
            ),
            url="https://arxiv.org/abs/2301.12005",
        ),
        MethodSpec(
            "Relational",
            "ctkd",
            relational.RelationalLoss,
            relational.RelationalParams,
            teacher_widths={"teacher_dim": "dim"},
            defaults={"lambda_sim": 3.0, "lambda_resim": 1.0, "margin": 0.015, "min_dim": 32},
            paper="Jasper and Stella: distillation of SOTA embedding models",
            summary=(
                "Relational distillation after Jasper, tokenizer- and width-free: at every "
                "Matryoshka prefix of the student (halving from D_s to 32, weight 1), its "
                "in-batch cosine-similarity matrix regresses (MSE) onto the cached teacher's "
                "fixed full-width matrix, and a margin hinge over every pair of in-batch pairs "
                "makes it rank the pairs as the teacher does (λ_sim 3, λ_resim 1, margin "
                "0.015). No projection, no SimCSE; one student pass per step."
            ),
            citation=relational.CITATION,
            formula=(
                r"\mathcal{L} = \sum_{m} \lambda_\text{sim}\, \operatorname{mean}_{i<j} "
                r"\big(S(s_{:m})_{ij} - S(t)_{ij}\big)^2 + \lambda_\text{resim}\, "
                r"\operatorname{mean}_{p, q:\, S(t)_p > S(t)_q} \max\big(0,\ S(s_{:m})_q - "
                r"S(s_{:m})_p + \mu\big),\quad S(x) = \hat x \hat x^\top"
            ),
            url="https://arxiv.org/abs/2412.19048",
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
