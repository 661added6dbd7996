"""The 9-task evaluation suite as data, and validated CSV loading.

One declarative table (``TASKS``) describes every task: family, file-name aliases per split (so
the canonical layout of ``shared/data/eval`` and the paper layout of ``samd/multi-data`` both
load), columns, main score, the declared range of STS gold scores and whether it is
out-of-domain. ``load_task`` also takes a ``TaskSpec`` (a user's own task,
``data.user_tasks``). Every bad input raises one ``DataError`` that names the file, the column
and what to do (the checks live in ``data.checks``).
"""

from __future__ import annotations

import csv
import difflib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from samd_common.data.checks import (
    SPLIT_FIXES,
    DataError,
    canonical_labels,
    check_label_sets,
    check_scores,
    is_nan_text,
    split_problem,
)

log = logging.getLogger(__name__)

FAMILIES = ("classification", "pair", "sts")
SPLITS = ("train", "dev", "test")

POSITIVE_LABELS = frozenset({"1", "1.0", "t", "true", "yes", "entails", "entailment", "paraphrase"})
NEGATIVE_LABELS = frozenset(
    {"0", "0.0", "f", "false", "no", "neutral", "not_entailment", "contradiction"}
)

MAIN_SCORES = {"classification": "accuracy", "pair": "ap", "sts": "spearman"}
STS_SCALE = (0.0, 5.0)  # STS-B, STS12: 0–5; SICK-R's files use 1–5, inside the same scale


@dataclass(frozen=True)
class TaskSpec:
    """One evaluation task, declared as data (like mteb's ``TaskMetadata``)."""

    name: str
    family: str  # "classification" | "pair" | "sts"
    files: dict[str, tuple[str, ...]]  # split -> candidate file names, first found wins
    main_score: str  # metric key reported in the summary tables
    ood: bool = False  # out-of-domain: never part of the distillation corpus
    score_range: tuple[float, float] | None = None  # STS: inclusive gold range; None: finite only
    folder: str | None = None  # folder of the files; None: the evaluation folder (built-ins)

    @property
    def text_columns(self) -> tuple[str, ...]:
        """Text columns of this task's CSVs."""
        return ("text",) if self.family == "classification" else ("sentence1", "sentence2")

    @property
    def label_column(self) -> str:
        """Target column: ``label`` (classification, pair) or ``score`` (STS)."""
        return "score" if self.family == "sts" else "label"


def file_aliases(*stems: str, split: str) -> tuple[str, ...]:
    """File names a split may have, e.g. ``stsb_dev.csv``, ``stsb_validation.csv``."""
    names = {"train": ("train",), "dev": ("dev", "validation", "valid", "val"), "test": ("test",)}
    return tuple(f"{stem}_{suffix}.csv" for stem in stems for suffix in names[split])


def _task(
    name: str,
    family: str,
    stems: tuple[str, ...],
    main: str,
    ood: bool = False,
    **overrides: tuple[str, ...],
) -> TaskSpec:
    files = {split: overrides.get(split, file_aliases(*stems, split=split)) for split in SPLITS}
    return TaskSpec(name, family, files, main, ood, STS_SCALE if family == "sts" else None)


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        # Canonical names first, then the paper repository's names.
        _task("banking77", "classification", ("banking77", "banking"), "accuracy"),
        _task("tweet", "classification", ("tweeteval_emotion", "tweet"), "accuracy"),
        _task("emotion", "classification", ("emotion",), "accuracy", ood=True),
        _task("mrpc", "pair", ("mrpc",), "ap"),
        _task("wic", "pair", ("wic",), "ap"),
        _task("scitail", "pair", ("scitail",), "ap", ood=True),
        _task("stsb", "sts", ("stsb",), "spearman"),
        _task("sickr", "sts", ("sickr", "sick"), "spearman"),
        _task("sts12", "sts", ("sts12",), "spearman", ood=True),
    )
}


def get_task(name: str) -> TaskSpec:
    """Look a task up by name, suggesting the closest name on a typo."""
    try:
        return TASKS[name]
    except KeyError:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"Unknown task {name!r}.{hint} Known tasks: {', '.join(TASKS)}") from None


@dataclass
class Split:
    """One loaded split. ``text2`` is None for classification; ``y`` holds labels or scores."""

    text1: list[str]
    text2: list[str] | None
    y: np.ndarray  # (N,) str labels (classification), int 0/1 (pair) or float (STS)
    path: Path

    def __len__(self) -> int:
        return len(self.text1)

    def subset(self, idx: np.ndarray) -> Split:
        """Rows ``idx`` of this split."""
        t2 = None if self.text2 is None else [self.text2[i] for i in idx]
        return Split([self.text1[i] for i in idx], t2, self.y[idx], self.path)


@dataclass
class TaskData:
    """A task spec plus whichever of its splits exist on disk."""

    spec: TaskSpec
    splits: dict[str, Split]


def find_split_file(spec: TaskSpec, split: str, eval_dir: Path) -> Path | None:
    """First existing file among the split's aliases in ``eval_dir``, or None."""
    for name in spec.files[split]:
        path = eval_dir / name
        if path.is_file():
            return path
    return None


def read_csv_checked(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a comma-separated UTF-8 CSV and check that ``columns`` exist.

    Raises:
        DataError: on a missing file, a wrong delimiter, a missing column or an unreadable file.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found. Check the folder (SAMD_EVAL_DIR / --eval-dir).")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DataError(
            f"{path}: cannot be parsed as a UTF-8 comma-separated CSV ({err})."
        ) from err
    missing = [c for c in columns if c not in frame.columns]
    if missing and len(frame.columns) == 1:
        header = frame.columns[0]
        try:
            delim = csv.Sniffer().sniff(header, delimiters=";\t|").delimiter
        except csv.Error:
            delim = None
        if delim:
            raise DataError(
                f"{path}: the header {header!r} looks {delim!r}-separated; SAMD reads "
                f"comma-separated files. Re-save it with `df.to_csv(path, index=False)`."
            )
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(frame.columns)}. "
            f"Rename the column(s) to {list(columns)}."
        )
    return frame


def _check_texts(frame: pd.DataFrame, column: str, path: Path) -> list[str]:
    texts = frame[column]
    bad = np.flatnonzero(texts.str.strip().eq("").to_numpy() | texts.str.lower().eq("nan"))
    if len(bad):
        rows = ", ".join(str(i + 2) for i in bad[:5])  # +2: 1-based plus the header line
        raise DataError(
            f"{path}: column {column!r} has {len(bad)} empty or NaN text(s) (file lines {rows}"
            f"{', …' if len(bad) > 5 else ''}). Drop or fill those rows."
        )
    return texts.tolist()


def _parse_scores(raw: pd.Series, spec: TaskSpec, path: Path) -> np.ndarray:
    scores = pd.to_numeric(raw, errors="coerce")
    unparsable = np.flatnonzero(scores.isna().to_numpy() & ~is_nan_text(raw.to_numpy()))
    if len(unparsable):
        row = int(unparsable[0]) + 2
        raise DataError(
            f"{path}: column 'score' must be numeric; line {row} has {raw.iloc[row - 2]!r}."
        )
    scores = scores.to_numpy(dtype=np.float64)
    check_scores(scores, path, "score", spec.name, spec.score_range)
    return scores


def _parse_labels(frame: pd.DataFrame, spec: TaskSpec, path: Path) -> np.ndarray:
    raw = frame[spec.label_column].str.strip()
    if (raw == "").any():
        row = int(np.flatnonzero(raw.eq("").to_numpy())[0]) + 2
        raise DataError(f"{path}: column {spec.label_column!r} is empty at line {row}.")
    if spec.family == "classification":
        return canonical_labels(raw.to_numpy(dtype=object).astype(str))
    if spec.family == "sts":
        return _parse_scores(raw, spec, path)
    lower = raw.str.lower()
    unknown = sorted(set(lower) - POSITIVE_LABELS - NEGATIVE_LABELS)
    if unknown:
        raise DataError(
            f"{path}: column 'label' has unknown pair label(s) {unknown[:5]}; use 1/0, T/F, "
            f"true/false or entails/neutral (positive first)."
        )
    return lower.isin(POSITIVE_LABELS).to_numpy(dtype=np.int64)


def load_split(spec: TaskSpec, path: Path) -> Split:
    """Load and validate one split file of ``spec`` (columns, texts, labels or score range)."""
    frame = read_csv_checked(path, (*spec.text_columns, spec.label_column))
    if frame.empty:
        raise DataError(f"{path}: no rows.")
    text1 = _check_texts(frame, spec.text_columns[0], path)
    text2 = _check_texts(frame, spec.text_columns[1], path) if len(spec.text_columns) > 1 else None
    return Split(text1, text2, _parse_labels(frame, spec, path), path)


def fit_split_name(family: str, splits: dict[str, Split] | set[str]) -> str | None:
    """The split a classifier (train) or a pair threshold (dev, else train) is fitted on."""
    if family == "sts":
        return None
    name = "train" if family == "classification" else "dev" if "dev" in splits else "train"
    return name if name in splits else None


def check_splits(spec: TaskSpec, splits: dict[str, Split]) -> None:
    """The splits the evaluator uses can be scored (see ``data.checks``).

    Raises:
        DataError: a classification task without a train split, a degenerate test or fit split
            (one class, < 2 rows, constant scores), or test labels unseen in train.
    """
    fit = fit_split_name(spec.family, splits)
    if spec.family == "classification" and fit is None:
        raise DataError(
            f"task {spec.name!r}: classification needs a train split next to "
            f"{splits['test'].path}; expected one of {list(spec.files['train'])}."
        )
    for role, name in (("test", "test"), ("fit", fit)):
        problem = name and split_problem(spec.family, splits[name].y, role)
        if problem:
            raise DataError(
                f"{splits[name].path}: the {name} split {problem}; task {spec.name!r} cannot be "
                f"scored. {SPLIT_FIXES[spec.family]}"
            )
    if spec.family == "classification":
        test, train = splits["test"], splits[fit]
        check_label_sets(test.y, train.y, test.path, train.path)


def _resolve(task: str | TaskSpec) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else get_task(task)


def load_task(task: str | TaskSpec, eval_dir: str | Path | None) -> TaskData:
    """Load and check every split of ``task`` that exists; the test split is required.

    Args:
        task: a built-in task name (``TASKS``) or a ``TaskSpec`` (e.g. ``data.user_tasks``).
        eval_dir: the folder of the files, unless the spec names its own ``folder``.

    Raises:
        DataError: if the folder or the test file is missing, or any file is malformed or
            degenerate (see ``check_splits``).
    """
    spec = _resolve(task)
    if not (spec.folder or eval_dir):
        raise DataError(f"task {spec.name!r}: no evaluation folder given. Set SAMD_EVAL_DIR.")
    folder = Path(spec.folder or eval_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: evaluation folder not found. Set SAMD_EVAL_DIR or --eval-dir.")
    splits = {}
    for split in SPLITS:
        path = find_split_file(spec, split, folder)
        if path is not None:
            splits[split] = load_split(spec, path)
    if "test" not in splits:
        raise DataError(
            f"{folder}: no test file for task {spec.name!r}; "
            f"expected one of {list(spec.files['test'])}."
        )
    check_splits(spec, splits)
    log.debug("task %s: %s", spec.name, {k: len(v) for k, v in splits.items()})
    return TaskData(spec, splits)


def load_tasks(
    names: list[str | TaskSpec] | tuple[str | TaskSpec, ...] | None, eval_dir: str | Path | None
) -> list[TaskData]:
    """Load several tasks (all nine when ``names`` is None); names and specs may mix.

    Raises:
        DataError: as ``load_task``, or when two tasks share a name (their keys would collide).
    """
    specs = [_resolve(t) for t in (names or TASKS)]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise DataError(
                f"task {spec.name!r} is listed twice; its metric keys would collide. "
                "Rename one of its files or drop the duplicate."
            )
        seen.add(spec.name)
    return [load_task(spec, eval_dir) for spec in specs]


def cap_split(split: Split, max_rows: int | None, seed: int, stratify: bool) -> Split:
    """Seeded subsample of at most ``max_rows`` rows (stratified by label when asked)."""
    n = len(split)
    if max_rows is None or n <= max_rows:
        return split
    rng = np.random.default_rng(seed)
    if not stratify:
        return split.subset(np.sort(rng.choice(n, size=max_rows, replace=False)))
    labels, inverse = np.unique(split.y, return_inverse=True)
    quota = np.maximum(1, np.round(np.bincount(inverse) * max_rows / n)).astype(int)
    keep = [rng.permutation(np.flatnonzero(inverse == k))[: quota[k]] for k in range(len(labels))]
    return split.subset(np.sort(np.concatenate(keep)))
