"""make_config: presets, precedence (explicit > environment > preset) and clear errors."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from samd_common.config import PRESETS, EvalConfig, MTEBConfig, Preset
from samd_common.experiment import make_config


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
    skd = make_config("SKD", preset="cpu-bench")  # `run_experiments --methods all` covers SKD
    assert (skd.teacher, skd.max_texts, skd.train.proj_lr) == ("embeddinggemma-300m", 600, 1e-3)


def test_explicit_arguments_beat_environment_beat_preset(monkeypatch):
    monkeypatch.setenv("SAMD_TRAIN_CSV", "/env/corpus.csv")
    monkeypatch.setenv("SAMD_EVAL_DIR", "/env/eval")
    cfg = make_config("MinED", preset="demo")
    assert (cfg.train_csv, cfg.eval_dir) == ("/env/corpus.csv", "/env/eval")
    assert cfg.train.lr == PRESETS["demo"].lr
    cfg = make_config("MinED", preset="demo", train_csv="/arg.csv", lr=1e-4, max_test=7)
    assert (cfg.train_csv, cfg.train.lr, cfg.eval.max_test) == ("/arg.csv", 1e-4, 7)
    assert make_config("MinED", preset="smoke").train_csv is None  # smoke ignores the env


def test_output_dir_resolves_alike_for_every_method(monkeypatch):
    monkeypatch.setenv("SAMD_OUTPUT_DIR", "/env/out")
    for method in ("MinED", "SKD"):
        assert make_config(method, preset="demo").output_dir == "/env/out"
        assert make_config(method, preset="smoke").output_dir == "outputs"  # smoke: no env
        assert make_config(method, preset="smoke", output_dir="/arg").output_dir == "/arg"


def test_bad_preset_or_setting_says_what_is_allowed():
    with pytest.raises(ValueError, match="cpu-bench"):
        make_config("SAMD", preset="paper")
    with pytest.raises(ValueError, match="Unknown setting"):
        make_config("SAMD", preset="demo", warmup_fraction_typo=0.1)


def test_skd_is_configured_like_every_method(monkeypatch):
    """One builder: SKD's preset values, MTEB protocol and pipeline parameters."""
    monkeypatch.setenv("SAMD_TRAIN_CSV", "/env/corpus.csv")  # the suite's corpus: not SKD's
    monkeypatch.setenv("SAMD_MTEB_DIR", "/env/mteb")
    cfg = make_config("SKD", preset="demo", tasks="2, 4", mode="sep", cluster="", jobs=2)
    assert isinstance(cfg.eval, MTEBConfig) and cfg.eval.splits == ("test",)
    assert cfg.eval.tasks == ("Banking77Classification", "EmotionClassification")
    assert (cfg.train_csv, cfg.eval_dir) == (None, "/env/mteb")
    assert (cfg.max_texts, cfg.train.batch_size, cfg.train.proj_lr) == (2000, 32, 1e-3)
    params = cfg.params
    assert (params["mode"], params["cluster"], params["jobs"], params["max_per_token"]) == (
        "sep",
        "kmeans",  # "" = unset: the preset's
        2,
        200,
    )
    smoke = make_config("SKD", preset="smoke", n_experiments=1)
    assert (smoke.max_texts, smoke.train.proj_lr, smoke.eval.n_experiments) == (None, None, 1)
    full = make_config("SKD")
    assert (full.teacher, full.student, full.max_length, full.train.lr) == (
        "llm2vec-llama3-8b",
        "teacher:4",
        512,
        5e-6,
    )
    assert len(full.eval.tasks) == 16 and isinstance(make_config("SAMD").eval, EvalConfig)
    with pytest.raises(ValueError, match="cluster"):
        make_config("SKD", preset="demo", n_experiment=3)  # a typo lists the SKD parameters


def test_presets_are_typed_and_per_method_values_replace_shared_ones():
    assert all(isinstance(p, Preset) for p in PRESETS.values())
    smoke = PRESETS["smoke"]
    assert (smoke.batch_size, smoke.for_method("SKD").batch_size) == (16, 32)
    assert smoke.for_method("SAMD") == smoke.for_method("MRL") != smoke
    with pytest.raises(TypeError):  # per-method values are checked against the fields
        replace(smoke, methods={"SKD": {"epoch": 2}}).for_method("SKD")


def test_run_experiment_runs_the_stages_and_a_registry_entry_replaces_them(tmp_path, monkeypatch):
    """The runner: run folder, each stage in order (an entry's hook in its place), record."""
    import samd_common.experiment as ex
    from samd_common.config import RunHooks
    from samd_common.methods import METHODS, get_method
    from samd_common.reporting.results import load_record

    assert set(ex.STAGES) == set(ex.DEFAULT_STAGES) <= {f.name for f in fields(RunHooks)}
    assert all(getattr(METHODS["SKD"].hooks, s) for s in ex.STAGES)
    assert all(m.hooks == RunHooks() for name, m in METHODS.items() if name != "SKD")
    calls = []

    def stage(name):
        def run_stage(run):
            calls.append(name)
            if name == "eval_after":
                run.metrics, run.dims = {"x/accuracy@8": 1.0}, [8]

        return run_stage

    settings = METHODS["SKD"].hooks.settings  # make_config checks the preset's SKD settings
    hooks = RunHooks("mteb", lambda cfg: "Fake-v", settings, **{s: stage(s) for s in ex.STAGES})
    spec = replace(get_method("SKD"), hooks=hooks)
    monkeypatch.setattr(ex, "get_method", lambda name: spec)
    record = ex.run_experiment(make_config("SKD", preset="smoke", output_dir=str(tmp_path)))
    assert calls == list(ex.STAGES)
    assert record.results_path.parent.name == "Fake-v-tiny-teacher-to-tiny-student-smoke-seed0"
    saved = load_record(record.results_path)
    assert (saved.metrics, saved.dims, saved.extra["flavour"]) == (record.metrics, [8], "Fake-v")
    assert set(saved.timings) >= {f"{s}_s" for s in ex.STAGES} | {"total_s", "peak_rss_mb"}
