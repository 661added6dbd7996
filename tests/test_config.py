"""make_config: presets, precedence (explicit > environment > preset) and clear errors."""

from __future__ import annotations

import pytest

from samd_common.config import PRESETS
from samd_common.experiment import make_config
from samd_common.skd.run import SKD_PRESETS, make_skd_config


def test_cpu_bench_preset_scores_every_seed_on_the_same_eval_rows():
    cfgs = [make_config("SAMD", preset="cpu-bench", seed=s) for s in (0, 1, 2)]
    assert [c.train.seed for c in cfgs] == [0, 1, 2]
    assert {c.eval.seed for c in cfgs} == {0}
    c = cfgs[0]
    assert (c.teacher, c.student, c.max_texts, c.train.epochs, c.train.batch_size) == (
        "embeddinggemma-300m",
        "minilm-l6",
        3600,  # 600 per in-domain source (six sources)
        1,
        32,
    )
    assert (c.eval.max_train, c.eval.max_test) == (1000, 1000)
    assert make_config("SAMD", preset="demo", seed=3).eval.seed == 3  # other presets follow it
    assert "cpu-bench" in SKD_PRESETS  # `run_experiments --methods all` covers SKD too


def test_explicit_arguments_beat_environment_beat_preset(monkeypatch):
    monkeypatch.setenv("SAMD_TRAIN_CSV", "/env/corpus.csv")
    monkeypatch.setenv("SAMD_EVAL_DIR", "/env/eval")
    cfg = make_config("MinED", preset="demo")
    assert (cfg.train_csv, cfg.eval_dir) == ("/env/corpus.csv", "/env/eval")
    assert cfg.train.lr == PRESETS["demo"]["lr"]
    cfg = make_config("MinED", preset="demo", train_csv="/arg.csv", lr=1e-4, max_test=7)
    assert (cfg.train_csv, cfg.train.lr, cfg.eval.max_test) == ("/arg.csv", 1e-4, 7)
    assert make_config("MinED", preset="smoke").train_csv is None  # smoke ignores the env


def test_output_dir_resolves_alike_in_make_config_and_make_skd_config(monkeypatch):
    monkeypatch.setenv("SAMD_OUTPUT_DIR", "/env/out")
    assert make_config("MinED", preset="demo").output_dir == "/env/out"
    assert make_config("MinED", preset="smoke").output_dir == "outputs"  # smoke ignores the env
    assert make_skd_config(preset="smoke").output_dir == "/env/out"  # SKD smoke reads it
    assert make_skd_config(preset="smoke", output_dir="/arg").output_dir == "/arg"
    monkeypatch.delenv("SAMD_OUTPUT_DIR")
    assert make_skd_config(preset="smoke").output_dir == "outputs"


def test_bad_preset_or_setting_says_what_is_allowed():
    with pytest.raises(ValueError, match="cpu-bench"):
        make_config("SAMD", preset="paper")
    with pytest.raises(ValueError, match="Unknown setting"):
        make_config("SAMD", preset="demo", warmup_fraction_typo=0.1)
