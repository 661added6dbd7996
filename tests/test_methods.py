"""The methods registry: entries are data, one build() constructs every one of them."""

from __future__ import annotations

import copy
import inspect
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from samd_common.data.demo import synthetic_sentences
from samd_common.losses import Objective, Params
from samd_common.methods import METHODS, MethodSpec, TeacherInfo, build, get_method
from samd_common.models import load_encoder
from samd_common.skd.senses import SenseTable, tokenizer_fingerprint
from samd_common.training.batching import DistillDataset
from samd_common.training.loop import TrainConfig, train
from samd_common.training.teacher_cache import build_teacher_cache

REPO = Path(__file__).resolve().parents[1]
# Log keys of one step at progress 0 with the default parameters (the training loop's contract).
LOG_KEYS = {
    "SAMD": {"loss", "span", "unif"},
    "SAMD-MRL": {"loss", "task", "sim", "resim", "span"},
    "MRL": {"loss"},
    "ESE": {"loss", "last", "last_compress", "layer", "layer_index", "layer_weight"},
    "MinED": {"loss", "task", "kd", "pairs"},
    "CDM": {"loss", "task", "kd", "steps"},
    "EMO": {"loss", "task", "kd", "cka", "ot"},
    "DSKD": {"loss", "task", "t2s", "s2t", "orth"},
    "SKD": {"loss", "sense", "pairs", "sense_acc"},
    "EmbedDistill": {"loss", "kd"},
    "Relational": {"loss", "sim", "resim"},
}


@pytest.fixture(scope="module")
def setting(tiny_dirs, tmp_path_factory):
    """Tiny student, a teacher cache of 8 texts, its TeacherInfo and a sense dictionary."""
    work = tmp_path_factory.mktemp("registry")
    texts = synthetic_sentences(8, seed=1)
    teacher = load_encoder(str(tiny_dirs["teacher"]), device="cpu", attn_implementation="eager")
    student = load_encoder(str(tiny_dirs["student"]), device="cpu", attn_implementation="eager")
    cache = build_teacher_cache(teacher, texts, 32, cache_dir=work / "cache", show_progress=False)
    info = TeacherInfo.from_cache("tiny-teacher", cache)
    ids = teacher.tokenize(texts)["input_ids"].unique()[:12].tolist()  # some teacher tokens
    g = np.random.default_rng(0)
    senses = {int(v): g.standard_normal((2, cache.hidden_dim)) for v in ids}
    meta = {"kind": "senses", "tokenizer": tokenizer_fingerprint(teacher.tokenizer)}
    SenseTable.from_dict(senses, meta=meta, dtype=np.float32).save(work / "senses")
    return student, texts, cache, info, str(work / "senses")


def test_entries_are_named_by_their_notebooks_and_complete():
    notebooks = {p.stem for p in [*REPO.glob("CTKD/*.ipynb"), *REPO.glob("MRL/*.ipynb")]}
    assert set(METHODS) == notebooks
    for key, spec in METHODS.items():
        assert spec.name == key and spec.family in ("ctkd", "mrl")
        assert spec.paper and spec.summary and spec.citation.startswith("@")
        assert issubclass(spec.objective, Objective) and issubclass(spec.params_class, Params)
        assert spec.needs_teacher is bool(spec.teacher_widths)
        takes = inspect.signature(spec.objective).parameters
        teacher_fields = {f.name for f in fields(TeacherInfo)} | {"head"}  # head: lazy
        for arg, name in spec.teacher_widths.items():
            assert arg in takes and name in teacher_fields, (key, arg, name)
        spec.params_class.from_dict(spec.defaults)  # the defaults are valid parameters


def test_get_method_is_case_insensitive_and_suggests_the_closest_name():
    assert get_method("samd-mrl") is METHODS["SAMD-MRL"]
    with pytest.raises(KeyError, match="Did you mean 'MinED'"):
        get_method("MinDE")


@pytest.mark.parametrize("name", list(METHODS))
def test_params_reject_typos_with_the_closest_name(name):
    params = METHODS[name].params_class
    first = fields(params)[0].name
    with pytest.raises(ValueError, match=f"Did you mean {first!r}"):
        params.from_dict({first + "x": 1})


@pytest.mark.parametrize("name", list(METHODS))
def test_every_entry_builds_and_trains_one_step(setting, name):
    student, texts, cache, info, senses = setting
    spec = get_method(name)
    params = {**spec.defaults, **({"dictionary": senses} if name == "SKD" else {})}
    method = spec.build(copy.deepcopy(student), info, params)
    assert isinstance(method, spec.objective) and isinstance(method.params, spec.params_class)
    data = DistillDataset(texts, student.tokenizer, 32, "", cache, maps=spec.maps)
    loss, logs = method(data.collate([data[i] for i in range(4)]), step=0, total_steps=10)
    loss.backward()
    assert torch.isfinite(loss) and set(logs) == LOG_KEYS[name]
    assert all(isinstance(v, float) and math.isfinite(v) for v in logs.values())
    if name == "SKD":
        assert logs["pairs"] > 0  # the dictionary's teacher tokens are in the texts


def test_samd_lstsq_head_is_fit_by_train_on_the_real_collator(setting):
    """``head_init="lstsq"`` through ``train``: the warm start reads the real collator's batches
    and lowers the first step's span term below the randomly initialised head's."""
    student, texts, cache, info, _ = setting
    data = DistillDataset(texts, student.tokenizer, 32, "", cache)
    cfg = TrainConfig(max_steps=1, batch_size=4, lr=1e-12, proj_lr=1e-12, show_progress=False)
    first = {}
    for init in ("random", "lstsq"):
        method = build(METHODS["SAMD"], copy.deepcopy(student), info, {"head_init": init})
        first[init] = train(method, data, cfg, collate_fn=data.collate).steps[0]["span"]
    assert first["lstsq"] < 0.5 * first["random"]


@pytest.mark.parametrize("name", [n for n, s in METHODS.items() if s.needs_teacher])
def test_teacher_methods_need_a_teacher(setting, name):
    with pytest.raises(ValueError, match=f"{name} needs a teacher"):
        build(METHODS[name], setting[0], None, {})


def test_build_passes_the_teacher_widths_the_entry_names(setting):
    student, *_ = setting
    info = TeacherInfo("t", dim=40, hidden_dim=24, layers=2, embed_dim=16)
    samd = build(METHODS["SAMD"], copy.deepcopy(student), info, {"lambda_point": 1.0})
    assert samd.target == "projection" and samd.proj.out_features == 40  # D_s → D_t
    assert build(METHODS["SAMD"], copy.deepcopy(student), info, {}).proj is None  # L_point off
    assert samd.span_head.out_features == 24 and samd.teacher_layers == 2
    wide = TeacherInfo("t", 64, 24, 2, matryoshka_dims=(64, 16), pooled_mean=(0.5,) * 64)
    wide_samd = build(METHODS["SAMD"], copy.deepcopy(student), wide, {})
    assert wide_samd.target == "prefix" and wide_samd.teacher_mean.tolist() == [0.5] * 64
    dskd = build(METHODS["DSKD"], copy.deepcopy(student), info, {})
    assert dskd.query.out_features == 16 and dskd.t2s.in_features == 24
    assert build(METHODS["MRL"], copy.deepcopy(student), None, {}).dims[0] == student.dim


def test_teacher_info_carries_the_corpus_mean_of_the_cached_embeddings(setting):
    student, texts, cache, info, _ = setting
    pooled = np.asarray(cache.arrays["pooled"], dtype=np.float64)  # (N, D_t)
    assert len(info.pooled_mean) == cache.dim == pooled.shape[1] and len(pooled) == len(texts)
    assert np.allclose(info.pooled_mean, pooled.mean(0))
    samd = build(METHODS["SAMD"], copy.deepcopy(student), info, {})  # the registry passes it on
    assert np.allclose(samd.teacher_mean.numpy(), pooled.mean(0), atol=1e-6)
    hidden = np.asarray(cache.arrays["hidden"], dtype=np.float64)  # (N_tok, H_t), < the cap
    content = hidden[np.asarray(cache.arrays["real"], bool)]
    assert 0 < len(content) < len(hidden)  # special tokens are left out
    assert info.hidden_var == pytest.approx(content.var(0).mean(), rel=1e-4)
    assert samd.teacher_hidden_var == pytest.approx(info.hidden_var)


def test_a_spec_is_plain_data():
    spec = METHODS["MinED"]
    clone = MethodSpec(**{f.name: getattr(spec, f.name) for f in fields(MethodSpec)})
    assert clone == spec and clone.teacher_widths == {"teacher_hidden_dim": "hidden_dim"}


def test_teacher_info_reads_the_dense_head_on_first_use_only(setting, monkeypatch):
    _, _, cache, _, _ = setting
    calls = []
    w = torch.randn(8, 4)
    monkeypatch.setattr("samd_common.methods.linear_head", lambda name: calls.append(name) or w)
    info = TeacherInfo.from_cache("tiny-teacher", cache)
    assert calls == []  # building the info (every run) does not read the model folder
    assert info.head is w and info.head is w and calls == ["tiny-teacher"]  # once, then kept
    assert TeacherInfo("", 4, 4, 1).head is None  # no name: nothing to read
