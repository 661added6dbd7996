"""MTEB classification tasks as data, and their loading (the data side of ``mteb_eval``).

Tasks are data (``MTEB_TASKS``): the 16 tasks of the SKD reference (addressable by index 1–16 or
name) and AmazonCounterfactual, with mteb 1.12.75's metadata (samples per label, splits, hub ids
and dataset transforms). They are read from ``{Task}[_{subset}]_{split}.csv`` files
(``text,label``) in a data folder (``../shared/data/mteb`` here); anything else loads through the
``datasets`` library when a hub is reachable and fails with :class:`TaskUnavailable` and a clear
message otherwise. Any task given as train/test CSVs works through :func:`csv_task`.

The evaluation protocol that scores an encoder on loaded tasks is :mod:`~.mteb`.

References:
    Muennighoff et al., "MTEB: Massive Text Embedding Benchmark", EACL 2023,
    https://arxiv.org/abs/2210.07316
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samd_common.data.tasks import DataError, read_csv_checked

MTEB_SEED = 42  # AbsTask(seed=42) and Evaluator(seed=42) in mteb
SPLIT_ALIASES = {"validation": ("validation", "dev", "valid", "val"), "train": ("train",)}


class TaskUnavailable(DataError):
    """A task has no local files and cannot be downloaded here; the message says what to do."""


@dataclass(frozen=True)
class MTEBTask:
    """One MTEB classification task, declared as data (values from mteb 1.12.75's metadata)."""

    name: str  # MTEB task name, e.g. "Banking77Classification"
    index: int | None = None  # position 1–16 in the SKD reference scripts (None: not one of them)
    samples_per_label: int = 8  # mteb's metadata_dict["samples_per_label"] (default 8)
    n_experiments: int = 10  # mteb's metadata_dict["n_experiments"] (default 10)
    eval_splits: tuple[str, ...] = ("test",)  # scored splits; the last one is the main one
    train_split: str = "train"  # where the per-label undersample is drawn from
    subsets: tuple[str, ...] = ()  # hf subsets (AmazonCounterfactual "en", "en-ext"); () = one
    hf_path: str = ""  # Hugging Face dataset id (hub fallback)
    hf_name: str | None = None  # dataset config name
    revision: str | None = None  # dataset revision pinned by mteb
    rename: tuple[tuple[str, str], ...] = ()  # column renames applied by mteb's dataset_transform
    subsample: tuple[str, ...] = ()  # splits mteb cuts to 2048 rows (stratified, seed 42)
    hf_filter: str | None = None  # boolean column rows must have (ToxicChat: human_annotation)

    @property
    def main_split(self) -> str:
        """The split whose scores are the task's headline numbers (test)."""
        return "test" if "test" in self.eval_splits else self.eval_splits[-1]


def _t(name: str, index: int | None = None, **kw) -> MTEBTask:
    return MTEBTask(name=name, index=index, **kw)


MTEB_TASKS: dict[str, MTEBTask] = {
    t.name: t
    for t in (
        # The SKD reference's 16 tasks, in the order of its run_*.sh scripts (1-based index).
        _t("ArxivClassification", 1, hf_path="ccdv/arxiv-classification"),
        _t("Banking77Classification", 2, hf_path="mteb/banking77"),
        _t(
            "DBpediaClassification",
            3,
            hf_path="fancyzhx/dbpedia_14",
            rename=(("content", "text"),),
            subsample=("train", "test"),
        ),
        _t(
            "EmotionClassification",
            4,
            samples_per_label=16,
            eval_splits=("validation", "test"),
            hf_path="mteb/emotion",
        ),
        _t(
            "FinancialPhrasebankClassification",
            5,
            eval_splits=("train",),
            hf_path="takala/financial_phrasebank",
            hf_name="sentences_allagree",
            rename=(("sentence", "text"),),
        ),
        _t("FrenkEnClassification", 6, hf_path="classla/FRENK-hate-en"),
        _t("ImdbClassification", 7, hf_path="mteb/imdb"),
        _t(
            "CanadaTaxCourtOutcomesLegalBenchClassification",
            8,
            hf_path="nguha/legalbench",
            hf_name="canada_tax_court_outcomes",
            rename=(("answer", "label"),),
        ),
        _t("NewsClassification", 9, hf_path="fancyzhx/ag_news"),
        _t("PatentClassification", 10, hf_path="ccdv/patent-classification", subsample=("test",)),
        _t(
            "PoemSentimentClassification",
            11,
            eval_splits=("validation", "test"),
            hf_path="google-research-datasets/poem_sentiment",
            rename=(("verse_text", "text"),),
        ),
        _t(
            "ToxicChatClassification",
            12,
            hf_path="lmsys/toxic-chat",
            hf_name="toxicchat0124",
            rename=(("user_input", "text"), ("toxicity", "label")),
            subsample=("test",),
            hf_filter="human_annotation",
        ),
        _t(
            "ToxicConversationsClassification",
            13,
            samples_per_label=16,
            hf_path="mteb/toxic_conversations_50k",
            subsample=("test",),
        ),
        _t(
            "TweetSentimentExtractionClassification",
            14,
            samples_per_label=32,
            hf_path="mteb/tweet_sentiment_extraction",
        ),
        _t(
            "TweetTopicSingleClassification",
            15,
            eval_splits=("test_2021",),
            train_split="train_2021",
            hf_path="cardiffnlp/tweet_topic_single",
        ),
        _t(
            "YelpReviewFullClassification",
            16,
            samples_per_label=128,
            hf_path="Yelp/yelp_review_full",
            subsample=("test",),
        ),
        # Offline here as well; not one of the 16.
        _t(
            "AmazonCounterfactualClassification",
            samples_per_label=32,
            eval_splits=("validation", "test"),
            subsets=("en", "en-ext"),
            hf_path="mteb/amazon_counterfactual",
        ),
    )
}
REFERENCE_TASKS: tuple[str, ...] = tuple(
    t.name for t in sorted(MTEB_TASKS.values(), key=lambda t: t.index or 99) if t.index
)


def get_mteb_task(key: str | int) -> MTEBTask:
    """A task by reference index (1–16, int or digit string), name or short name (``"Banking77"``).

    Raises:
        KeyError: unknown name (with a "did you mean") or index out of 1–16.
    """
    if isinstance(key, int) or str(key).isdigit():
        i = int(key)
        if not 1 <= i <= len(REFERENCE_TASKS):
            raise KeyError(f"Task index {i} is outside 1–{len(REFERENCE_TASKS)} (SKD reference).")
        return MTEB_TASKS[REFERENCE_TASKS[i - 1]]
    by_lower = {k.lower(): k for k in MTEB_TASKS}
    for cand in (key, f"{key}Classification"):
        if cand.lower() in by_lower:
            return MTEB_TASKS[by_lower[cand.lower()]]
    close = difflib.get_close_matches(key, MTEB_TASKS, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"Unknown MTEB task {key!r}.{hint} Known: {', '.join(MTEB_TASKS)}")


@dataclass
class LabeledTexts:
    """Texts and their labels (any hashable label type, kept as strings)."""

    texts: list[str]
    labels: np.ndarray  # (N,) str
    source: str = ""  # file or dataset it came from

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TaskSplits:
    """A loaded task: for each subset (``""`` when there are none) its splits by name."""

    task: MTEBTask
    subsets: dict[str, dict[str, LabeledTexts]]


def read_labeled_csv(path: str | Path) -> LabeledTexts:
    """Read a ``text,label`` CSV (validated: columns, empty texts).

    Raises:
        DataError: naming the file and what is wrong.
    """
    path = Path(path)
    frame = read_csv_checked(path, ("text", "label"))
    if frame.empty:
        raise DataError(f"{path}: no rows.")
    empty = np.flatnonzero(frame["text"].str.strip().eq("").to_numpy())
    if len(empty):
        raise DataError(f"{path}: {len(empty)} empty text(s) (first at line {empty[0] + 2}).")
    return LabeledTexts(frame["text"].tolist(), frame["label"].str.strip().to_numpy(str), str(path))


def csv_task(
    name: str, train_csv: str | Path, test_csv: str | Path, samples_per_label: int = 8
) -> TaskSplits:
    """Any classification task given as ``text,label`` train/test CSVs, MTEB protocol."""
    task = MTEBTask(name=name, samples_per_label=samples_per_label)
    splits = {"train": read_labeled_csv(train_csv), "test": read_labeled_csv(test_csv)}
    return TaskSplits(task, {"": splits})


def _find_file(data_dir: Path, stem: str, split: str) -> Path | None:
    for alias in SPLIT_ALIASES.get(split, (split,)):
        path = data_dir / f"{stem}_{alias}.csv"
        if path.is_file():
            return path
    return None


def _hub_split(task: MTEBTask, subset: str, split: str) -> LabeledTexts:
    """One split through ``datasets`` (the hub path of mteb), with mteb's dataset_transform."""
    import datasets  # optional dependency; imported only when a hub is used

    ds = datasets.load_dataset(
        task.hf_path, subset or task.hf_name, revision=task.revision, split=split
    )
    for old, new in task.rename:
        if old in ds.column_names:
            ds = ds.rename_column(old, new)
    if task.hf_filter:
        ds = ds.filter(lambda row: bool(row[task.hf_filter]))
    if split in task.subsample and len(ds) > 2048:
        ds = ds.class_encode_column("label") if ds.features["label"].dtype == "string" else ds
        ds = ds.train_test_split(test_size=2048, seed=MTEB_SEED, stratify_by_column="label")["test"]
    return LabeledTexts(list(ds["text"]), np.asarray(ds["label"]).astype(str), task.hf_path)


def load_mteb_task(
    key: str | int | MTEBTask, data_dir: str | Path | None, splits: Sequence[str] | None = None
) -> TaskSplits:
    """Load a task's train split and evaluation splits (default: all of ``task.eval_splits``).

    Local CSVs in ``data_dir`` win; otherwise the hub is tried through ``datasets``.

    Raises:
        TaskUnavailable: a split is missing locally and the hub cannot be used (offline or
            ``datasets`` not installed); the message names the files it looked for.
    """
    task = key if isinstance(key, MTEBTask) else get_mteb_task(key)
    wanted = [task.train_split, *(splits or task.eval_splits)]
    data_dir = Path(data_dir) if data_dir else None
    out: dict[str, dict[str, LabeledTexts]] = {}
    for subset in task.subsets or ("",):
        stem = f"{task.name}_{subset}" if subset else task.name
        out[subset] = {}
        for split in dict.fromkeys(wanted):
            path = _find_file(data_dir, stem, split) if data_dir else None
            if path is not None:
                out[subset][split] = read_labeled_csv(path)
                continue
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            try:
                if offline:
                    raise ImportError("HF_HUB_OFFLINE=1")
                out[subset][split] = _hub_split(task, subset, split)
            except Exception as err:  # noqa: BLE001 - any hub/import failure becomes one message
                where = f"{data_dir}/{stem}_{split}.csv" if data_dir else "no data folder given"
                raise TaskUnavailable(
                    f"{task.name} (SKD task {task.index or '-'}): split {split!r} is not available "
                    f"offline ({where}) and the hub could not be used ({type(err).__name__}: "
                    f"{err}). Put `text,label` CSVs named {stem}_{{train,test}}.csv in the data "
                    f"folder, or run where huggingface.co is reachable with `pip install datasets`"
                    f" and HF_HUB_OFFLINE unset."
                ) from err
    return TaskSplits(task, out)
