"""MTEB-style classification evaluation (DESIGN.md §7.2), reproduced without the ``mteb`` package.

The protocol is that of ``mteb`` 1.12 (``AbsTaskClassification`` and
``logRegClassificationEvaluator``, read in the 1.12.0 and 1.12.75 wheels; unchanged in 1.34):

1. ``n_experiments`` (10) experiments. Before each one the global NumPy RNG is re-seeded with 42
   (``AbsTask.__init__`` seeds it, then every ``Evaluator.__init__`` seeds it again) and the *same*
   index array is shuffled in place with it, so experiment ``e`` sees ``arange(n)`` permuted
   ``e + 1`` times by one fixed permutation.
2. Walking the shuffled indices, the first ``samples_per_label`` rows of each label form the
   training set (8 by default; Emotion 16, TweetSentimentExtraction and AmazonCounterfactual 32).
3. ``LogisticRegression(random_state=42, max_iter=100)`` (lbfgs, C = 1, no feature scaling) is
   fitted on the raw embeddings and scored on the whole test split: accuracy, macro-F1,
   weighted-F1 and, for two labels, average precision of the hard predictions.
4. The scores are averaged over the experiments; the test split is encoded once.

Scores are reported ×100 with flat keys: ``"{task}/accuracy@{dim}"`` for the main split (test),
``"{task}/{split}/accuracy@{dim}"`` for other evaluation splits (Emotion's validation),
``"{task}/{subset}/…"`` for multi-subset tasks, and ``"avg/mteb/accuracy@{dim}"``.

Tasks are data (``MTEB_TASKS``): the 16 tasks of the SKD reference (addressable by index 1–16 or
name) and AmazonCounterfactual. They are read from ``{Task}[_{subset}]_{split}.csv`` files
(``text,label``) in a data folder (``../shared/data/mteb`` here); anything else loads through the
``datasets`` library when a hub is reachable and fails with a clear message otherwise. Any task
given as train/test CSVs works through :func:`csv_task`.

References:
    Muennighoff et al., "MTEB: Massive Text Embedding Benchmark", EACL 2023,
    https://arxiv.org/abs/2210.07316
"""

from __future__ import annotations

import difflib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, average_precision_score, f1_score

from samd_common.data import DataError, read_csv_checked

log = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]
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


def undersample_indices(
    labels: Sequence, samples_per_label: int, n_experiments: int, seed: int = MTEB_SEED
) -> list[np.ndarray]:
    """The training rows of each experiment, exactly as mteb's ``_undersample_data`` picks them.

    One index array is shuffled in place before every experiment by a generator freshly seeded
    with ``seed`` (mteb re-seeds NumPy's global RNG in every ``Evaluator.__init__``); the first
    ``samples_per_label`` rows of each label, in shuffled order, are kept.

    Args:
        labels: (N,) labels of the train split.
        samples_per_label: rows kept per label.
        n_experiments: number of experiments.
        seed: mteb's seed (42).

    Returns:
        ``n_experiments`` arrays of row indices, each in shuffled order.
    """
    if samples_per_label < 1 or n_experiments < 1:
        raise ValueError(
            f"samples_per_label ({samples_per_label}) and n_experiments ({n_experiments}) must "
            f"be ≥ 1."
        )
    codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)[1]
    idxs = np.arange(len(codes))
    out = []
    for _ in range(n_experiments):
        np.random.RandomState(seed).shuffle(idxs)  # legacy RNG = np.random.seed(42); shuffle
        c = codes[idxs]
        order = np.argsort(c, kind="stable")
        sorted_c = c[order]
        first = np.flatnonzero(np.r_[True, sorted_c[1:] != sorted_c[:-1]])  # group starts
        rank = np.empty(len(c), dtype=np.int64)
        rank[order] = np.arange(len(c)) - np.repeat(first, np.diff(np.r_[first, len(c)]))
        out.append(idxs[rank < samples_per_label].copy())
    return out


def logistic_regression_scores(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    seed: int = MTEB_SEED,
    max_iter: int = 100,
) -> dict[str, float]:
    """The ``logRegClassificationEvaluator`` of mteb on precomputed embeddings (scores ×100).

    Args:
        x_train: (n, D) embeddings of the undersampled train rows.
        y_train: (n,) labels.
        x_test: (N, D) test embeddings.
        y_test: (N,) labels.
        seed: ``random_state`` of the classifier.
        max_iter: lbfgs iteration cap (mteb: 100).

    Returns:
        ``accuracy``, ``f1`` (macro), ``f1_weighted`` and, with two labels, ``ap``.
    """
    clf = LogisticRegression(random_state=seed, max_iter=max_iter)
    clf.fit(x_train, y_train)
    pred = clf.predict(x_test)
    scores = {
        "accuracy": 100 * accuracy_score(y_test, pred),
        "f1": 100 * f1_score(y_test, pred, average="macro"),
        "f1_weighted": 100 * f1_score(y_test, pred, average="weighted"),
    }
    classes = np.unique(y_train)
    if len(classes) == 2:  # mteb scores AP of the hard predictions, positive = larger label
        scores["ap"] = 100 * average_precision_score(y_test == classes[1], pred == classes[1])
    return scores


def _at_dim(emb: np.ndarray, dim: int) -> np.ndarray:
    """Full width: unchanged (as mteb). Prefix: first ``dim`` coordinates, re-normalised."""
    if dim == emb.shape[1]:
        return emb
    from samd_common.evaluation import truncate

    return truncate(emb, dim)


@dataclass
class MTEBResult:
    """Flat metrics plus per-experiment scores and costs."""

    metrics: dict[str, float]
    dims: list[int]
    per_experiment: dict[str, list[float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def evaluate_mteb(
    encoder: EncodeFn | object,
    tasks: Sequence[TaskSplits],
    dims: Sequence[int] | None = None,
    samples_per_label: int | None = None,
    n_experiments: int | None = None,
    seed: int = MTEB_SEED,
    max_iter: int = 100,
) -> MTEBResult:
    """Score ``encoder`` on loaded tasks with the MTEB classification protocol.

    Every distinct text (test splits and the union of all experiments' train rows) is encoded
    once; each dim is scored on truncated, re-normalised copies of those vectors.

    Args:
        encoder: ``texts -> (N, D)`` callable or an object with ``.encode(texts)``.
        tasks: from :func:`load_mteb_task` / :func:`csv_task`.
        dims: Matryoshka dims; None → the full width only.
        samples_per_label: override every task's value (None: the task's own, as mteb).
        n_experiments: override every task's value (None: the task's own, 10).
        seed: undersampling and classifier seed (mteb: 42).
        max_iter: classifier iteration cap (mteb: 100).

    Returns:
        :class:`MTEBResult` with ``"{task}/accuracy@{dim}"``, ``"{task}/f1@{dim}"``, …,
        ``"{task}/accuracy_std@{dim}"`` and ``"avg/mteb/accuracy@{dim}"``.
    """
    encode = encoder.encode if hasattr(encoder, "encode") else encoder
    start = time.perf_counter()
    plans = []  # (key prefix, train rows per experiment, train split, eval splits)
    texts: dict[str, None] = {}
    for ts in tasks:
        spl = samples_per_label or ts.task.samples_per_label
        n_exp = n_experiments or ts.task.n_experiments
        for subset, splits in ts.subsets.items():
            train = splits[ts.task.train_split]
            rows = undersample_indices(train.labels, spl, n_exp, seed)
            evals = {s: splits[s] for s in ts.task.eval_splits if s in splits}
            if not evals:
                raise DataError(f"{ts.task.name}: none of {ts.task.eval_splits} was loaded.")
            prefix = f"{ts.task.name}/{subset}" if subset else ts.task.name
            plans.append((prefix, ts.task.main_split, rows, train, evals))
            texts.update(dict.fromkeys(train.texts[i] for i in np.unique(np.concatenate(rows))))
            for split in evals.values():
                texts.update(dict.fromkeys(split.texts))
    ordered = list(texts)
    row_of = {t: i for i, t in enumerate(ordered)}
    t0 = time.perf_counter()
    emb = np.asarray(encode(ordered), dtype=np.float32)  # (N, D)
    encode_s = time.perf_counter() - t0
    dims = sorted(set(dims or [emb.shape[1]]), reverse=True)
    if dims[0] > emb.shape[1]:
        raise ValueError(f"dims {dims} exceed the embedding width {emb.shape[1]}.")
    metrics: dict[str, float] = {}
    per_exp: dict[str, list[float]] = {}
    for dim in dims:
        vecs = _at_dim(emb, dim)
        mains = []
        for prefix, main_split, rows, train, evals in plans:
            for split_name, split in evals.items():
                x_test = vecs[[row_of[t] for t in split.texts]]
                runs = []
                for r in rows:
                    x_tr = vecs[[row_of[train.texts[i]] for i in r]]
                    runs.append(
                        logistic_regression_scores(
                            x_tr, train.labels[r], x_test, split.labels, seed, max_iter
                        )
                    )
                key = prefix if split_name == main_split else f"{prefix}/{split_name}"
                for name in runs[0]:
                    metrics[f"{key}/{name}@{dim}"] = float(np.mean([s[name] for s in runs]))
                acc = [s["accuracy"] for s in runs]
                metrics[f"{key}/accuracy_std@{dim}"] = float(np.std(acc))
                per_exp[f"{key}/accuracy@{dim}"] = acc
            mains.append(metrics[f"{prefix}/accuracy@{dim}"])
        metrics[f"avg/mteb/accuracy@{dim}"] = float(np.mean(mains))
    total_s = time.perf_counter() - start
    log.info("MTEB eval: %d texts, encode %.1fs, total %.1fs", len(ordered), encode_s, total_s)
    return MTEBResult(
        metrics,
        dims,
        per_exp,
        {"encode_s": encode_s, "total_s": total_s, "n_texts": float(len(ordered))},
    )
