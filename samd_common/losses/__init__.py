"""Loss functions: shared building blocks (``common``) and one module per method family."""

from __future__ import annotations

from samd_common.losses.common import (
    MRD_DIMS,
    coverage_confidence,
    halving_dims,
    info_nce,
    inverse_sqrt_weights,
    linear_cka,
    linear_ramp,
    matryoshka_distillation_loss,
    matryoshka_info_nce,
    mrd_dims,
    row_normalize,
)
from samd_common.losses.samd import (
    SAMDLoss,
    SAMDParams,
    span_attention_cka_loss,
    span_group_hidden_loss,
)
from samd_common.losses.simcse import SimCSELoss

__all__ = [
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
]
