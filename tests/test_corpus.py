from __future__ import annotations

import pandas as pd
import pytest

from samd_common.data.corpus import audit_corpus, build_corpus, load_corpus, normalize_text
from samd_common.data.tasks import DataError, load_tasks


def test_normalize_text_folds_case_and_whitespace():
    assert normalize_text("  A  Man\tis\nHERE ") == "a man is here"


def _eval_sentences(eval_dir):
    out = set()
    for task in load_tasks(None, eval_dir):
        for split in ("dev", "test"):
            if split in task.splits:
                s = task.splits[split]
                out.update(normalize_text(t) for t in s.text1 + (s.text2 or []))
    return out


def test_built_corpus_has_no_dev_test_sentence_no_duplicate_and_no_ood(demo_dir):
    frame, report = build_corpus(demo_dir, n_per_source=25, seed=0)
    keys = [normalize_text(t) for t in frame["text"]]
    assert len(keys) == len(set(keys))
    assert not set(keys) & _eval_sentences(demo_dir)
    assert set(frame["source"]) == {"BANKING77", "TWEET", "MRPC", "WIC", "STSB", "SICKR"}
    assert all(row["in_corpus"] == 0 for row in report.overlap.values())
    assert all(row["sampled"] <= 25 for row in report.sources.values())
    with_ood, _ = build_corpus(demo_dir, n_per_source=25, seed=0, include_ood=True)
    assert {"EMOTION", "SCITAIL", "STS12"} <= set(with_ood["source"])


def test_eval_sentence_planted_in_train_is_removed(tmp_path, demo_dir):
    for f in demo_dir.glob("*.csv"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    test = pd.read_csv(tmp_path / "stsb_test.csv")
    train = pd.read_csv(tmp_path / "stsb_train.csv")
    planted = test.iloc[0]["sentence1"]
    train.loc[0, "sentence1"] = "  " + planted.upper() + " "  # case/space variant
    train.to_csv(tmp_path / "stsb_train.csv", index=False)
    frame, report = build_corpus(tmp_path, n_per_source=10_000)
    assert normalize_text(planted) not in {normalize_text(t) for t in frame["text"]}
    assert report.sources["stsb"]["dropped_eval_overlap"] >= 1


def test_audit_measures_a_leaking_corpus(tmp_path, demo_dir):
    test = pd.read_csv(demo_dir / "sickr_test.csv")
    leaked = pd.DataFrame(
        {
            "text": list(test["sentence1"][:10]) + ["unrelated text"],
            "source": ["SICK"] * 10 + ["OTHER"],
        }
    )
    leaked.to_csv(tmp_path / "leaky.csv")  # with the unnamed index column, like the reference
    report = audit_corpus(tmp_path / "leaky.csv", [demo_dir])
    assert report["overlap"]["sickr"]["test_in_corpus"] == len(set(test["sentence1"][:10]))
    assert report["leaking_rows_by_source"] == {"OTHER": 0, "SICK": 10}


def test_load_corpus_reads_reference_format_and_rejects_bad_files(tmp_path):
    (tmp_path / "c.csv").write_text(",text,source\n0,hello there,A\n1,second one,B\n")
    assert load_corpus(tmp_path / "c.csv") == ["hello there", "second one"]
    assert len(load_corpus(tmp_path / "c.csv", max_texts=1)) == 1
    (tmp_path / "bad.csv").write_text("sentence,source\nhello,A\n")
    with pytest.raises(DataError, match="'text'"):
        load_corpus(tmp_path / "bad.csv")
