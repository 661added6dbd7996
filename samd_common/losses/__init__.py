"""Stage 6 — losses: shared building blocks, one objective base, one module per method.

* building blocks (pure functions on tensors): :mod:`~samd_common.losses.contrastive`
  (InfoNCE, Matryoshka InfoNCE), :mod:`~samd_common.losses.matryoshka` (dims, weights, prefix
  distillation), :mod:`~samd_common.losses.similarity` (linear CKA, overlap weights, group
  sums), :mod:`~samd_common.losses.schedules` (ramps);
* :mod:`~samd_common.losses.base` — ``Objective``, the training step every method shares, and
  :mod:`~samd_common.losses.params` — ``Params``/``DistillParams``, the hyper-parameter bases;
* one module per method: ``simcse``, ``mrl`` (MRL, SAMD-MRL), ``samd``, ``ese``, ``mined``,
  ``cdm``, ``emo``, ``dskd`` (+ ``dskd_functional``), and the tokenizer-free sentence-level
  baselines ``embed_distill`` (pointwise) and ``relational`` (Jasper); SKD's loss is in
  ``samd_common.skd.loss``.
"""

from __future__ import annotations

from samd_common.config import halving_dims
from samd_common.losses.base import Objective, host_logs, require_eager_attention
from samd_common.losses.cdm import (
    CDMLoss,
    CDMParams,
    attention_entropy_weights,
    contextual_dtw_groups,
    merged_step_loss,
)
from samd_common.losses.contrastive import info_nce, matryoshka_info_nce
from samd_common.losses.dskd import DSKDLoss, DSKDParams
from samd_common.losses.dskd_functional import (
    cross_model_attention,
    dual_space_losses,
    orthogonality_penalty,
    token_representation_loss,
)
from samd_common.losses.embed_distill import (
    EmbedDistillLoss,
    EmbedDistillParams,
    pointwise_loss,
    prefix_pointwise_loss,
    resolve_target,
)
from samd_common.losses.emo import (
    EMOLoss,
    EMOParams,
    attention_importance,
    importance_ot_loss,
    mapped_attention_cka_loss,
    ot_cost_matrix,
    sinkhorn_plans,
)
from samd_common.losses.ese import (
    ESELoss,
    ESEParams,
    compression_loss,
    espresso_layer_loss,
    espresso_loss,
    layer_weight,
    pca_target,
    sample_layer,
    similarity_kl,
)
from samd_common.losses.matryoshka import (
    MRD_DIMS,
    check_matryoshka_dims,
    inverse_sqrt_weights,
    matryoshka_distillation_loss,
    mrd_dims,
)
from samd_common.losses.mined import MinEDLoss, MinEDParams, mined_hidden_loss, token_distance
from samd_common.losses.mrl import MRLLoss, MRLParams, SAMDMRLLoss, SAMDMRLParams, mrl_loss
from samd_common.losses.params import DistillParams, Params
from samd_common.losses.relational import (
    RelationalLoss,
    RelationalParams,
    cosine_similarity_matrix,
    relational_loss,
    relative_similarity_loss,
    similarity_matrix_loss,
)
from samd_common.losses.samd import SAMDLoss, SAMDParams
from samd_common.losses.schedules import linear_ramp
from samd_common.losses.simcse import SimCSELoss, SimCSEParams
from samd_common.losses.similarity import (
    coverage_confidence,
    grouped_sums,
    linear_cka,
    row_normalize,
)
from samd_common.losses.span_terms import span_attention_cka_loss, span_group_hidden_loss

__all__ = [
    # bases
    "DistillParams",
    "Objective",
    "Params",
    "host_logs",
    "require_eager_attention",
    # building blocks
    "MRD_DIMS",
    "check_matryoshka_dims",
    "coverage_confidence",
    "grouped_sums",
    "halving_dims",
    "info_nce",
    "inverse_sqrt_weights",
    "linear_cka",
    "linear_ramp",
    "matryoshka_distillation_loss",
    "matryoshka_info_nce",
    "mrd_dims",
    "row_normalize",
    # SimCSE, MRL, SAMD, SAMD-MRL, ESE
    "SimCSELoss",
    "SimCSEParams",
    "MRLLoss",
    "MRLParams",
    "mrl_loss",
    "SAMDLoss",
    "SAMDParams",
    "span_attention_cka_loss",
    "span_group_hidden_loss",
    "SAMDMRLLoss",
    "SAMDMRLParams",
    "ESELoss",
    "ESEParams",
    "compression_loss",
    "espresso_layer_loss",
    "espresso_loss",
    "layer_weight",
    "pca_target",
    "sample_layer",
    "similarity_kl",
    # token-level baselines
    "MinEDLoss",
    "MinEDParams",
    "mined_hidden_loss",
    "token_distance",
    "CDMLoss",
    "CDMParams",
    "attention_entropy_weights",
    "contextual_dtw_groups",
    "merged_step_loss",
    "EMOLoss",
    "EMOParams",
    "attention_importance",
    "importance_ot_loss",
    "mapped_attention_cka_loss",
    "ot_cost_matrix",
    "sinkhorn_plans",
    "DSKDLoss",
    "DSKDParams",
    "cross_model_attention",
    "dual_space_losses",
    "orthogonality_penalty",
    "token_representation_loss",
    # sentence-level baselines
    "EmbedDistillLoss",
    "EmbedDistillParams",
    "pointwise_loss",
    "prefix_pointwise_loss",
    "resolve_target",
    "RelationalLoss",
    "RelationalParams",
    "cosine_similarity_matrix",
    "relational_loss",
    "relative_similarity_loss",
    "similarity_matrix_loss",
]
