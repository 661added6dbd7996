"""Benchmark helpers: interleaved timing, summaries, batch builders, and the script end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from samd_common.alignment import token_spans
from samd_common.data.demo import synthetic_sentences
from samd_common.models import load_encoder
from samd_common.training import bench
from samd_common.training.batching import DistillDataset
from samd_common.training.teacher_cache import build_teacher_cache

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    """Stands in for ``time.perf_counter``; step functions advance it by their cost."""

    def __init__(self) -> None:
        self.now, self.calls = 0.0, []

    def __call__(self) -> float:
        return self.now

    def step(self, name: str, cost) -> bench.StepFn:
        def fn(i: int) -> None:
            self.calls.append((name, i))
            self.now += cost(i)

        return fn


def test_interleaved_times_runs_round_robin_and_drops_the_warmup(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    steps = {
        "a": clock.step("a", lambda i: 1.0 + i),  # cost grows with i: warmup rounds are visible
        "b": clock.step("b", lambda i: 3.0),
    }
    times = bench.interleaved_times(steps, n=3, warmup=2)
    assert clock.calls == [(name, i) for i in range(5) for name in ("a", "b")]
    assert times == {"a": [3.0, 4.0, 5.0], "b": [3.0, 3.0, 3.0]}


def test_interleaved_then_summarized_gives_the_cost_ratios(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    costs = {"ref": 0.5, "double": 1.0, "quad": 2.0}
    steps = {name: clock.step(name, lambda i, c=c: c) for name, c in costs.items()}
    rows = bench.summarize_times(bench.interleaved_times(steps, n=4, warmup=1), "ref")
    assert {k: r["ratio_median"] for k, r in rows.items()} == {"ref": 1, "double": 2, "quad": 4}
    assert {k: r["ratio_mean"] for k, r in rows.items()} == {"ref": 1, "double": 2, "quad": 4}
    assert all(r["steps"] == 4 for r in rows.values())


def test_summarize_times_known_medians_means_and_ratios():
    times = {"ref": [1.0, 2.0, 3.0, 10.0], "x": [2.0, 4.0, 6.0, 8.0], "y": [9.0]}
    rows = bench.summarize_times(times, "ref")
    assert rows["ref"] == {
        "median_s": 2.5,
        "mean_s": 4.0,
        "ratio_median": 1.0,
        "ratio_mean": 1.0,
        "steps": 4,
    }
    assert rows["x"] == {
        "median_s": 5.0,
        "mean_s": 5.0,
        "ratio_median": 2.0,
        "ratio_mean": 1.25,
        "steps": 4,
    }
    assert (rows["y"]["ratio_median"], rows["y"]["ratio_mean"]) == (3.6, 2.25)


def test_paired_ratio_divides_step_by_step():
    """A slow moment hits both variants of a step: the paired ratio ignores it, means do not."""
    times = {"base": [1.0, 10.0, 1.0, 1.0], "x": [1.1, 11.0, 1.1, 1.1]}  # step 1: machine busy
    r = bench.paired_ratio(times, "x", "base")
    assert r["median"] == pytest.approx(1.1) and r["mean"] == pytest.approx(1.1)
    assert r["se"] == pytest.approx(0.0, abs=1e-12) and r["steps"] == 4
    with pytest.raises(ValueError, match="same, non-zero number of steps"):
        bench.paired_ratio({"base": [1.0], "x": [1.0, 2.0]}, "x", "base")


def test_interleaved_times_with_real_sleeps_orders_the_variants():
    pauses = {"fast": 0.002, "middle": 0.01, "slow": 0.03}
    steps = {name: (lambda i, s=s: time.sleep(s)) for name, s in pauses.items()}
    rows = bench.summarize_times(bench.interleaved_times(steps, n=3, warmup=0), "fast")
    assert rows["fast"]["ratio_median"] == 1.0
    assert 1 < rows["middle"]["ratio_median"] < rows["slow"]["ratio_median"]
    assert all(r["median_s"] >= pauses[k] for k, r in rows.items())


class _Indices:
    """A dataset whose collate returns the item indices it was given."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, items: list[int]) -> list[int]:
        return items


def test_cached_batches_are_full_consecutive_and_wrap():
    make = bench.cached_batches(_Indices(10), 4)  # starts cycle through 0..6
    assert [make(i) for i in (0, 1, 2)] == [[0, 1, 2, 3], [4, 5, 6, 7], [1, 2, 3, 4]]
    assert all(len(make(i)) == 4 and max(make(i)) < 10 for i in range(20))


def test_live_teacher_batches_match_the_cached_ones(tiny_dirs, tmp_path):
    texts = synthetic_sentences(12, seed=5)
    student = load_encoder(str(tiny_dirs["student"]), device="cpu", max_length=32)
    teacher = load_encoder(str(tiny_dirs["teacher"]), device="cpu", attn_implementation="eager")
    cache = build_teacher_cache(teacher, texts, 32, cache_dir=tmp_path, show_progress=False)
    ds = DistillDataset(texts, student.tokenizer, 32, cache=cache)
    cached = bench.cached_batches(ds, 4)(1)
    live = bench.live_teacher_batches(ds, teacher, 4, 32)(1)
    assert set(live) == set(cached)
    for key in ("input_ids", "t_input_ids", "t_real", "overlap", "s_group", "t_group"):
        assert torch.equal(live[key], cached[key]), key
    for key in ("t_hidden", "t_embed", "t_attn", "t_pooled"):  # the cache keeps fp16 copies
        torch.testing.assert_close(live[key], cached[key], atol=2e-3, rtol=1e-2)


def test_alignment_speed_reports_shape_and_consistent_speedup(tiny_dirs):
    student = load_encoder(str(tiny_dirs["student"]), device="cpu")
    teacher = load_encoder(str(tiny_dirs["teacher"]), device="cpu")
    texts = synthetic_sentences(3, seed=1)
    s = token_spans(student.tokenizer, texts, 64)
    t = token_spans(teacher.tokenizer, texts, 64)
    out = bench.alignment_speed(s, t, repeats=2)
    assert out["shape"] == [3, s.input_ids.shape[1], t.input_ids.shape[1]]
    assert out["speedup"] == pytest.approx(out["naive_s"] / out["vectorised_s"])


def test_bench_script_smoke(tiny_dirs, tmp_path):
    out = tmp_path / "bench.json"
    methods = ["SAMD", "MinED", "DSKD", "CDM", "EMO"]
    cmd = [
        sys.executable,
        "scripts/bench.py",
        "--teacher",
        str(tiny_dirs["teacher"]),
        "--student",
        str(tiny_dirs["student"]),
        "--methods",
        *methods,
        "--steps",
        "2",
        "--warmup",
        "0",
        "--batch-size",
        "8",
        "--variant",
        "SAMD+rel",
        "SAMD",
        '{"lambda_unif": 0, "lambda_sim": 3, "lambda_resim": 1}',
        "--output",
        str(out),
    ]
    env = {"HF_HUB_OFFLINE": "1", "SAMD_CACHE_DIR": str(tmp_path / "cache"), "PATH": ""}
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    expected = {"SimCSE", "SAMD (live teacher)", "SAMD+rel (cache)"}
    expected |= {f"{m} (cache)" for m in methods}
    assert set(report["steps"]) == expected
    ref = report["steps"]["SimCSE"]
    for name, row in report["steps"].items():  # ratios are against the SimCSE row of this run
        assert row["steps"] == 2 and row["median_s"] > 0, name
        assert row["ratio_median"] == pytest.approx(row["median_s"] / ref["median_s"]), name
    assert report["n_texts"] == 8 * 2
    assert report["alignment"]["speedup"] > 1
    assert np.isfinite(report["teacher_cache_build_s"])
    # the timed cache is a real build in a scratch folder, never a hit on a cached corpus, and
    # nothing is left in the user's cache folder for a later run to hit
    assert "teacher cache built" in run.stderr and "teacher cache hit" not in run.stderr
    assert not (tmp_path / "cache" / "teacher").exists()
    bad = subprocess.run(  # a variant's params that are not a JSON object stop with a hint
        [*cmd[:2], "--variant", "x", "SAMD", "[1]"], cwd=REPO, capture_output=True, text=True
    )
    assert bad.returncode != 0 and "must be a JSON object" in bad.stderr
