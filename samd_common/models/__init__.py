"""The model table and one sentence encoder for every teacher and student.

``MODELS`` holds the per-model settings (pooling, prompt, dense head, padding side, dtype;
:mod:`~samd_common.models.table`). ``load_encoder(name_or_path)`` accepts a short name (resolved
to a provisioned directory), a Hugging Face id or a local directory, and returns a
``SentenceEncoder`` (:mod:`~samd_common.models.encoder`) whose ``forward`` is used for training
and whose ``encode`` is used for evaluation, with the *same* pooling in both; ``save_encoder``
writes it back (:mod:`~samd_common.models.io`).
"""

from __future__ import annotations

from samd_common.models.encoder import DEPTH_TRUNCATABLE, SentenceEncoder, transformer_layers
from samd_common.models.io import load_encoder, save_encoder
from samd_common.models.table import (
    MODELS,
    ModelSpec,
    pick_dtype,
    resolve_model,
    spec_from_directory,
)

__all__ = [
    "DEPTH_TRUNCATABLE",
    "MODELS",
    "ModelSpec",
    "SentenceEncoder",
    "load_encoder",
    "pick_dtype",
    "resolve_model",
    "save_encoder",
    "spec_from_directory",
    "transformer_layers",
]
