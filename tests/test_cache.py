from __future__ import annotations

import numpy as np
import pytest
import torch

from samd_common.data.demo import synthetic_sentences
from samd_common.models import load_encoder
from samd_common.training.batching import DistillDataset
from samd_common.training.teacher_cache import build_teacher_cache

TEXTS = synthetic_sentences(20, seed=7)


@pytest.fixture()
def teacher(tiny_dirs):
    enc = load_encoder(str(tiny_dirs["teacher"]), device="cpu", attn_implementation="eager")
    enc.seen = []
    forward = enc.forward

    def spy(input_ids, attention_mask, **kw):
        enc.seen.append(int(input_ids.shape[0]))
        return forward(input_ids, attention_mask, **kw)

    enc.forward = spy
    return enc


def test_cache_matches_live_teacher(teacher, tmp_path):
    cache = build_teacher_cache(
        teacher, TEXTS, max_length=32, layers=2, cache_dir=tmp_path, show_progress=False
    )
    assert len(cache) == len(TEXTS) and cache.dim == 48
    item = cache.item(3)
    batch = teacher.tokenize([TEXTS[3]], max_length=32)
    with torch.no_grad():
        out = teacher(**batch, output_attentions=True)
    n = int(batch["attention_mask"].sum())
    assert np.array_equal(item["input_ids"], batch["input_ids"][0, :n].numpy())
    np.testing.assert_allclose(item["hidden"], out["token_embeddings"][0, :n], atol=2e-3)
    np.testing.assert_allclose(item["pooled"], out["sentence_embedding"][0], atol=1e-5)
    att = torch.stack(out["attentions"][-2:], 1).mean(2)[0]  # (L, T, T)
    np.testing.assert_allclose(item["attn"], att.numpy(), atol=1e-3)
    assert item["attn"].shape == (2, n, n)


def test_teacher_runs_once_per_text_across_methods_and_epochs(teacher, tiny_dirs, tmp_path):
    student = load_encoder(str(tiny_dirs["student"]), device="cpu")
    for _method in ("SAMD", "MinED"):  # two methods share one cache ...
        cache = build_teacher_cache(teacher, TEXTS, 32, cache_dir=tmp_path, show_progress=False)
        ds = DistillDataset(TEXTS, student.tokenizer, 32, cache=cache)
        for _epoch in range(2):  # ... over two epochs each
            for i in range(0, len(ds), 8):
                ds.collate([ds[j] for j in range(i, min(i + 8, len(ds)))])
    assert sum(teacher.seen) == len(TEXTS)


def test_changed_inputs_get_a_new_cache_and_partial_is_rebuilt(teacher, tmp_path):
    a = build_teacher_cache(teacher, TEXTS, 32, cache_dir=tmp_path, show_progress=False)
    b = build_teacher_cache(teacher, TEXTS, 24, cache_dir=tmp_path, show_progress=False)
    c = build_teacher_cache(teacher, TEXTS[:-1], 32, cache_dir=tmp_path, show_progress=False)
    assert len({a.root, b.root, c.root}) == 3
    with torch.no_grad():
        next(teacher.parameters()).add_(1.0)  # new weights → new key
    d = build_teacher_cache(teacher, TEXTS, 32, cache_dir=tmp_path, show_progress=False)
    assert d.root != a.root
    (d.root / "complete.json").unlink()  # simulate a build killed before its marker
    n = len(teacher.seen)
    e = build_teacher_cache(teacher, TEXTS, 32, cache_dir=tmp_path, show_progress=False)
    assert e.root == d.root and sum(teacher.seen[n:]) == len(TEXTS)


def test_collate_shapes_and_alignment(teacher, tiny_dirs, tmp_path):
    student = load_encoder(str(tiny_dirs["student"]), device="cpu")
    cache = build_teacher_cache(teacher, TEXTS, 32, cache_dir=tmp_path, show_progress=False)
    ds = DistillDataset(TEXTS, student.tokenizer, 32, cache=cache)
    batch = ds.collate([ds[i] for i in range(5)])
    b, ts = batch["input_ids"].shape
    tt = batch["t_input_ids"].shape[1]
    assert batch["overlap"].shape == (b, ts, tt) and batch["t_attn"].shape == (b, 1, tt, tt)
    assert batch["t_hidden"].shape == (b, tt, 48) and batch["t_pooled"].shape == (b, 48)
    # same untruncated text on both sides: every real token of either side overlaps some real
    # token of the other, never a padding position
    real, t_real = batch["s_real"], batch["t_real"]
    assert torch.all(batch["overlap"].sum(-1)[real] > 0)
    assert torch.all(batch["overlap"].sum(-1)[~real] == 0)
    assert torch.all(batch["overlap"].sum(1)[t_real] > 0)
    assert torch.all(batch["overlap"][~t_real.unsqueeze(1).expand(-1, ts, -1)] == 0)


def test_cache_corpus_mismatch_is_an_error(teacher, tiny_dirs, tmp_path):
    student = load_encoder(str(tiny_dirs["student"]), device="cpu")
    cache = build_teacher_cache(teacher, TEXTS, 32, cache_dir=tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="rebuild the cache"):
        DistillDataset(TEXTS[:5], student.tokenizer, 32, cache=cache)
