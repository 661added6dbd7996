"""A user's own tasks: CSV files plus a family, scored and checked like the built-in nine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from samd_common.config import EvalConfig
from samd_common.data.tasks import TASKS, DataError, load_tasks
from samd_common.data.user_tasks import load_user_tasks, parse_user_tasks, user_tasks
from samd_common.evaluation.suite import evaluate_suite

RNG = np.random.default_rng(0)
BASE, OTHER = RNG.normal(size=8), RNG.normal(size=8)
CENTERS = {"joy": RNG.normal(size=8) * 10, "anger": RNG.normal(size=8) * 10}


def _vector(text: str) -> np.ndarray:
    """Known geometry: ``left i`` = BASE, ``right i`` = BASE + (5 - i/4)·OTHER, label centres."""
    kind, _, value = text.partition(" ")
    if kind == "left":
        return BASE
    if kind == "right":
        return BASE + (5 - float(value) / 4) * OTHER
    noise = np.random.default_rng(sum(map(ord, text))).normal(size=8)
    return CENTERS[kind] + noise


def encode(texts: list[str]) -> np.ndarray:
    return np.stack([_vector(t) for t in texts])


def _sts(path, n=20, gold=None):
    """Gold rises with i, and so does cos(left i, right i): Spearman 100."""
    gold = np.linspace(0, 5, n) if gold is None else gold
    pd.DataFrame(
        {
            "sentence1": [f"left {i}" for i in range(n)],
            "sentence2": [f"right {i}" for i in range(n)],
            "score": gold,
        }
    ).to_csv(path, index=False)


def _pairs(path, n=20, labels=("T", "F")):
    """Close pairs (i ≥ n/2, high cosine) are the positives: AP 100."""
    pd.DataFrame(
        {
            "sentence1": [f"left {i}" for i in range(n)],
            "sentence2": [f"right {i}" for i in range(n)],
            "label": [labels[0] if i >= n // 2 else labels[1] for i in range(n)],
        }
    ).to_csv(path, index=False)


def _texts(path, n=30):
    labels = ["joy" if i % 2 else "anger" for i in range(n)]
    frame = pd.DataFrame({"text": [f"{y} {path.stem} {i}" for i, y in enumerate(labels)]})
    frame.assign(label=labels).to_csv(path, index=False)


def test_folder_of_sts_files_evaluates_just_those(tmp_path):
    _sts(tmp_path / "mysts_test.csv")
    _sts(tmp_path / "other_test.csv", gold=np.linspace(5, 0, 20))  # reversed: Spearman −100
    specs = user_tasks(tmp_path, "sts")
    assert [(s.name, s.family, s.main_score, s.folder) for s in specs] == [
        ("mysts", "sts", "spearman", str(tmp_path)),
        ("other", "sts", "spearman", str(tmp_path)),
    ]
    result = evaluate_suite(encode, load_tasks(specs, None), dims=[8])
    assert result.metrics["mysts/spearman@8"] == pytest.approx(100.0)
    assert result.metrics["other/spearman@8"] == pytest.approx(-100.0)
    assert result.metrics["avg/sts/id@8"] == pytest.approx(0.0)
    assert not any(k.startswith(tuple(TASKS)) for k in result.metrics)


def test_three_families_with_train_and_dev_files(tmp_path):
    _sts(tmp_path / "sim_test.csv")
    _pairs(tmp_path / "para_test.csv", labels=("1", "0"))
    _pairs(tmp_path / "para_validation.csv", labels=("entails", "neutral"))
    _texts(tmp_path / "mood_train.csv")
    _texts(tmp_path / "mood_test.csv", n=10)
    families = {"sim": "sts", "para": "pair", "mood": "classification"}
    tasks = load_user_tasks(tmp_path, families, ood=["mood"])
    assert sorted(tasks[1].splits) == ["dev", "test"] and sorted(tasks[2].splits) == [
        "test",
        "train",
    ]
    metrics = evaluate_suite(encode, tasks, dims=[8]).metrics
    assert metrics["sim/spearman@8"] == pytest.approx(100.0)
    assert metrics["para/ap@8"] == pytest.approx(100.0) and metrics["para/accuracy@8"] == 100.0
    assert metrics["mood/accuracy@8"] == 100.0
    assert metrics["avg/classification/ood@8"] == 100.0 and "avg/classification/id@8" not in metrics


def test_user_tasks_follow_the_built_in_protocol_exactly(demo_dir):
    """The nine demo files read as user tasks give the built-ins' numbers, key for key."""
    stems = {"tweet": "tweeteval_emotion"}
    families = {stems.get(t.name, t.name): t.family for t in TASKS.values()}
    specs = user_tasks(demo_dir, families, score_range=(0, 5))
    cfg = EvalConfig(max_train=40, max_test=25)
    mine = evaluate_suite(encode_hash, load_tasks(specs, None), [8], cfg).metrics
    builtin = evaluate_suite(encode_hash, load_tasks(None, demo_dir), [8], cfg).metrics
    for name in TASKS:
        for key in [k for k in builtin if k.startswith(f"{name}/")]:
            assert mine[key.replace(name, stems.get(name, name), 1)] == builtin[key]


def encode_hash(texts: list[str]) -> np.ndarray:
    return np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=8) for t in texts])


def test_auto_family_reads_the_header(tmp_path):
    _sts(tmp_path / "a_test.csv")
    _pairs(tmp_path / "b_test.csv")
    _texts(tmp_path / "c_test.csv")
    _texts(tmp_path / "c_train.csv")
    assert [s.family for s in user_tasks(tmp_path, "auto")] == ["sts", "pair", "classification"]


def test_auto_family_with_unknown_columns_is_explained(tmp_path):
    (tmp_path / "x_test.csv").write_text("question,answer\nq,a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"x_test.csv: cannot tell the family from the columns"):
        user_tasks(tmp_path, "auto")


def test_one_file_not_named_test_is_a_test_only_task(tmp_path):
    _sts(tmp_path / "my_pairs.csv")
    (task,) = load_user_tasks(tmp_path / "my_pairs.csv", "STS")  # family names ignore case
    assert task.spec.name == "my_pairs" and list(task.splits) == ["test"]


def test_one_test_file_picks_up_its_siblings(tmp_path):
    _pairs(tmp_path / "p_test.csv")
    _pairs(tmp_path / "p_dev.csv")
    (task,) = load_user_tasks(tmp_path / "p_test.csv", "pair")
    assert sorted(task.splits) == ["dev", "test"]


def test_user_tasks_get_the_built_in_checks(tmp_path):
    _sts(tmp_path / "flat_test.csv", gold=np.full(20, 2.0))
    with pytest.raises(DataError, match="flat_test.csv: the test split has every score equal to 2"):
        load_user_tasks(tmp_path, "sts")


def test_declared_score_range_is_enforced(tmp_path):
    _sts(tmp_path / "unit_test.csv")  # gold 0–5
    with pytest.raises(DataError, match=r"unit_test.csv: .* range 0–1 declared for task 'unit' \("):
        load_user_tasks(tmp_path, "sts", score_range=(0, 1))


@pytest.mark.parametrize(
    ("families", "message"),
    [
        ("stss", r"task 'a': unknown family 'stss'\. Did you mean 'sts'\?"),
        ({"a": "sts", "b": "sts"}, r"no test file for task\(s\) \['b'\]; expected b_test.csv"),
    ],
)
def test_bad_family_or_missing_task_is_named(tmp_path, families, message):
    _sts(tmp_path / "a_test.csv")
    with pytest.raises(DataError, match=message):
        user_tasks(tmp_path, families)


def test_empty_or_missing_source_is_explained(tmp_path):
    (tmp_path / "notes.csv").write_text("x\n1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no test file for task\(s\) \(any\).*\['notes.csv'\]"):
        user_tasks(tmp_path, "sts")
    with pytest.raises(DataError, match="no such file or folder"):
        user_tasks(tmp_path / "nope", "sts")


def test_train_file_given_as_the_task_is_refused(tmp_path):
    _sts(tmp_path / "a_train.csv")
    with pytest.raises(DataError, match="a_train.csv: this is a train/dev file"):
        user_tasks(tmp_path / "a_train.csv", "sts")


def test_name_unusable_in_metric_keys_is_refused(tmp_path):
    _sts(tmp_path / "a@b_test.csv")
    with pytest.raises(DataError, match=r"task name 'a@b' cannot be used in metric keys"):
        user_tasks(tmp_path, "sts")


def test_bad_score_range_and_ood_names(tmp_path):
    _sts(tmp_path / "a_test.csv")
    with pytest.raises(ValueError, match=r"score_range must be \(low, high\)"):
        user_tasks(tmp_path, "sts", score_range=(5, 0))
    with pytest.raises(ValueError, match=r"ood names \['b'\] are not among the tasks \['a'\]"):
        user_tasks(tmp_path, "sts", ood=["b"])


def test_user_and_built_in_tasks_mix_but_names_must_differ(tmp_path, demo_dir):
    _sts(tmp_path / "mine_test.csv")
    tasks = load_tasks(["stsb", *user_tasks(tmp_path, "sts")], demo_dir)
    assert [t.spec.name for t in tasks] == ["stsb", "mine"]
    _sts(tmp_path / "stsb_test.csv")
    with pytest.raises(DataError, match="task 'stsb' is listed twice"):
        load_tasks(["stsb", *user_tasks(tmp_path, {"stsb": "sts"})], demo_dir)


def test_one_string_names_the_folder_and_families(tmp_path):
    _sts(tmp_path / "a_test.csv")
    _pairs(tmp_path / "b_test.csv")
    assert [s.family for s in parse_user_tasks(str(tmp_path))] == ["sts", "pair"]  # auto
    assert [s.name for s in parse_user_tasks(f"{tmp_path}:b=pair")] == ["b"]
    both = parse_user_tasks(f"{tmp_path}:a=sts, b=pair")
    assert [(s.name, s.family) for s in both] == [("a", "sts"), ("b", "pair")]
    with pytest.raises(DataError, match=r"a_test.csv: missing column\(s\) \['label'\]"):
        load_tasks(parse_user_tasks(f"{tmp_path}:pair"), None)  # a_test.csv has no label
    with pytest.raises(DataError, match="cannot read the task list 'a=sts,b'"):
        parse_user_tasks(f"{tmp_path}:a=sts,b")
    assert user_tasks(tmp_path, "auto", ood="a")[0].ood
