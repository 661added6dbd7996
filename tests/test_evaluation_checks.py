"""The evaluator's own checks: settings in range, caps that still leave a scorable sample."""

from __future__ import annotations

import numpy as np
import pytest

from samd_common.config import EvalConfig
from samd_common.data.tasks import TASKS, DataError, Split, TaskData, load_tasks
from samd_common.evaluation.checks import check_eval_config, check_max_length, position_limit
from samd_common.evaluation.suite import evaluate_suite
from samd_common.models import load_encoder


def _hash_encoder(texts):
    """Deterministic (N, 8) features per text (the same text → the same vector)."""
    return np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=8) for t in texts])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_test", 0, r"max_test must be None \(every test row\) or an integer ≥ 1, got 0"),
        ("max_test", -1, r"max_test must be .* got -1"),
        ("max_train", 0, r"max_train must be None \(every train row\) or an integer ≥ 1, got 0"),
        ("max_test", True, r"max_test must be .* got True"),
        ("max_test", 2.5, r"max_test must be .* got 2.5"),
        ("batch_size", 0, r"batch_size must be an integer ≥ 1, got 0"),
        ("max_length", 0, r"max_length must be an integer ≥ 1, got 0"),
        ("lr_max_iter", 0, r"lr_max_iter must be an integer ≥ 1, got 0"),
        ("seed", -1, r"seed must be an integer ≥ 0, got -1"),
        ("dims", (64, 0), r"each of dims must be an integer ≥ 1, got 0"),
    ],
)
def test_out_of_range_settings_name_the_parameter(field, value, message):
    cfg = EvalConfig(**{field: value})
    with pytest.raises(ValueError, match=message):
        check_eval_config(cfg)


def test_evaluate_suite_checks_its_config_before_encoding(demo_dir):
    calls = []
    with pytest.raises(ValueError, match="max_test must be"):
        evaluate_suite(calls.append, load_tasks(["stsb"], demo_dir), [8], EvalConfig(max_test=0))
    assert calls == []


def test_valid_settings_pass():
    check_eval_config(EvalConfig())
    check_eval_config(EvalConfig(max_train=1, max_test=np.int64(5), dims=(8, 4), seed=0))


def test_max_test_that_leaves_one_sts_row_names_the_cap(demo_dir):
    tasks = load_tasks(["stsb"], demo_dir)
    with pytest.raises(
        ValueError,
        match=r"task 'stsb': max_test=1 keeps a sample of .*stsb_test.csv that has 1 row\(s\), "
        r"but Spearman needs at least 2\. Raise max_test or set it to None\.",
    ):
        evaluate_suite(_hash_encoder, tasks, [8], EvalConfig(max_test=1))


def test_max_train_that_leaves_one_class_for_the_threshold_names_the_cap(demo_dir):
    tasks = load_tasks(["mrpc"], demo_dir)
    with pytest.raises(ValueError, match=r"task 'mrpc': max_train=1 keeps a sample of .*mrpc_dev"):
        evaluate_suite(_hash_encoder, tasks, [8], EvalConfig(max_train=1))


def test_a_cap_that_leaves_a_scorable_sample_still_evaluates(demo_dir):
    tasks = load_tasks(["stsb", "mrpc", "banking77"], demo_dir)
    result = evaluate_suite(_hash_encoder, tasks, [8], EvalConfig(max_test=12, max_train=3))
    assert result.info["splits"]["stsb"]["test"]["rows"] == 12
    assert result.info["splits"]["banking77"]["fit"]["rows"] == 3  # stratified: one per class


def test_degenerate_in_memory_task_is_a_data_error():
    split = Split(["a", "b", "c"], ["d", "e", "f"], np.array([2.0, 2.0, 2.0]), path=None)
    task = TaskData(TASKS["stsb"], {"test": split})
    with pytest.raises(DataError, match=r"task 'stsb' \(test\): the test split has every score"):
        evaluate_suite(_hash_encoder, [task], [8])


def test_in_memory_classification_without_train_is_a_data_error():
    split = Split(["a", "b"], None, np.array(["x", "y"]), path=None)
    with pytest.raises(DataError, match="'banking77': classification needs a train split"):
        evaluate_suite(_hash_encoder, [TaskData(TASKS["banking77"], {"test": split})], [8])


def test_no_tasks_is_an_error():
    with pytest.raises(ValueError, match="no tasks to evaluate"):
        evaluate_suite(_hash_encoder, [], [8])


def test_max_length_beyond_the_position_limit_is_named(tiny_dirs):
    encoder = load_encoder(str(tiny_dirs["student"]), max_length=32)
    assert position_limit(encoder) == 128  # the tiny models' max_position_embeddings
    check_max_length(128, encoder)
    with pytest.raises(ValueError, match=r"max_length=1024 exceeds the model's position limit "):
        check_max_length(1024, encoder)
    with pytest.raises(ValueError, match=r"max_length must be an integer ≥ 1, got 0"):
        check_max_length(0, encoder)


def test_position_limit_is_none_when_unknown():
    assert position_limit(_hash_encoder) is None
    check_max_length(10**6, _hash_encoder)
