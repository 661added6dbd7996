"""Checks that keep a bad evaluation file from ever giving a wrong number.

Loading (``data.tasks``) parses each split, then these checks reject what would make a score
meaningless: STS scores outside the task's declared range or not finite, integral class labels
spelled two ways (``0.0`` vs ``0``; canonicalised here), test labels the classifier never saw,
and degenerate splits (a single class, fewer than two rows, constant gold scores). Each failure is
one ``DataError`` line that names the file, the column, a few offending rows and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

_INT = re.compile(r"[+-]?\d+")
_NAN = frozenset({"nan", "+nan", "-nan"})


class DataError(ValueError):
    """A task file is missing or malformed; the message says which file and how to fix it."""


def _lines(rows: np.ndarray, values: np.ndarray, k: int = 3) -> str:
    """``"line 3: -35, line 7: 99, …"`` for the first ``k`` offending rows (file lines)."""
    shown = ", ".join(f"line {int(r) + 2}: {values[r]:g}" for r in rows[:k])  # +2: header, 1-based
    return shown + (", …" if len(rows) > k else "")


def check_scores(
    scores: np.ndarray,
    path: Path | str,
    column: str,
    task: str,
    score_range: tuple[float, float] | None,
) -> None:
    """Every gold score is finite and inside the task's declared ``score_range``.

    Args:
        scores: (N,) parsed gold scores of one STS file.
        path: the file, for the message.
        column: the score column, for the message.
        task: the task name, for the message.
        score_range: inclusive ``(low, high)``; None checks only finiteness (a user's own task).

    Raises:
        DataError: naming the file, the column, a few offending lines and the expected range.
    """
    bad = ~np.isfinite(scores)
    if score_range is not None:
        low, high = score_range
        with np.errstate(invalid="ignore"):
            bad |= (scores < low) | (scores > high)
    rows = np.flatnonzero(bad)
    if not len(rows):
        return
    if score_range is None:
        raise DataError(
            f"{path}: column {column!r} has {len(rows)} non-finite score(s) "
            f"({_lines(rows, scores)}); task {task!r} needs finite numbers. Fix or drop those rows."
        )
    low, high = score_range
    raise DataError(
        f"{path}: column {column!r} has {len(rows)} score(s) that are not finite or outside "
        f"the range {low:g}–{high:g} declared for task {task!r} ({_lines(rows, scores)}). Fix or "
        f"drop those rows, or rescale the column to {low:g}–{high:g}."
    )


def canonical_labels(raw: np.ndarray) -> np.ndarray:
    """Class labels with integral numbers spelled one way: ``"0.0"``, ``"01"`` → ``"0"``, ``"1"``.

    A column is rewritten only when every label is an integral number (so ``0…4`` written by
    pandas as ``0.0…4.0`` matches a train file's ``0…4``); any other column — words, fractions,
    a mix — is returned unchanged, and letter case is never folded (``"Joy"`` ≠ ``"joy"``).

    Args:
        raw: (N,) str labels as read from the file.

    Returns:
        (N,) str labels.
    """
    canon: dict[str, str] = {}
    for value in np.unique(raw):
        if _INT.fullmatch(value):
            canon[value] = str(int(value))
            continue
        try:
            number = float(value)
        except ValueError:
            return raw
        if not np.isfinite(number) or number != int(number):
            return raw
        canon[value] = str(int(number))
    if all(k == v for k, v in canon.items()):
        return raw
    return np.array([canon[v] for v in raw], dtype=str)


def check_label_sets(
    test_y: np.ndarray, train_y: np.ndarray, test_path: Path | str, train_path: Path | str
) -> None:
    """Every test label of a classification task occurs in its train split.

    Raises:
        DataError: naming a few unseen test labels, a few train labels and, when they differ
            from train labels only in letter case, saying so.
    """
    train = set(np.unique(train_y).tolist())
    unseen = sorted(set(np.unique(test_y).tolist()) - train)
    if not unseen:
        return
    by_lower = {t.lower(): t for t in train}
    cased = [(u, by_lower[u.lower()]) for u in unseen if u.lower() in by_lower]
    hint = (
        f" They match train labels up to letter case ({cased[0][0]!r} vs {cased[0][1]!r}): "
        "make the case agree in both files."
        if cased
        else " Fix those labels or add their classes to the train file."
    )
    raise DataError(
        f"{test_path}: column 'label' has {len(unseen)} label(s) never seen in {train_path} "
        f"({', '.join(map(repr, unseen[:5]))}{', …' if len(unseen) > 5 else ''}; train has e.g. "
        f"{', '.join(map(repr, sorted(train)[:5]))}); a classifier cannot predict them.{hint}"
    )


SPLIT_FIXES = {  # what to do about a degenerate split, by family
    "sts": "Use a file with at least 2 rows and varied gold scores.",
    "pair": "Use a file with both positive and negative pairs.",
    "classification": "Use a train file with at least 2 classes.",
}


def split_problem(family: str, y: np.ndarray, role: str) -> str | None:
    """Why a split cannot be scored in ``role`` (``"test"`` or ``"fit"``), or None if it can.

    * STS test: at least 2 rows and not every gold score equal (Spearman is undefined otherwise);
    * pair test or fit split: both classes present (AP/accuracy of one class are meaningless);
    * classification fit (train) split: at least 2 classes.

    Args:
        family: the task family.
        y: (N,) labels or scores of the split.
        role: ``"test"`` (scored) or ``"fit"`` (the classifier/threshold is fitted on it).
    """
    if family == "sts" and role == "test":
        if len(y) < 2:
            return f"has {len(y)} row(s), but Spearman needs at least 2"
        if np.ptp(y) == 0:
            return f"has every score equal to {y[0]:g}, so Spearman is undefined"
    if family == "pair":
        positives = int(np.sum(y))
        if positives in (0, len(y)):
            kind = "negative" if positives == 0 else "positive"
            return f"has only {kind} labels ({len(y)} row(s)), but AP and accuracy need both"
    if family == "classification" and role == "fit":
        classes = np.unique(y).tolist()
        if len(classes) < 2:
            shown = repr(classes[0]) if classes else "none"
            return f"has a single class ({shown}), but a classifier needs at least 2"
    return None


def is_nan_text(values: np.ndarray) -> np.ndarray:
    """(N,) bool: cells spelling NaN (``nan``, ``-NaN``…), which ``pd.to_numeric`` reads as NaN."""
    return np.isin(np.char.lower(values.astype(str)), list(_NAN))
