from __future__ import annotations

import json
from unittest.mock import patch

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModel

from samd_common.models import (
    ModelSpec,
    load_encoder,
    pick_dtype,
    resolve_model,
    save_encoder,
    spec_from_directory,
)
from samd_common.models.io import _load_dense_head, linear_head
from samd_common.models.pooling import cls_pool, embed_token_pool, last_token_pool, mean_pool, pool


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_last_token_pool_left_and_right_padding():
    hidden = torch.arange(12.0).view(2, 3, 2)  # (B=2, T=3, D=2)
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(last_token_pool(hidden, right), hidden[[0, 1], [1, 2]])
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert torch.equal(last_token_pool(hidden, left), hidden[:, -1])


def test_cls_and_embed_token_pool():
    hidden = torch.arange(12.0).view(2, 3, 2)
    mask = torch.ones(2, 3, dtype=torch.long)
    ids = torch.tensor([[5, 9, 7], [9, 1, 1]])
    assert torch.equal(cls_pool(hidden, mask), hidden[:, 0])
    out = embed_token_pool(hidden, mask, input_ids=ids, embed_token_id=9)
    assert torch.equal(out, hidden[[0, 1], [1, 0]])


def test_unknown_pooling_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown pooling 'max'"):
        pool("max", torch.zeros(1, 2, 3), torch.ones(1, 2))


def test_unknown_short_name_suggests():
    with pytest.raises(KeyError, match="Did you mean 'minilm-l6'"):
        resolve_model("minilm-l7")


def test_offline_unprovisioned_short_name_says_how_to_provision(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMD_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="offline_models.py e5-small"):
        resolve_model("e5-small")


def test_fp16_forbidden_for_embeddinggemma():
    spec = ModelSpec("g", "g", dtype="float16", allow_fp16=False)
    with pytest.raises(ValueError, match="must not run in fp16"):
        pick_dtype(spec, torch.device("cpu"))
    assert pick_dtype(ModelSpec("x", "x"), torch.device("cpu")) == torch.float32


def test_tiny_encoder_forward_matches_encode(tiny_dirs):
    enc = load_encoder(str(tiny_dirs["teacher"]), device="cpu", attn_implementation="eager")
    texts = ["A man is playing a guitar.", "東京 café 😊 at 10:30", "short"]
    batch = enc.tokenize(texts)
    with torch.no_grad():
        out = enc(**batch, output_attentions=True, output_hidden_states=True)
    assert out["token_embeddings"].shape[:2] == batch["input_ids"].shape
    assert out["sentence_embedding"].shape == (3, 48)
    assert len(out["attentions"]) == 3 and len(out["hidden_states"]) == 4
    expected = torch.nn.functional.normalize(out["sentence_embedding"], dim=-1).numpy()
    np.testing.assert_allclose(enc.encode(texts, batch_size=2), expected, atol=1e-5)


def test_dense_head_is_read_from_sentence_transformers_layout(tmp_path):
    (tmp_path / "2_Dense").mkdir()
    cfg = {
        "in_features": 4,
        "out_features": 6,
        "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
    }
    (tmp_path / "2_Dense" / "config.json").write_text(json.dumps(cfg))
    weight = torch.randn(6, 4)
    save_file({"linear.weight": weight}, tmp_path / "2_Dense" / "model.safetensors")
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    head = _load_dense_head(tmp_path)
    x = torch.randn(2, 4)
    assert torch.allclose(head(x), x @ weight.T)
    assert spec_from_directory(tmp_path).dense is True


def test_linear_head_composes_the_dense_layers_and_refuses_a_bias(tmp_path):
    """``linear_head``: W = W_2·W_1 for bias-free identity Dense layers; None with a bias."""
    weights = [torch.randn(6, 4), torch.randn(3, 6)]
    modules = [{"idx": 0, "name": "0", "path": "", "type": "Transformer"}]
    for i, w in enumerate(weights):
        folder = tmp_path / f"{i + 2}_Dense"
        folder.mkdir()
        cfg = {"in_features": w.shape[1], "out_features": w.shape[0], "bias": False}
        (folder / "config.json").write_text(json.dumps(cfg))
        save_file({"linear.weight": w}, folder / "model.safetensors")
        modules.append({"idx": i + 1, "name": str(i + 1), "path": folder.name, "type": "Dense"})
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "config.json").write_text("{}")
    found = (spec_from_directory(tmp_path), str(tmp_path))  # what resolve_model would return
    with patch("samd_common.models.io.resolve_model", return_value=found):
        torch.testing.assert_close(linear_head("teacher"), weights[1] @ weights[0])
        cfg = {"in_features": 4, "out_features": 6, "bias": True}
        (tmp_path / "2_Dense" / "config.json").write_text(json.dumps(cfg))
        save_file(
            {"linear.weight": weights[0], "linear.bias": torch.zeros(6)},
            tmp_path / "2_Dense" / "model.safetensors",
        )
        assert linear_head("teacher") is None  # affine: not one matrix
    assert linear_head("no-such-model") is None


def test_saved_student_loads_in_transformers_and_sentence_transformers(tiny_dirs, tmp_path):
    enc = load_encoder(str(tiny_dirs["student"]), device="cpu")
    texts = ["A man is playing a guitar.", "東京 café"]
    path = save_encoder(enc, tmp_path / "student")
    assert AutoModel.from_pretrained(path).config.hidden_size == 32
    reloaded = load_encoder(str(path), device="cpu")
    assert reloaded.spec.pooling == "mean"
    np.testing.assert_allclose(reloaded.encode(texts), enc.encode(texts), atol=1e-6)
    st = pytest.importorskip("sentence_transformers", reason="pip install -e '.[dev]'")
    ref = st.SentenceTransformer(str(path), device="cpu").encode(texts)
    np.testing.assert_allclose(ref, enc.encode(texts), atol=1e-5)
