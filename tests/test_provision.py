"""Tests of provision + provision_recipes: registry, cache folder, atomic builds, real models."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import zipfile
from pathlib import Path

import pytest

from samd_common.models.table import MODELS
from samd_common.provision import install as prov
from samd_common.provision import recipes

REPO = Path(__file__).resolve().parents[1]
FAKE = recipes.OfflineModel("fake-model", "a fake for tests", "org/fake-model", "none", "1 kB", "x")


# ---------------------------------------------------------------- registry
def test_registry_is_consistent_with_builders_and_the_model_table():
    assert set(recipes.BUILDERS) == set(recipes.OFFLINE_MODELS)
    assert set(recipes.CHECKS) <= set(recipes.OFFLINE_MODELS)
    assert set(recipes.DEFAULT_MODELS) <= set(recipes.OFFLINE_MODELS)
    hf_ids = [m.hf_id for m in recipes.OFFLINE_MODELS.values()]
    assert len(set(hf_ids)) == len(hf_ids)
    for name, model in recipes.OFFLINE_MODELS.items():
        assert model.name == name and recipes.get_model(name) is model
        # a provisioned folder stands in for the same Hub model the table would load online
        assert MODELS[name].hf_id == model.hf_id
        with pytest.raises(dataclasses.FrozenInstanceError):
            model.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("call", [recipes.get_model, prov.provisioned_path, prov.provision])
def test_unknown_name_suggests(call, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMD_CACHE_DIR", str(tmp_path))
    with pytest.raises(KeyError, match="did you mean 'minilm-l6'"):
        call("minilm-l7")
    with pytest.raises(KeyError, match="unknown model 'zzz'"):
        call("zzz")
    assert not (tmp_path / "models").exists()


def test_provision_all_checks_names_first(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMD_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(recipes.OFFLINE_MODELS, FAKE.name, FAKE)
    monkeypatch.setitem(recipes.BUILDERS, FAKE.name, lambda out, scratch: pytest.fail("built"))
    with pytest.raises(KeyError, match="gemma"):
        prov.provision_all([FAKE.name, "embeddingemma"])


# ---------------------------------------------------------------- cache folder
def test_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMD_CACHE_DIR", str(tmp_path / "root"))
    assert prov.cache_dir() == tmp_path / "root" / "models"


def test_cache_dir_default(tmp_path, monkeypatch):
    monkeypatch.delenv("SAMD_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert prov.cache_dir() == tmp_path / ".cache" / "samd" / "models"


# ---------------------------------------------------------------- atomic / idempotent
@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Register a fake model whose build writes two files; returns the list of build calls."""
    monkeypatch.setenv("SAMD_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(recipes.OFFLINE_MODELS, FAKE.name, FAKE)
    monkeypatch.setitem(recipes.CHECKS, FAKE.name, lambda path: None)
    calls: list[Path] = []

    def build(out: Path, scratch: Path) -> str:
        calls.append(out)
        assert out.parent == scratch.parent == prov.cache_dir()
        assert out.name.startswith(".fake-model.partial-")
        (scratch / "download.bin").write_bytes(b"x" * 10)
        (out / "config.json").write_text(json.dumps({"build": len(calls)}))
        (out / prov.META_FILE).write_text(json.dumps({"pooling": "mean", "source": "builder"}))
        (out / "sub").mkdir()
        (out / "sub" / "weights.bin").write_bytes(b"w")
        return f"fake=={len(calls)}"

    monkeypatch.setitem(recipes.BUILDERS, FAKE.name, build)
    return calls


def _leftovers() -> list[str]:
    return sorted(
        p.name
        for p in prov.cache_dir().iterdir()
        if p.name.startswith(".") and not p.name.endswith(".lock")
    )


def test_provision_builds_once(fake):
    assert prov.provisioned_path(FAKE.name) is None
    path = prov.provision(FAKE.name)
    assert path == prov.cache_dir() / FAKE.name
    assert prov.provisioned_path(FAKE.name) == path
    assert (path / prov.MARKER).is_file() and (path / "sub" / "weights.bin").is_file()
    meta = json.loads((path / prov.META_FILE).read_text())
    assert meta["short_name"] == FAKE.name and meta["hf_id"] == FAKE.hf_id
    assert meta["source"] == "fake==1" and meta["has_sentence_transformers_config"] is False
    assert meta["pooling"] == "mean"  # keys written by the builder are kept
    assert prov.provision(FAKE.name) == path  # idempotent: no second build
    assert len(fake) == 1 and _leftovers() == []
    assert prov.dir_size(path) > 0


def test_force_rebuilds_and_replaces(fake):
    path = prov.provision(FAKE.name)
    (path / "stale.txt").write_text("old")
    assert prov.provision(FAKE.name, force=True) == path
    assert len(fake) == 2 and not (path / "stale.txt").exists()
    assert json.loads((path / "config.json").read_text()) == {"build": 2}
    assert _leftovers() == []


def test_interrupted_build_leaves_nothing_complete(fake, monkeypatch):
    good = recipes.BUILDERS[FAKE.name]

    def crash(out: Path, scratch: Path) -> str:
        good(out, scratch)
        raise KeyboardInterrupt  # e.g. Ctrl-C after files were written

    monkeypatch.setitem(recipes.BUILDERS, FAKE.name, crash)
    with pytest.raises(KeyboardInterrupt):
        prov.provision(FAKE.name)
    assert prov.provisioned_path(FAKE.name) is None
    assert not (prov.cache_dir() / FAKE.name).exists() and _leftovers() == []
    monkeypatch.setitem(recipes.BUILDERS, FAKE.name, good)
    assert prov.provision(FAKE.name) == prov.provisioned_path(FAKE.name)


def test_failed_check_leaves_nothing(fake, monkeypatch):
    def bad_check(path: Path) -> None:
        assert (path / "config.json").is_file() and not (path / prov.MARKER).exists()
        raise RuntimeError("does not load")

    monkeypatch.setitem(recipes.CHECKS, FAKE.name, bad_check)
    with pytest.raises(RuntimeError, match="does not load"):
        prov.provision(FAKE.name)
    assert prov.provisioned_path(FAKE.name) is None and _leftovers() == []


def test_killed_run_leftovers_and_incomplete_dir(fake):
    root = prov.cache_dir()
    (root / ".fake-model.partial-dead" / "sub").mkdir(parents=True)  # hard-killed earlier run
    (root / ".fake-model.partial-dead" / prov.MARKER).write_text("")
    (root / FAKE.name).mkdir()  # a folder without marker is not provisioned
    (root / FAKE.name / "junk").write_text("")
    assert prov.provisioned_path(FAKE.name) is None
    path = prov.provision(FAKE.name)
    assert not (path / "junk").exists() and _leftovers() == [] and len(fake) == 1


# ---------------------------------------------------------------- helpers
def test_join_and_extract(tmp_path):
    buf = tmp_path / "model.zip"
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("model_download/config.json", "{}")
        zf.writestr("model_download/2_Dense/config.json", '{"in_features": 8}')
        zf.writestr("model_download/desktop.ini", "junk")
        zf.writestr("other/readme.txt", "outside the model folder")
    data = buf.read_bytes()
    parts = []
    for i, start in enumerate(range(0, len(data), 100)):
        parts.append(tmp_path / f"model.zip.{i + 1:03d}")
        parts[-1].write_bytes(data[start : start + 100])
    joined = tmp_path / "joined.zip"
    recipes._join(parts, joined)
    assert joined.read_bytes() == data
    out = tmp_path / "out"
    out.mkdir()
    recipes._extract_model_dir(joined, out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "2_Dense/config.json",
        "config.json",
    ]


def test_extract_rejects_unsafe_paths(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("../evil.txt", "x")
    (tmp_path / "out").mkdir()
    with pytest.raises(RuntimeError, match="unsafe"):
        recipes._extract_model_dir(bad, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


# ---------------------------------------------------------------- CLI
def _cli():
    spec = importlib.util.spec_from_file_location(
        "offline_models", REPO / "scripts" / "offline_models.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli(fake, tmp_path, capsys):
    cli = _cli()
    assert cli.main(["--cache-dir", str(tmp_path), FAKE.name]) == 0
    assert capsys.readouterr().out == f"{FAKE.name}\t{tmp_path / 'models' / FAKE.name}\n"
    assert cli.main(["--list"]) == 0
    assert f"{FAKE.name}\t{tmp_path / 'models' / FAKE.name}\t" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        cli.main(["mpnet"])
    assert err.value.code == 2 and "did you mean 'mpnet-base'" in capsys.readouterr().err
    assert len(fake) == 1


# ---------------------------------------------------------------- real models
SENTENCE = "A man is playing a guitar."
REAL = {
    "minilm-l6": 384,
    "minilm-l3": 384,
    "e5-small": 384,
    "embeddinggemma-300m": 768,
    "mpnet-base": 768,
}
BIG = {"embeddinggemma-300m", "mpnet-base"}  # not provisioned by `make test`: slow tier


def _tiered(*names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in names]


def _real(name: str) -> Path:
    path = prov.provisioned_path(name)
    if path is None:
        pytest.skip(
            f"{name} is not provisioned in {prov.cache_dir()}: run "
            f"`python scripts/offline_models.py {name}` first"
        )
    return path


@pytest.mark.realmodels
@pytest.mark.parametrize("name", _tiered(*REAL))
def test_real_model_loads(name, monkeypatch):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path = _real(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    meta = json.loads((path / prov.META_FILE).read_text())
    assert meta["short_name"] == name and meta["hf_id"] == recipes.OFFLINE_MODELS[name].hf_id
    tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    assert model.config.hidden_size == REAL[name]
    with torch.inference_mode():
        hidden = model(**tok([SENTENCE], return_tensors="pt")).last_hidden_state
    assert hidden.shape[-1] == REAL[name] and hidden.dtype == torch.float32


@pytest.mark.realmodels
@pytest.mark.parametrize(
    ("name", "prompt"),
    [
        ("minilm-l6", None),
        ("minilm-l3", None),
        pytest.param("mpnet-base", None, marks=pytest.mark.slow),
        pytest.param(
            "embeddinggemma-300m", "task: sentence similarity | query: ", marks=pytest.mark.slow
        ),
    ],
)
def test_real_sentence_transformers(name, prompt, monkeypatch):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    path = _real(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = st.SentenceTransformer(
        str(path), device="cpu", local_files_only=True, model_kwargs={"dtype": torch.float32}
    )  # Gemma: never fp16
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    emb = model.encode(
        [SENTENCE, "Someone plays a guitar.", "Stocks fell sharply."],
        prompt=prompt,
        convert_to_tensor=True,
    )
    assert emb.shape == (3, REAL[name])
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-4)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


@pytest.mark.realmodels
@pytest.mark.slow
def test_real_gemma_layout():
    path = _real("embeddinggemma-300m")
    modules = json.loads((path / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling", "2_Dense", "3_Dense", "4_Normalize"]
    d2 = json.loads((path / "2_Dense" / "config.json").read_text())
    d3 = json.loads((path / "3_Dense" / "config.json").read_text())
    assert (d2["in_features"], d2["out_features"], d3["in_features"], d3["out_features"]) == (
        768,
        3072,
        3072,
        768,
    )
    assert d2["bias"] is False and d3["bias"] is False
    prompts = json.loads((path / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts["STS"] == "task: sentence similarity | query: "


# ---------------------------------------------------------------- minilm-l3 (cut layers)
def test_truncate_bert_keeps_the_first_layers_exactly(tiny_dirs, tmp_path):
    import numpy as np

    from samd_common.models import load_encoder

    src, out = tiny_dirs["student"], tmp_path / "cut"
    recipes.truncate_bert(src, out, 1)
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
    assert (out / "tokenizer.json").read_bytes() == (src / "tokenizer.json").read_bytes()
    full, cut = load_encoder(str(src), device="cpu"), load_encoder(str(out), device="cpu")
    texts = ["a tiny test sentence", "another one, longer than the first"]
    assert cut.num_layers == 1
    np.testing.assert_allclose(cut.encode(texts), full.encode(texts, num_layers=1), atol=1e-6)
    with pytest.raises(ValueError, match="cannot keep 2 of 2 layers"):
        recipes.truncate_bert(src, tmp_path / "same", 2)


def test_a_model_without_a_hub_copy_must_be_provisioned(tmp_path, monkeypatch):
    from samd_common.models.table import resolve_model

    monkeypatch.setenv("SAMD_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert not recipes.OFFLINE_MODELS["minilm-l3"].on_hub
    with pytest.raises(FileNotFoundError, match="no Hub copy.*offline_models.py minilm-l3"):
        resolve_model("minilm-l3")
    assert resolve_model("minilm-l6")[1] == MODELS["minilm-l6"].hf_id  # online: the Hub id


@pytest.mark.realmodels
def test_real_minilm_l3_is_minilm_l6_cut_to_three_layers(tmp_path, monkeypatch, real_eval_dir):
    np = pytest.importorskip("numpy")
    st = pytest.importorskip("sentence_transformers")
    from samd_common.config import EvalConfig
    from samd_common.data.tasks import load_tasks
    from samd_common.evaluation.suite import evaluate_suite
    from samd_common.models import load_encoder, save_encoder

    _real("minilm-l3"), _real("minilm-l6")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    l3, l6 = load_encoder("minilm-l3", device="cpu"), load_encoder("minilm-l6", device="cpu")
    assert (l3.num_layers, l6.num_layers, l3.dim, l3.spec.name) == (3, 6, 384, "minilm-l3")
    assert l3.tokenizer.get_vocab() == l6.tokenizer.get_vocab()  # the same WordPiece tokenizer
    texts = [SENTENCE, "Someone plays a guitar.", "Stocks fell sharply."]
    emb = l3.encode(texts)
    np.testing.assert_allclose(emb, l6.encode(texts, num_layers=3), atol=1e-5)
    saved = st.SentenceTransformer(str(save_encoder(l3, tmp_path / "student")), device="cpu")
    np.testing.assert_allclose(saved.encode(texts), emb, atol=1e-5)
    # its undistilled evaluation goes through the suite like any student's
    stsb = load_tasks(["stsb"], real_eval_dir)
    result = evaluate_suite(l3, stsb, [384, 64], EvalConfig(max_test=200))
    assert 50 < result.metrics["stsb/spearman@384"] < 95
