from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from samd_common.data.tasks import TASKS, DataError, cap_split, get_task, load_task, load_tasks


def test_task_table_has_nine_tasks_three_families_with_one_ood_each():
    assert len(TASKS) == 9
    for family in ("classification", "pair", "sts"):
        specs = [t for t in TASKS.values() if t.family == family]
        assert len(specs) == 3 and sum(t.ood for t in specs) == 1


def test_unknown_task_suggests_closest_name():
    with pytest.raises(KeyError, match="Did you mean 'banking77'"):
        get_task("banking7")


def test_demo_layout_loads_every_task(demo_dir):
    tasks = load_tasks(None, demo_dir)
    assert [t.spec.name for t in tasks] == list(TASKS)
    wic = next(t for t in tasks if t.spec.name == "wic")
    assert set(np.unique(wic.splits["test"].y)) == {0, 1}  # T/F mapped to 1/0


def test_canonical_layout_real_data(real_eval_dir):
    sizes = {
        t.spec.name: {k: len(v) for k, v in t.splits.items()}
        for t in load_tasks(None, real_eval_dir)
    }
    assert sizes["banking77"] == {"train": 10003, "test": 3080}
    assert sizes["stsb"]["test"] == 1379 and sizes["sts12"] == {"test": 3108}
    assert sizes["scitail"] == {"test": 2126}
    assert sizes["tweet"] == {"train": 3257, "dev": 374, "test": 1421}


def test_paper_layout_real_data_agrees_with_canonical_labels(paper_eval_dir, real_eval_dir):
    for name in ("mrpc", "wic", "scitail"):
        paper, canon = load_task(name, paper_eval_dir), load_task(name, real_eval_dir)
        assert paper.splits["test"].path.parent == paper_eval_dir
        # Same sentence pairs, same binary labels whatever the spelling (1/0, T/F, entails/neutral).
        assert np.array_equal(paper.splits["test"].y, canon.splits["test"].y)
    banking = load_task("banking77", paper_eval_dir)
    assert banking.splits["train"].path.name == "banking_train.csv"
    assert load_task("sickr", paper_eval_dir).splits["test"].path.name == "sick_test.csv"
    assert "dev" in load_task("stsb", paper_eval_dir).splits  # stsb_validation.csv alias


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_test_file_names_candidates(tmp_path):
    with pytest.raises(DataError, match="stsb_test.csv"):
        load_task("stsb", tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="SAMD_EVAL_DIR"):
        load_task("stsb", tmp_path / "nope")


def test_missing_column_names_file_and_column(tmp_path):
    _write(tmp_path / "stsb_test.csv", "sentence1,sentence2,similarity\na,b,1.0\n")
    with pytest.raises(DataError, match=r"stsb_test.csv.*\['score'\]"):
        load_task("stsb", tmp_path)


@pytest.mark.parametrize("cell", ['""', "   "])
def test_empty_text_reports_line(tmp_path, cell):
    _write(tmp_path / "mrpc_test.csv", f"sentence1,sentence2,label\na,b,1\n{cell},c,0\n")
    with pytest.raises(DataError, match=r"'sentence1'.*lines 3"):
        load_task("mrpc", tmp_path)


def test_nan_text_written_by_pandas_is_rejected(tmp_path):
    frame = pd.DataFrame({"text": ["ok", None], "label": ["a", "b"]})
    frame.to_csv(tmp_path / "emotion_test.csv", index=False)
    frame.to_csv(tmp_path / "emotion_train.csv", index=False)
    with pytest.raises(DataError, match="empty or NaN"):
        load_task("emotion", tmp_path)


def test_semicolon_delimiter_is_explained(tmp_path):
    _write(tmp_path / "emotion_test.csv", "text;label\ni am happy;joy\n")
    with pytest.raises(DataError, match="';'-separated"):
        load_task("emotion", tmp_path)


def test_unknown_pair_label(tmp_path):
    _write(tmp_path / "scitail_test.csv", "sentence1,sentence2,label\na,b,maybe\n")
    with pytest.raises(DataError, match="unknown pair label"):
        load_task("scitail", tmp_path)


def test_non_numeric_sts_score(tmp_path):
    _write(tmp_path / "sts12_test.csv", "sentence1,sentence2,score\na,b,high\n")
    with pytest.raises(DataError, match="line 2 has 'high'"):
        load_task("sts12", tmp_path)


def test_cap_split_is_stratified_and_seeded(demo_dir):
    split = load_task("banking77", demo_dir).splits["train"]
    a, b = cap_split(split, 30, seed=1, stratify=True), cap_split(split, 30, seed=1, stratify=True)
    assert a.text1 == b.text1 and len(a) == 30
    assert set(np.unique(a.y)) == set(np.unique(split.y))
    assert cap_split(split, None, 0, True) is split
