from __future__ import annotations

import pandas as pd
import pytest

from samd_common.data.corpus import (
    audit_corpus,
    build_corpus,
    build_corpus_from,
    load_corpus,
    normalize_text,
)
from samd_common.data.corpus_sources import parse_source, read_source
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


# ------------------------------------------------------------------ every corpus source
TEXTS = ["A man is playing a guitar.", "Café naïve résumé.", "東京は日本の首都です。", "ok 🙂"]


def _write(path, texts, column="text", source=None):
    """``texts`` as a corpus file whose format follows ``path``'s suffix."""
    frame = pd.DataFrame({column: texts})
    if source is not None:
        frame["source"] = source
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif path.suffix == ".json":
        frame.to_json(path, orient="records", force_ascii=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


FORMATS = ["c.csv", "c.jsonl", "c.json", "c.parquet", "c.txt"]


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_loads_the_same_texts_and_the_same_sample(tmp_path, name):
    ref = _write(tmp_path / "ref.csv", TEXTS * 3)
    path = _write(tmp_path / name, TEXTS * 3)
    assert load_corpus(path) == TEXTS * 3
    assert load_corpus(str(path), max_texts=5, seed=3) == load_corpus(ref, max_texts=5, seed=3)


def test_text_file_strips_lines_and_skips_blank_ones(tmp_path):
    (tmp_path / "c.txt").write_text("  first  \n\n\t\nsecond\r\nthird", encoding="utf-8")
    assert load_corpus(tmp_path / "c.txt") == ["first", "second", "third"]


def test_folder_reads_every_file_in_path_order_and_names_the_source(tmp_path):
    _write(tmp_path / "b.jsonl", TEXTS[2:])
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "a.parquet", TEXTS[:1])
    _write(tmp_path / "a.txt", TEXTS[1:2])
    (tmp_path / ".hidden").mkdir()
    _write(tmp_path / ".hidden" / "x.txt", ["never read"])
    (tmp_path / "notes.md").write_text("not a corpus file")
    assert load_corpus(tmp_path) == [TEXTS[1], *TEXTS[2:], TEXTS[0]]
    frame = read_source(tmp_path)
    assert frame["source"].tolist() == ["a.txt", "b.jsonl", "b.jsonl", "sub/a.parquet"]


def test_named_column_by_suffix_or_argument(tmp_path):
    path = _write(tmp_path / "c.jsonl", TEXTS, column="sentence")
    assert load_corpus(f"{path}#sentence") == TEXTS
    assert load_corpus(path, column="sentence") == TEXTS


@pytest.mark.parametrize("name", ["c.csv", "c.jsonl", "c.parquet"])
def test_missing_column_names_the_file_and_the_columns_found(tmp_path, name):
    path = _write(tmp_path / name, TEXTS, column="sentence", source="A")
    with pytest.raises(DataError) as err:
        load_corpus(path)
    message = str(err.value)
    assert str(path) in message and "'text'" in message
    assert "'sentence'" in message and "'source'" in message


@pytest.mark.parametrize("name", FORMATS)
def test_empty_corpus_is_one_clear_error(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_text("text,source\n")
    elif name.endswith(".parquet"):
        pd.DataFrame({"text": pd.Series([], dtype=str)}).to_parquet(path)
    elif name.endswith(".txt"):
        path.write_text("\n  \n")
    else:
        path.write_text("")
    with pytest.raises(DataError, match="no texts") as err:
        load_corpus(path)
    assert str(path) in str(err.value)


def test_folder_without_corpus_files_says_what_it_found(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(DataError, match=r"no corpus files .*readme\.md"):
        load_corpus(tmp_path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"text": "fine"}\n{"text": ""}\n', "empty at row 2"),
        ('{"text": "fine"}\n{"text": null}\n', "at row 2 is not a text but null"),
        ('{"text": "fine"}\n{"text": [1, 2]}\n', r"at row 2 is not a text but list \[1, 2\]"),
        ('{"text": 3}\n{"text": 4}\n', "at row 1 is not a text but int 3"),
        ("{not json\n", "cannot be read as json"),
    ],
)
def test_bad_jsonl_rows_name_the_file_and_the_row(tmp_path, content, match):
    (tmp_path / "c.jsonl").write_text(content)
    with pytest.raises(DataError, match=match) as err:
        load_corpus(tmp_path / "c.jsonl")
    assert str(tmp_path / "c.jsonl") in str(err.value)


def test_missing_path_and_unsupported_type(tmp_path):
    with pytest.raises(DataError, match="corpus file or folder not found"):
        load_corpus(tmp_path / "nope.jsonl")
    (tmp_path / "c.xlsx").write_text("x")
    with pytest.raises(DataError, match="unsupported corpus file type '.xlsx'"):
        load_corpus(tmp_path / "c.xlsx")


@pytest.mark.parametrize("max_texts", [0, -10, 2.5, True])
def test_max_texts_must_be_a_positive_integer(tmp_path, max_texts):
    path = _write(tmp_path / "c.csv", TEXTS)
    with pytest.raises(ValueError, match="max_texts must be a positive integer"):
        load_corpus(path, max_texts=max_texts)


def _leaky_texts(demo_dir):
    planted = pd.read_csv(demo_dir / "stsb_test.csv")["sentence1"].iloc[0]
    return ["own text one", "  " + planted.upper() + " ", "Own  text ONE", "own text two"], planted


@pytest.mark.parametrize("name", FORMATS)
def test_dedup_and_leakage_filter_are_the_same_for_every_format(tmp_path, demo_dir, name):
    texts, planted = _leaky_texts(demo_dir)
    path = _write(tmp_path / name, texts)
    frame, report = build_corpus_from(path, [demo_dir])
    assert frame["text"].tolist() == ["own text one", "own text two"]
    assert report.sources[str(path)] == {
        "train_texts": 4,
        "dropped_eval_overlap": 1,
        "dropped_duplicates": 1,
        "clean": 2,
        "sampled": 2,
    }
    assert all(row["in_corpus"] == 0 for row in report.overlap.values())
    assert load_corpus(path, protect_dirs=[demo_dir]) == ["own text one", "own text two"]
    assert audit_corpus(path, [demo_dir])["overlap"]["stsb"]["test_in_corpus"] == 1


def test_folder_report_counts_per_file_and_samples_across_files(tmp_path, demo_dir):
    texts, _ = _leaky_texts(demo_dir)
    _write(tmp_path / "a.jsonl", texts[:2])
    _write(tmp_path / "b.txt", texts[2:] + ["third one", "fourth one"])
    frame, report = build_corpus_from(tmp_path, [demo_dir], max_texts=2, seed=0)
    assert len(frame) == 2 and set(frame["source"]) <= {"a.jsonl", "b.txt"}
    assert report.sources["a.jsonl"]["dropped_eval_overlap"] == 1
    assert report.sources["b.txt"]["dropped_duplicates"] == 1
    assert sum(row["sampled"] for row in report.sources.values()) == 2
    audit = audit_corpus(tmp_path, [demo_dir])
    assert audit["leaking_rows_by_source"] == {"a.jsonl": 1, "b.txt": 0}


def test_hub_source_strings_parse_into_id_config_split_and_column():
    src = parse_source("hf:sentence-transformers/all-nli:pair@dev#anchor")
    assert (src.kind, src.location, src.config, src.split, src.column) == (
        "hub",
        "sentence-transformers/all-nli",
        "pair",
        "dev",
        "anchor",
    )
    bare = parse_source("owner/corpus")
    assert (bare.kind, bare.location, bare.config, bare.split, bare.column) == (
        "hub",
        "owner/corpus",
        None,
        "train",
        "text",
    )
    assert parse_source("hf:imdb#review").name == "hf:imdb@train"


def test_hub_dataset_goes_through_datasets_load_dataset(tmp_path, monkeypatch, demo_dir):
    """The Hub path, offline: ``load_dataset(id, config, split=…)`` answered from a local file."""
    datasets = pytest.importorskip("datasets")
    texts, _ = _leaky_texts(demo_dir)
    local = _write(tmp_path / "hub.jsonl", texts, column="anchor")
    real = datasets.load_dataset
    calls = []

    def fake(path, name=None, split=None, **kw):
        if path == "owner/corpus":
            calls.append((name, split))
            return real("json", data_files=[str(local)], split="train", cache_dir=str(tmp_path))
        return real(path, name, split=split, **kw)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    frame, report = build_corpus_from("owner/corpus:pair@train#anchor", [demo_dir])
    assert calls == [("pair", "train")]
    assert frame["text"].tolist() == ["own text one", "own text two"]
    assert report.sources["owner/corpus:pair@train#anchor"]["dropped_eval_overlap"] == 1
    with pytest.raises(DataError, match=r"hf:owner/corpus@train: missing column 'text'.*'anchor'"):
        load_corpus("owner/corpus")


def test_unreachable_hub_dataset_is_one_clear_error():
    pytest.importorskip("datasets")
    with pytest.raises(DataError, match="hf:nobody/no-such-corpus@train: not a local file"):
        load_corpus("nobody/no-such-corpus")
