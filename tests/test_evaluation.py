from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from samd_common.config import EvalConfig
from samd_common.data.tasks import TASKS, Split, TaskData, load_tasks
from samd_common.evaluation.suite import (
    best_threshold,
    classification_scores,
    evaluate_suite,
    pair_scores,
    sts_scores,
    truncate,
)
from samd_common.models import load_encoder


def test_separable_embeddings_give_accuracy_100():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16)) * 10
    y = np.repeat(np.arange(3), 40)
    x = centers[y] + rng.normal(size=(120, 16))
    scores = classification_scores(x[::2], y[::2], x[1::2], y[1::2])
    assert scores["accuracy"] == 100.0 and scores["f1"] == 100.0


def test_sts_perfect_ranking_is_100_and_reversed_is_minus_100():
    gold = np.array([0.0, 1.0, 2.5, 4.0, 5.0])
    assert sts_scores(gold / 5, gold)["spearman"] == pytest.approx(100.0)
    assert sts_scores(-gold, gold)["spearman"] == pytest.approx(-100.0)


def test_best_threshold_known_answer():
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert best_threshold(scores, labels) == pytest.approx(0.45)
    assert best_threshold(np.array([0.5, 0.6]), np.array([1, 1])) < 0.5  # all positive


def test_pair_threshold_comes_from_fit_split_not_test():
    test_scores, y_test = np.array([0.1, 0.4, 0.5, 0.9]), np.array([0, 0, 1, 1])
    # Fit split puts the best threshold at 0.2, where test accuracy is only 75 %.
    fit_scores, y_fit = np.array([0.1, 0.3, 0.35]), np.array([0, 1, 1])
    out = pair_scores(test_scores, y_test, fit_scores, y_fit)
    assert out["threshold"] == pytest.approx(0.2)
    assert out["accuracy"] == 75.0  # a test-tuned threshold would give 100
    assert out["ap"] == 100.0
    assert "accuracy" not in pair_scores(test_scores, y_test, None, None)


def test_truncate_renormalises_and_rejects_bad_dim():
    x = np.array([[3.0, 4.0, 12.0]])
    assert np.allclose(truncate(x, 2), [[0.6, 0.8]])
    assert np.allclose(np.linalg.norm(truncate(x, 3), axis=1), 1)
    with pytest.raises(ValueError, match="outside 1..3"):
        truncate(x, 4)


class LinearEncoder:
    """Deterministic text → W·hash-features encoder; counts its calls."""

    def __init__(self, weights: np.ndarray):
        self.w, self.calls = weights, []

    def encode(self, texts):
        self.calls.append(list(texts))
        feats = np.stack(
            [
                np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.w.shape[1])
                for t in texts
            ]
        )
        return feats @ self.w.T


def test_truncated_dim_equals_evaluating_a_truncated_model(demo_dir):
    tasks = load_tasks(None, demo_dir)
    w = np.random.default_rng(0).normal(size=(24, 40))
    full = evaluate_suite(LinearEncoder(w), tasks, dims=[24, 8])
    small = evaluate_suite(LinearEncoder(w[:8]), tasks, dims=[8])
    for name in TASKS:
        key = f"{name}/{TASKS[name].main_score}"
        assert full.metrics[f"{key}@8"] == pytest.approx(small.metrics[f"{key}@8"], abs=1e-6)


def test_each_distinct_text_is_encoded_once(demo_dir):
    enc = LinearEncoder(np.eye(16))
    result = evaluate_suite(enc, load_tasks(["stsb", "mrpc", "banking77"], demo_dir), dims=[16, 4])
    assert len(enc.calls) == 1
    assert len(enc.calls[0]) == len(set(enc.calls[0])) == result.timings["n_texts"]


def test_dims_larger_than_width_are_rejected(demo_dir):
    with pytest.raises(ValueError, match="exceed the embedding width 16"):
        evaluate_suite(LinearEncoder(np.eye(16)), load_tasks(["stsb"], demo_dir), dims=[32])


def test_similarity_ranking_identical_to_gold_gives_spearman_100():
    gold = np.linspace(0, 5, 20)
    left, right = [f"left {i}" for i in range(20)], [f"right {i}" for i in range(20)]
    rng = np.random.default_rng(0)
    base, other = rng.normal(size=8), rng.normal(size=8)
    vecs = {t: base for t in left}  # cosine(left_i, right_i) falls as 5 - gold_i grows
    vecs.update({r: base + (5 - g) * other for r, g in zip(right, gold, strict=True)})
    task = TaskData(TASKS["stsb"], {"test": Split(left, right, gold, path=None)})
    out = evaluate_suite(lambda ts: np.stack([vecs[t] for t in ts]), [task], dims=[8])
    assert out.metrics["stsb/spearman@8"] == pytest.approx(100.0)


def test_tiny_model_end_to_end_all_metrics_finite(tiny_dirs, demo_dir):
    encoder = load_encoder(str(tiny_dirs["student"]), device="cpu")
    result = evaluate_suite(encoder, load_tasks(None, demo_dir), cfg=EvalConfig(max_train=40))
    assert result.dims == [32, 16]  # the halving series of the width down to 16
    for name, spec in TASKS.items():
        assert math.isfinite(result.metrics[f"{name}/{spec.main_score}@32"])
    for key in ("avg/all/id@32", "avg/all/ood@32", "avg/sts/ood@32"):
        assert math.isfinite(result.metrics[key])
    assert result.info["splits"]["banking77"]["fit"]["rows"] <= 40


def test_undistilled_evaluation_is_memoised_until_something_changes(tiny_dirs, demo_dir, tmp_path):
    from samd_common.evaluation.memo import cached_evaluate

    model = load_encoder(str(tiny_dirs["student"]), max_length=32)
    tasks = load_tasks(("stsb",), demo_dir)
    cfg, calls = EvalConfig(max_test=20), []

    def evaluate(c=cfg):
        calls.append(c)
        return evaluate_suite(lambda t: model.encode(t), tasks, [32], c)

    first = cached_evaluate(model, tasks, [32], cfg, evaluate, root=tmp_path)
    again = cached_evaluate(model, tasks, [32], cfg, evaluate, root=tmp_path)
    assert len(calls) == 1 and again.metrics == first.metrics and again.dims == [32]
    other = EvalConfig(max_test=10)
    cached_evaluate(model, tasks, [32], other, lambda: evaluate(other), root=tmp_path)
    with torch.no_grad():  # new weights → a new key
        next(model.parameters()).add_(1.0)
    cached_evaluate(model, tasks, [32], cfg, evaluate, root=tmp_path)
    assert len(calls) == 3
