"""The `bench` protocol (issue 15): held-out dev slices, dev-mode evaluation, one corpus for every
seed, the step budget, and the corpus / token-length scripts — on synthetic data, in seconds."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samd_common import experiment
from samd_common.config import PRESETS, EvalConfig
from samd_common.data.corpus import (
    build_corpus,
    heldout_texts,
    load_corpus,
    normalize_text,
    without_heldout,
)
from samd_common.data.demo import synthetic_sentences
from samd_common.data.holdout import (
    HOLDOUT_FRAC,
    dev_tasks,
    dev_view,
    holdout_indices,
    holdout_size,
    split_holdout,
)
from samd_common.data.tasks import load_tasks
from samd_common.evaluation.suite import evaluate_suite
from samd_common.losses import SAMDParams
from samd_common.models import load_encoder
from samd_common.training.batching import DistillDataset
from samd_common.training.loop import TrainConfig, get_lr, train

REPO = Path(__file__).resolve().parents[1]
# The real layout: Banking77 and MRPC without a dev split, SciTail and STS12 with a test split only.
DROPPED = ("banking77_dev", "mrpc_dev", "scitail_dev", "scitail_train", "sts12_dev", "sts12_train")


@pytest.fixture(scope="module")
def real_layout(demo_dir, tmp_path_factory) -> Path:
    """The synthetic tasks with the real data's split layout (and no ready-made corpus)."""
    out = tmp_path_factory.mktemp("layout")
    for f in demo_dir.glob("*.csv"):
        if f.stem not in DROPPED and f.name != "train_corpus.csv":
            shutil.copy(f, out / f.name)
    return out


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _texts(split) -> set[str]:
    return set(split.text1 + (split.text2 or []))


# ---------------------------------------------------------------- held-out slices
def test_holdout_slice_is_fixed_stratified_and_leaves_every_label_in_train(real_layout):
    banking = load_tasks(["banking77"], real_layout)[0]
    train = banking.splits["train"]
    held = holdout_indices(train, stratify=True)
    assert np.array_equal(held, holdout_indices(train, stratify=True))  # no run-dependent seed
    assert len(held) == holdout_size(len(train)) == int(HOLDOUT_FRAC * len(train))
    labels, counts = np.unique(train.y[held], return_counts=True)
    assert set(labels) == set(train.y) and counts.max() - counts.min() <= 1  # stratified
    rest, slice_ = split_holdout(banking)
    assert len(rest) + len(slice_) == len(train) and set(rest.y) == set(train.y)
    assert holdout_size(10_003) == 1000 and holdout_size(4076) == 815  # Banking77, MRPC


def test_dev_view_uses_dev_splits_then_holdout_and_drops_test_only_tasks(real_layout):
    tasks = load_tasks(None, real_layout)
    by_name = {t.spec.name: t for t in tasks}
    views = {t.spec.name: t for t in dev_tasks(tasks)}
    assert set(views) == set(by_name) - {"scitail", "sts12"}
    assert views["stsb"].splits["test"] is by_name["stsb"].splits["dev"]
    assert set(views["wic"].splits) == {"train", "test"}  # the threshold fits on train
    _, held = split_holdout(by_name["mrpc"])
    assert views["mrpc"].splits["test"].text1 == held.text1
    assert dev_view(by_name["sts12"]) is None


# ---------------------------------------------------------------- the corpus
def test_heldout_rows_never_reach_the_corpus(real_layout):
    held = heldout_texts(real_layout)
    assert set(held) == {"banking77", "mrpc"}
    frame, report = build_corpus(real_layout, None, seed=0, holdout=True)
    keys = {normalize_text(t) for t in frame["text"]}
    assert not keys & set().union(*held.values())
    assert all(row["in_corpus"] == 0 for row in report.holdout.values())
    assert report.sources["banking77"]["dropped_holdout"] > 0
    plain, plain_report = build_corpus(real_layout, None, seed=0)
    assert {normalize_text(t) for t in plain["text"]} & held["banking77"]  # without: they leak
    assert plain_report.holdout == {} and len(plain) > len(frame)
    # a corpus from a file loses them too
    texts = plain["text"].tolist()
    assert not {normalize_text(t) for t in without_heldout(texts, real_layout)} & held["mrpc"]


def test_whole_corpus_has_no_per_source_cap_and_is_the_same_for_every_seed(real_layout):
    a, report = build_corpus(real_layout, None, seed=0, holdout=True)
    b, _ = build_corpus(real_layout, None, seed=7, holdout=True)
    assert a.equals(b)  # every clean text, in file order: no seed can change it
    assert all(row["sampled"] == row["clean"] for row in report.sources.values())


def _run_corpus(preset: str, seed: int, eval_dir: Path, tmp_path: Path, **replace):
    cfg = experiment.make_config("MRL", preset=preset, seed=seed, eval_dir=str(eval_dir))
    cfg = dataclasses.replace(cfg, **replace)
    run_dir = tmp_path / f"{preset}-{seed}"
    run_dir.mkdir()
    return experiment._corpus(cfg, run_dir)


def test_bench_runs_train_on_one_corpus_whatever_the_seed_and_split(real_layout, tmp_path):
    corpora = [
        _run_corpus(preset, seed, real_layout, tmp_path)[1:]
        for preset, seed in (("bench", 0), ("bench", 1), ("bench-dev", 2))
    ]
    texts = corpora[0][0]
    assert (
        all(c[0] == texts for c in corpora) and len({c[1]["corpus_sha256"] for c in corpora}) == 1
    )
    held = set().union(*heldout_texts(real_layout).values())
    assert not {normalize_text(t) for t in texts} & held
    # cpu-bench keeps drawing one corpus per seed
    a = _run_corpus("cpu-bench", 0, real_layout, tmp_path, max_texts=60)[1]
    b = _run_corpus("cpu-bench", 1, real_layout, tmp_path, max_texts=60)[1]
    assert a != b


# ---------------------------------------------------------------- dev-mode evaluation
class Recorder:
    """A random-feature encoder that remembers every text it is asked to embed."""

    def __init__(self):
        self.seen: set[str] = set()

    def encode(self, texts):
        self.seen.update(texts)
        rng = np.random.default_rng([len(t) for t in texts[:3]] + [len(texts)])
        return rng.standard_normal((len(texts), 32)).astype(np.float32)


def test_dev_mode_reads_dev_and_heldout_rows_and_never_a_test_row(real_layout):
    tasks = load_tasks(None, real_layout)
    test_only = set().union(*(_texts(t.splits["test"]) for t in tasks))
    test_only -= set().union(
        *(_texts(s) for t in tasks for k, s in t.splits.items() if k != "test")
    )
    enc = Recorder()
    result = evaluate_suite(enc, tasks, [32, 16], EvalConfig(split="dev"))
    assert not enc.seen & test_only
    by_name = {t.spec.name: t for t in tasks}
    rest, held = split_holdout(by_name["banking77"])
    assert _texts(held) <= enc.seen and _texts(by_name["stsb"].splits["dev"]) <= enc.seen
    assert not {k for k in result.metrics if k.startswith(("scitail/", "sts12/"))}
    assert "avg/all/ood@32" in result.metrics and result.info["split"] == "dev"
    assert result.info["splits"]["banking77"]["test"]["rows"] == len(held)
    assert result.info["splits"]["banking77"]["fit"]["rows"] == len(rest)  # slice not fitted on


def test_test_mode_is_unchanged_by_the_holdout_reservation(real_layout):
    tasks = load_tasks(None, real_layout)
    base = evaluate_suite(Recorder(), tasks, [32], EvalConfig(max_train=40))
    held = evaluate_suite(Recorder(), tasks, [32], EvalConfig(max_train=40, holdout=True))
    assert base.metrics == held.metrics and "scitail/ap@32" in base.metrics
    with pytest.raises(ValueError, match="split must be 'test' or 'dev'"):
        evaluate_suite(Recorder(), tasks, [32], EvalConfig(split="validation"))


# ---------------------------------------------------------------- the presets
def test_bench_preset_and_its_dev_twin():
    cfg = experiment.make_config("SAMD", preset="bench", eval_dir="unused")
    assert (cfg.teacher, cfg.student, cfg.max_texts) == ("embeddinggemma-300m", "minilm-l6", None)
    assert (cfg.corpus_seed, cfg.per_source, cfg.max_length) == (0, None, 96)
    assert cfg.train.max_steps == 1000 and cfg.train.proj_lr == 1e-3
    other = experiment.make_config("CDM", preset="bench", eval_dir="unused")
    assert (cfg.train.lr, other.train.lr) == (1e-4, 2e-5)  # SAMD's own step (dev finding 23)
    assert experiment.make_config("SAMD", preset="bench", lr=3e-5).train.lr == 3e-5
    ev = cfg.eval
    assert (ev.max_train, ev.max_test, ev.seed, ev.dims) == (1000, 1000, 0, (384, 256, 128, 64))
    assert (ev.split, ev.holdout) == ("test", True)
    cpu = experiment.make_config("SAMD", preset="cpu-bench", eval_dir="unused", seed=2)
    assert (cpu.eval.max_train, cpu.eval.max_test, cpu.eval.seed) == (1000, 1000, 0)
    assert (cpu.eval.split, cpu.eval.holdout, cpu.corpus_seed, cpu.train.max_steps) == (
        "test",
        False,
        None,
        None,
    )
    dev = experiment.make_config("SAMD", preset="bench-dev", eval_dir="unused")
    assert dev.eval.split == "dev" and dataclasses.replace(dev.eval, split="test") == ev
    assert PRESETS["bench-dev"] == dataclasses.replace(PRESETS["bench"], eval_split="dev")


@pytest.mark.parametrize(
    ("runs", "student", "over"),
    [("runs", "minilm-l6", {}), ("l3/runs", "minilm-l3", {"lr": 1e-4, "interpolate": 1})],
)
def test_headline_samd_runs_are_samd_at_its_defaults(runs, student, over):
    """Each archived ``SAMD`` run trained what ``make bench``'s plain SAMD rows configure today."""
    files = sorted((REPO / "results" / "bench" / runs / "SAMD").glob("seed*/results.json"))
    assert len(files) == 3
    for f in files:
        ran = json.loads(f.read_text(encoding="utf-8"))["config"]
        cfg = experiment.make_config(
            "SAMD", preset="bench", student=student, eval_dir="unused", seed=ran["seed"], **over
        )
        assert SAMDParams.from_dict(ran["params"]) == SAMDParams.from_dict(cfg.params), f
        train = dataclasses.asdict(cfg.train)
        for key in ("lr", "max_steps", "batch_size", "interpolate", "proj_lr", "grad_clip"):
            assert ran["train"][key] == train[key], (f, key)


# ---------------------------------------------------------------- the step budget
class Contrastive(nn.Module):
    """Minimal loss module: in-batch InfoNCE of two dropout views."""

    def __init__(self, student):
        super().__init__()
        self.student, self.calls = student, 0

    def forward(self, batch, step, total):
        a, b = (
            self.student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
            for _ in range(2)
        )
        sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.05  # (B, B)
        self.calls += 1
        loss = F.cross_entropy(sim, torch.arange(len(a)))
        return loss, {"loss": loss.item(), "total": float(total)}


def _train(tiny_dirs, **cfg):
    student = load_encoder(str(tiny_dirs["student"]), device="cpu", max_length=24)
    ds = DistillDataset(synthetic_sentences(48, seed=3), student.tokenizer, 24)
    method = Contrastive(student)
    config = TrainConfig(batch_size=8, lr=1e-3, show_progress=False, **cfg)
    return method, train(method, ds, config, collate_fn=ds.collate), config


@pytest.mark.parametrize(("max_steps", "epochs_done"), [(4, 1), (10, 2), (12, 2)])
def test_max_steps_sets_the_budget_and_the_schedule(tiny_dirs, max_steps, epochs_done):
    method, hist, cfg = _train(tiny_dirs, epochs=1, max_steps=max_steps)  # 6 steps per pass
    assert [s["step"] for s in hist.steps] == list(range(max_steps)) == list(range(method.calls))
    assert hist.epochs_done == epochs_done and {s["total"] for s in hist.steps} == {max_steps}
    assert [s["lr"] for s in hist.steps] == pytest.approx(
        [1e-3 * get_lr(k, max_steps, cfg) for k in range(max_steps)]
    )


def test_without_max_steps_epochs_decide_and_a_bad_budget_is_refused(tiny_dirs):
    _, hist, _ = _train(tiny_dirs, epochs=2)
    assert len(hist.steps) == 12 and hist.epochs_done == 2
    with pytest.raises(ValueError, match="max_steps must be a positive number"):
        _train(tiny_dirs, max_steps=0)


# ---------------------------------------------------------------- the scripts
def test_build_corpus_script_builds_the_preset_corpus(real_layout, tmp_path, capsys):
    script = _script("build_corpus")
    assert script.per_source("all") is None and script.per_source("25") == 25
    assert script.preset_settings("bench") == {"n_per_source": None, "seed": 0, "holdout": True}
    assert script.preset_settings("cpu-bench")["n_per_source"] == 600
    out = tmp_path / "corpus.csv"
    argv = ["--eval-dir", str(real_layout), "--preset", "bench", "--out", str(out)]
    assert script.main(argv) == 0
    run_texts = _run_corpus("bench", 3, real_layout, tmp_path)[1]
    assert (
        out.read_text().count("\n") > 1
        and "held-out dev slice banking77" in capsys.readouterr().out
    )
    assert load_corpus(out) == run_texts  # the very texts (and order) a bench run trains on


def test_token_lengths_table_and_choice(tiny_dirs):
    script = _script("token_lengths")
    lengths = {"a": np.array([10, 20, 30, 40, 70]), "b": np.array([5, 5, 5, 5, 100])}
    stats = script.summary(lengths, [32, 64, 128])
    assert stats["a"]["coverage"] == {32: 0.6, 64: 0.8, 128: 1.0} and stats["b"]["max"] == 100
    assert script.choose_max_length(stats, [32, 64, 128], 0.99) == 128
    assert script.choose_max_length(stats, [32, 64, 128], 0.8) == 64
    assert script.choose_max_length(stats, [32, 64], 0.99) is None
    table = script.markdown(stats, [32, 64, 128]).splitlines()
    assert table[0].startswith("| tokenizer | texts | mean | p50") and "| 80.00 % |" in table[2]
    n = script.token_lengths(str(tiny_dirs["student"]), ["a b c", "a"])
    assert n[0] > n[1] >= 3  # [CLS] a [SEP]: special tokens count


def test_teacher_probe_known_fits():
    fit = _script("teacher_probe").linear_fit
    rng = np.random.default_rng(0)
    student = rng.normal(size=(600, 8)).astype(np.float32)
    exact = student @ rng.normal(size=(8, 12)) + 5.0  # a linear map of the student, offset
    groups = np.array(["a", "b"] * 300)
    out = fit(student, exact, groups, alpha=1e-6)
    # normalisation makes the map slightly non-linear: almost, not exactly, 1
    assert out["r2"] > 0.9 and out["cos"] > 0.95 and set(out["per_group"]) == {"a", "b"}
    assert (out["n_fit"], out["n_scored"]) == (500, 100)
    noise = fit(student, rng.normal(size=(600, 12)))
    assert noise["r2"] < 0.05 and abs(noise["cos"]) < 0.15 and noise["per_group"] == {}
    with pytest.raises(ValueError, match="same texts in the same order"):
        fit(student, exact[:-1])
    with pytest.raises(ValueError, match="< 2 rows to score"):
        fit(student, exact, n_fit=599)


def test_teacher_probe_end_to_end(tiny_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMD_CACHE_DIR", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.csv"
    pd.DataFrame({"text": synthetic_sentences(60, seed=0)}).to_csv(corpus, index=False)
    out = tmp_path / "probe.json"
    argv = [
        "--teacher",
        str(tiny_dirs["teacher"]),
        "--students",
        str(tiny_dirs["student"]),
        "--corpus",
        str(corpus),
        "--n-texts",
        "48",
        "--max-length",
        "32",
        "--json",
        str(out),
    ]
    assert _script("teacher_probe").main(argv) == 0
    fit = json.loads(out.read_text())[str(tiny_dirs["student"])]
    assert fit["n_scored"] == 8 and -10 < fit["r2"] <= 1 and fit["per_group"].keys() == {"corpus"}
