"""Bad task files never give a wrong number: each is one DataError naming file, column and fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from samd_common.data.checks import canonical_labels, split_problem
from samd_common.data.tasks import TASKS, DataError, load_task, load_tasks


def _csv(path, **columns):
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def _sts(folder, scores, split="test", name="stsb"):
    n = len(scores)
    return _csv(
        folder / f"{name}_{split}.csv",
        sentence1=[f"a {i}" for i in range(n)],
        sentence2=[f"b {i}" for i in range(n)],
        score=scores,
    )


def _texts(folder, labels, split, name="emotion"):
    return _csv(folder / f"{name}_{split}.csv", text=[f"t {i}" for i in labels], label=labels)


def _pairs(folder, labels, split, name="mrpc"):
    n = len(labels)
    return _csv(
        folder / f"{name}_{split}.csv",
        sentence1=[f"a {i}" for i in range(n)],
        sentence2=[f"b {i}" for i in range(n)],
        label=labels,
    )


def test_sts_tasks_declare_the_0_to_5_scale():
    assert {t.name: t.score_range for t in TASKS.values() if t.family == "sts"} == {
        "stsb": (0.0, 5.0),
        "sickr": (0.0, 5.0),
        "sts12": (0.0, 5.0),
    }
    assert all(t.score_range is None for t in TASKS.values() if t.family != "sts")


def test_out_of_range_scores_name_file_column_lines_and_range(tmp_path):
    _sts(tmp_path, [1.0, -35.0, 2.0, 99.0, 4.0])
    with pytest.raises(
        DataError,
        match=r"stsb_test.csv: column 'score' has 2 score\(s\) that are not finite or outside "
        r"the range 0–5 declared for task 'stsb' \(line 3: -35, line 5: 99\)\. .*rescale the "
        r"column to 0–5",
    ):
        load_task("stsb", tmp_path)


@pytest.mark.parametrize("bad", ["inf", "-inf", "nan", "NaN"])
def test_non_finite_scores_are_rejected(tmp_path, bad):
    (tmp_path / "sts12_test.csv").write_text(
        f"sentence1,sentence2,score\na,b,1.0\nc,d,{bad}\ne,f,3\n", encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"sts12_test.csv: column 'score' has 1 score.*line 3: "):
        load_task("sts12", tmp_path)


def test_out_of_range_score_in_a_train_file_is_rejected_too(tmp_path):
    _sts(tmp_path, [0.0, 5.0])
    _sts(tmp_path, [0.0, 50.0], split="train")
    with pytest.raises(DataError, match=r"stsb_train.csv: .*line 3: 50"):
        load_task("stsb", tmp_path)


def test_constant_sts_scores_are_rejected(tmp_path):
    _sts(tmp_path, [3.0, 3.0, 3.0])
    with pytest.raises(
        DataError,
        match=r"stsb_test.csv: the test split has every score equal to 3, so Spearman is "
        r"undefined; task 'stsb' cannot be scored\. Use a file with at least 2 rows",
    ):
        load_task("stsb", tmp_path)


def test_one_row_sts_test_is_rejected(tmp_path):
    _sts(tmp_path, [3.0], name="sickr")
    with pytest.raises(DataError, match=r"sickr_test.csv: the test split has 1 row\(s\), but"):
        load_task("sickr", tmp_path)


def test_integral_float_test_labels_match_integer_train_labels(tmp_path):
    _texts(tmp_path, ["0", "1", "2", "3", "4"], "train")
    _texts(tmp_path, ["0.0", "1.0", "4.0"], "test")
    task = load_task("emotion", tmp_path)
    assert task.splits["test"].y.tolist() == ["0", "1", "4"]
    assert task.splits["train"].y.tolist() == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["0.0", "1.0", "2"], ["0", "1", "2"]),
        (["01", "1", "+2"], ["1", "1", "2"]),
        (["0", "76"], ["0", "76"]),
        (["0.5", "1"], ["0.5", "1"]),  # not integral: unchanged
        (["joy", "1.0"], ["joy", "1.0"]),  # not all numbers: unchanged
        (["Joy", "joy"], ["Joy", "joy"]),  # case is never folded
        (["inf", "1"], ["inf", "1"]),
    ],
)
def test_canonical_labels(raw, expected):
    assert canonical_labels(np.array(raw)).tolist() == expected


def test_upper_cased_test_labels_are_an_error_that_says_so(tmp_path):
    _texts(tmp_path, ["joy", "anger", "sadness"], "train")
    _texts(tmp_path, ["JOY", "anger", "Sadness"], "test")
    with pytest.raises(
        DataError,
        match=r"emotion_test.csv: column 'label' has 2 label\(s\) never seen in .*emotion_train"
        r".csv \('JOY', 'Sadness'; train has e.g. 'anger', 'joy', 'sadness'\).*up to letter "
        r"case \('JOY' vs 'joy'\)",
    ):
        load_task("emotion", tmp_path)


def test_unseen_test_labels_are_named(tmp_path):
    _texts(tmp_path, ["0", "1", "2"], "train", name="banking77")
    _texts(tmp_path, ["0", "1", "7", "8.5"], "test", name="banking77")
    with pytest.raises(DataError, match=r"2 label\(s\) never seen .*\('7', '8.5'; .*add their"):
        load_task("banking77", tmp_path)


def test_single_class_train_split_is_rejected(tmp_path):
    _texts(tmp_path, ["joy", "joy"], "train")
    _texts(tmp_path, ["joy"], "test")
    with pytest.raises(
        DataError,
        match=r"emotion_train.csv: the train split has a single class \('joy'\), but a "
        r"classifier needs at least 2; task 'emotion' cannot be scored",
    ):
        load_task("emotion", tmp_path)


def test_classification_without_train_file_is_rejected_at_load(tmp_path):
    _texts(tmp_path, ["joy", "anger"], "test")
    with pytest.raises(DataError, match=r"'emotion': classification needs a train split.*_train"):
        load_task("emotion", tmp_path)


@pytest.mark.parametrize(
    ("labels", "kind"), [(["1", "T", "true"], "positive"), (["0", "F"], "negative")]
)
def test_pair_test_with_one_class_is_rejected(tmp_path, labels, kind):
    _pairs(tmp_path, labels, "test")
    with pytest.raises(DataError, match=rf"mrpc_test.csv: the test split has only {kind} labels"):
        load_task("mrpc", tmp_path)


def test_pair_threshold_split_with_one_class_is_rejected(tmp_path):
    _pairs(tmp_path, ["1", "0"], "test", name="wic")
    _pairs(tmp_path, ["F", "F", "F"], "dev", name="wic")
    _pairs(tmp_path, ["T", "F"], "train", name="wic")  # dev wins over train for the threshold
    with pytest.raises(DataError, match=r"wic_dev.csv: the dev split has only negative labels"):
        load_task("wic", tmp_path)


def test_split_problem_accepts_usable_splits():
    assert split_problem("sts", np.array([0.0, 1.0]), "test") is None
    assert split_problem("pair", np.array([0, 1]), "fit") is None
    assert split_problem("classification", np.array(["a"]), "test") is None  # test: any size
    assert split_problem("sts", np.array([2.0, 2.0]), "fit") is None  # STS fits nothing


def test_duplicate_task_names_are_rejected(demo_dir):
    with pytest.raises(DataError, match="task 'stsb' is listed twice"):
        load_tasks(["stsb", "mrpc", "stsb"], demo_dir)


def test_no_folder_at_all_is_explained():
    with pytest.raises(DataError, match="task 'stsb': no evaluation folder given"):
        load_task("stsb", None)


def test_every_real_task_file_loads_and_passes_the_checks(real_eval_dir, paper_eval_dir):
    for folder in (real_eval_dir, paper_eval_dir):
        for task in load_tasks(None, folder):
            for split in task.splits.values():
                if task.spec.family == "sts":
                    assert 0 <= split.y.min() < split.y.max() <= 5
                elif task.spec.family == "pair":
                    assert set(np.unique(split.y)) == {0, 1}
