"""The tiny test models are reproducible: same bytes on every build, no global RNG side effect."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from samd_common.experiment import make_config, run_experiment
from samd_common.models.tiny import (
    RECIPE,
    build_tiny_pair,
    unigram_vocab,
    wordpiece_vocab,
)

FILES = ("tokenizer.json", "tokenizer_config.json", "config.json", "model.safetensors")


def _bytes(paths) -> dict[str, bytes]:
    return {f"{role}/{f}": (p / f).read_bytes() for role, p in paths.items() for f in FILES}


def _rng_state():
    return random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone()


def test_two_builds_write_identical_files_and_leave_global_rng_alone(tmp_path):
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    before = _rng_state()
    first = _bytes(build_tiny_pair(tmp_path / "a"))
    second = _bytes(build_tiny_pair(tmp_path / "b"))
    after = _rng_state()
    assert first == second
    assert before[0] == after[0]
    assert np.array_equal(before[1], after[1])
    assert torch.equal(before[2], after[2])


def test_a_build_in_another_process_writes_the_same_bytes(tmp_path, tiny_dirs):
    """Rust hash maps are seeded per process: the old trainer-based vocabularies differed here."""
    code = "import sys; from samd_common.models.tiny import build_tiny_pair as b; b(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True)
    fresh = {role: tmp_path / f"tiny-{role}" for role in tiny_dirs}
    assert _bytes(fresh) == _bytes(tiny_dirs)


def test_built_pair_records_its_recipe_and_is_reused(tmp_path):
    paths = build_tiny_pair(tmp_path)
    meta = json.loads((paths["student"] / "samd_model.json").read_text())
    assert meta["tiny_recipe"] == RECIPE and meta["pooling"] == "mean"
    stamp = (paths["teacher"] / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_pair(tmp_path) == paths
    assert (paths["teacher"] / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_old_recipe_is_reused_with_a_warning(tmp_path, caplog):
    paths = build_tiny_pair(tmp_path)
    meta_path = paths["student"] / "samd_model.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("tiny_recipe")
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level("WARNING"):
        assert build_tiny_pair(tmp_path) == paths
    assert "older recipe" in caplog.text and "tiny-student" in caplog.text


def test_half_written_folder_from_an_old_build_is_rebuilt(tmp_path):
    (tmp_path / "tiny-student").mkdir()
    (tmp_path / "tiny-student" / "config.json").write_text("{}")
    paths = build_tiny_pair(tmp_path)
    assert (paths["student"] / "samd_model.json").is_file()


@pytest.mark.parametrize("order", [["b", "a", "c"], ["c", "b", "a"]])
def test_vocabularies_do_not_depend_on_word_order(order):
    counts = {"a": 3, "b": 3, "c": 1}
    words = Counter({f"{w}{w}x{w}": counts[w] for w in order})
    ref = Counter({f"{w}{w}x{w}": counts[w] for w in "abc"})
    assert wordpiece_vocab(words, 40, ["[UNK]"]) == wordpiece_vocab(ref, 40, ["[UNK]"])
    assert unigram_vocab(words, 40, ["<unk>"]) == unigram_vocab(ref, 40, ["<unk>"])


def test_wordpiece_vocab_merges_most_frequent_pair_first_ties_by_text():
    vocab = wordpiece_vocab(Counter({"ab": 2, "cd": 2, "ef": 1}), 100, ["[UNK]"])
    alphabet = ["##b", "##d", "##f", "a", "c", "e"]
    assert vocab == ["[UNK]", *alphabet, "ab", "cd", "ef"]


def test_smoke_run_is_the_same_on_a_fresh_and_on_a_warm_cache(tmp_path, monkeypatch):
    """Issue 17: the smoke preset gave 80.01, then 77.66 after the cache was rebuilt."""
    build_tiny_pair(tmp_path / "warm" / "tiny")  # built ahead, as by an earlier run
    metrics = {}
    for cache in ("fresh", "warm"):  # "fresh": the run builds the pair itself, in-process
        monkeypatch.setenv("SAMD_CACHE_DIR", str(tmp_path / cache))
        cfg = make_config("SAMD", preset="smoke", output_dir=str(tmp_path / f"out-{cache}"))
        record = run_experiment(cfg)
        metrics[cache] = (record.metrics_before, record.metrics)
    assert (tmp_path / "fresh" / "tiny" / "tiny-student" / "tokenizer.json").is_file()
    assert metrics["fresh"] == metrics["warm"]
