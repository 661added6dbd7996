"""Loss functions: shared building blocks (``common``) and one module per method family."""

from __future__ import annotations

from samd_common.config import halving_dims
from samd_common.losses.cdm import (
    CDMLoss,
    CDMParams,
    attention_entropy_weights,
    contextual_dtw_groups,
    merged_step_loss,
)
from samd_common.losses.common import (
    MRD_DIMS,
    coverage_confidence,
    info_nce,
    inverse_sqrt_weights,
    linear_cka,
    linear_ramp,
    matryoshka_distillation_loss,
    matryoshka_info_nce,
    mrd_dims,
    row_normalize,
)
from samd_common.losses.dskd import DSKDLoss, DSKDParams
from samd_common.losses.dskd_functional import (
    cross_model_attention,
    dual_space_losses,
    orthogonality_penalty,
    token_representation_loss,
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
from samd_common.losses.mined import MinEDLoss, MinEDParams, mined_hidden_loss, token_distance
from samd_common.losses.mrl import MRLLoss, MRLParams, SAMDMRLLoss, SAMDMRLParams, mrl_loss
from samd_common.losses.samd import (
    SAMDLoss,
    SAMDParams,
    span_attention_cka_loss,
    span_group_hidden_loss,
)
from samd_common.losses.simcse import SimCSELoss

__all__ = [
    "DSKDLoss",
    "DSKDParams",
    "cross_model_attention",
    "dual_space_losses",
    "orthogonality_penalty",
    "token_representation_loss",
    "ESELoss",
    "ESEParams",
    "MRLLoss",
    "MRLParams",
    "SAMDMRLLoss",
    "SAMDMRLParams",
    "compression_loss",
    "espresso_layer_loss",
    "espresso_loss",
    "layer_weight",
    "mrl_loss",
    "pca_target",
    "sample_layer",
    "similarity_kl",
    "SimCSELoss",
    "MRD_DIMS",
    "SAMDLoss",
    "SAMDParams",
    "coverage_confidence",
    "halving_dims",
    "info_nce",
    "inverse_sqrt_weights",
    "linear_cka",
    "linear_ramp",
    "matryoshka_distillation_loss",
    "matryoshka_info_nce",
    "mrd_dims",
    "row_normalize",
    "span_attention_cka_loss",
    "span_group_hidden_loss",
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
    "MinEDLoss",
    "MinEDParams",
    "mined_hidden_loss",
    "token_distance",
]
