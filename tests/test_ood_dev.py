"""OOD dev rows (data.ood_dev): leakage-free by construction, and the corpus stays the same."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest
from readme_checks import load_script

from samd_common.data.corpus import build_corpus
from samd_common.data.holdout import dev_view
from samd_common.data.ood_dev import build_ood_dev, ood_dev_rows
from samd_common.data.tasks import load_task


@pytest.fixture
def eval_dir(tmp_path, demo_dir):
    """The synthetic suite in the real layout: SciTail and STS12 have a test split only."""
    out = tmp_path / "eval"
    out.mkdir()
    for path in demo_dir.glob("*.csv"):
        if not path.name.startswith(("scitail_dev", "scitail_train", "sts12_dev", "sts12_train")):
            shutil.copy(path, out)
    return out


def _source(tmp_path, demo_dir):
    """A seed-paper folder: validation files that reuse some of the evaluation folder's text."""
    train = pd.read_csv(demo_dir / "mrpc_train.csv")  # an in-domain train sentence (corpus pool)
    test = pd.read_csv(demo_dir / "sts12_test.csv")
    src = tmp_path / "multi-data"
    src.mkdir(parents=True)
    scitail = {
        "sentence1": ["A new premise.", f"  {train.sentence1[0].upper()} ", "A new premise.", "B."],
        "sentence2": ["A new hypothesis.", "Unseen text.", "a  NEW hypothesis.", "C."],
        "label": [1, 0, 1, 0],
        "hypothesis_graph_structure": ["w", "x", "y", "z"],
    }
    pd.DataFrame(scitail).to_csv(src / "scitail_validation.csv", index=False)
    sts12 = {
        "split": ["train"] * 3,
        "sentence1": ["Fresh one.", "Fresh two.", "Fresh three."],
        "sentence2": ["Fresh one again.", test.sentence2[3], "Fresh three again."],
        "score": [4.0, 2.5, 0.5],
    }
    pd.DataFrame(sts12).to_csv(src / "sts12_validation.csv", index=False)
    return src


def test_pairs_sharing_any_evaluation_sentence_and_duplicates_are_dropped(tmp_path, eval_dir):
    out = tmp_path / "eval-ood-dev"
    report = build_ood_dev(_source(tmp_path, eval_dir), eval_dir, out)
    assert report["scitail"] == {"read": 4, "overlap": 1, "duplicate": 1, "kept": 2}
    assert report["sts12"] == {"read": 3, "overlap": 1, "duplicate": 0, "kept": 2}
    sts = pd.read_csv(out / "sts12_dev.csv")
    assert list(sts.columns) == ["sentence1", "sentence2", "score"]
    assert sts.sentence1.tolist() == ["Fresh one.", "Fresh three."]
    assert pd.read_csv(out / "scitail_dev.csv").to_dict("list") == {
        "sentence1": ["A new premise.", "B."],
        "sentence2": ["A new hypothesis.", "C."],
        "label": [1, 0],
    }


def test_the_folder_gives_dev_rows_and_leaves_the_corpus_unchanged(tmp_path, eval_dir):
    out = tmp_path / "eval-ood-dev"
    files = {p.name: p.read_bytes() for p in eval_dir.glob("*.csv")}
    build_ood_dev(_source(tmp_path, eval_dir), eval_dir, out)
    build_ood_dev(_source(tmp_path / "again", eval_dir), eval_dir, out)  # rebuilt in place
    assert {p.name: p.read_bytes() for p in eval_dir.glob("*.csv")} == files  # untouched
    assert set(files) | {"scitail_dev.csv", "sts12_dev.csv"} == {p.name for p in out.iterdir()}
    for task in ("scitail", "sts12"):
        assert dev_view(load_task(task, eval_dir)) is None  # test only: no dev score before
        view = dev_view(load_task(task, out))
        assert len(view.splits["test"]) == len(pd.read_csv(out / f"{task}_dev.csv")) > 0
    before, _ = build_corpus(eval_dir, None, seed=0, holdout=True)
    after, _ = build_corpus(out, None, seed=0, holdout=True)
    assert len(before) > 0 and after.text.tolist() == before.text.tolist()


def test_a_dev_file_already_in_the_folder_gives_way_and_is_never_written(tmp_path, eval_dir):
    (eval_dir / "sts12_validation.csv").write_text("sentence1,sentence2,score\na,b,1\n")
    out = tmp_path / "eval-ood-dev"
    build_ood_dev(_source(tmp_path, eval_dir), eval_dir, out)
    assert (eval_dir / "sts12_validation.csv").read_text() == "sentence1,sentence2,score\na,b,1\n"
    assert not (out / "sts12_validation.csv").exists()
    assert len(load_task("sts12", out).splits["dev"]) == 2


def test_bad_inputs_say_how_to_fix_them(tmp_path, eval_dir):
    with pytest.raises(FileNotFoundError, match="seed paper's data folder"):
        build_ood_dev(tmp_path, eval_dir, tmp_path / "out")
    with pytest.raises(ValueError, match="not edited"):
        build_ood_dev(_source(tmp_path, eval_dir), eval_dir, eval_dir)
    with pytest.raises(ValueError, match="pair/STS tasks"):
        ood_dev_rows(eval_dir / "emotion_dev.csv", "emotion", set())


def test_the_script_builds_the_folder(tmp_path, eval_dir, caplog):
    script = load_script(Path(__file__).resolve().parents[1] / "scripts" / "ood_dev_splits.py")
    src, out = _source(tmp_path, eval_dir), tmp_path / "out"
    with caplog.at_level(logging.INFO):
        script.main(["--source", str(src), "--eval-dir", str(eval_dir), "--out", str(out)])
    assert len(pd.read_csv(out / "sts12_dev.csv")) == 2
    assert '"kept": 2' in caplog.text
