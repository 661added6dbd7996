"""The dev protocol's rows: each task's dev split, else a fixed held-out slice of its train split.

Design decisions (budget, learning rate, loss weights) are made on dev rows, never on test.
:func:`dev_view` gives, per task, the splits the suite scores in dev mode
(``EvalConfig.split = "dev"``):

* a task with a dev split (STS-B, SICK-R, WiC, Tweet, Emotion) is scored on it; a classifier is
  fitted on its train split as in test mode, a pair task's accuracy threshold on train too (in
  test mode: on dev; the main score, average precision, needs no threshold);
* a task with a train split but no dev split (Banking77, MRPC) is scored on a **held-out slice**
  of its train split — :data:`HOLDOUT_ROWS` rows, at most :data:`HOLDOUT_FRAC` of the split,
  drawn with the fixed :data:`HOLDOUT_SEED` and stratified by label for classification — and
  fitted on the rest of that train split (the slice never enters the classifier's fit rows);
* a task with neither (SciTail, STS12: test only) has no leakage-free dev rows and is left out,
  so the dev OOD average is Emotion's dev score alone — unless the evaluation folder is the one
  :mod:`~samd_common.data.ood_dev` builds, which gives both a dev split from the seed paper's
  validation files (every pair sharing a sentence with the suite's files dropped).

The slice depends on nothing but the split's rows (not on the run, its seed or the evaluation
seed), so the corpus builder can keep exactly these rows out of the distillation corpus
(``data.corpus.build_corpus(..., holdout=True)``) in test mode too: one corpus, and one teacher
cache, serve the dev learning curves and the final test sweep.
"""

from __future__ import annotations

import numpy as np

from samd_common.data.tasks import Split, TaskData

HOLDOUT_ROWS = 1000
"""Rows held out of a train split that has no dev split beside it (the suite's test cap)."""
HOLDOUT_FRAC = 0.2
"""…but never more than this share of the train split (MRPC: 815 of 4,076 pairs)."""
HOLDOUT_SEED = 0
"""Seed of the held-out draw: fixed, so every run and the corpus builder agree on the rows."""


def holdout_size(n: int) -> int:
    """Rows held out of an ``n``-row train split: ``min(HOLDOUT_ROWS, ⌊HOLDOUT_FRAC·n⌋)``."""
    return min(HOLDOUT_ROWS, int(HOLDOUT_FRAC * n))


def holdout_indices(split: Split, stratify: bool) -> np.ndarray:
    """Sorted row indices of ``split``'s held-out slice (:func:`holdout_size` rows).

    Stratified by label (each label's share kept, at least one row of every label with two or
    more, never a label's last row, so the rest still sees every label); otherwise uniform.

    Args:
        split: a train split (N rows).
        stratify: keep label proportions (classification).

    Returns:
        (H,) sorted int64 indices, H ≈ ``holdout_size(N)``.
    """
    n = len(split)
    size = holdout_size(n)
    rng = np.random.default_rng(HOLDOUT_SEED)
    if not stratify:
        return np.sort(rng.choice(n, size=size, replace=False))
    labels, inverse = np.unique(split.y, return_inverse=True)
    counts = np.bincount(inverse)
    quota = np.minimum(np.maximum(1, np.round(counts * size / n)), counts - 1).astype(int)
    keep = [rng.permutation(np.flatnonzero(inverse == k))[: quota[k]] for k in range(len(labels))]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def has_holdout(splits: dict[str, Split] | set[str]) -> bool:
    """Whether a task's dev rows are a held-out slice of train: a train but no dev split."""
    return "train" in splits and "dev" not in splits


def split_holdout(task: TaskData) -> tuple[Split, Split]:
    """``(rest of train, held-out slice)`` of a task without a dev split (:func:`has_holdout`)."""
    if not has_holdout(task.splits):
        raise ValueError(
            f"task {task.spec.name!r} has {sorted(task.splits)} splits; a held-out slice is "
            "taken only from a train split without a dev split beside it."
        )
    train = task.splits["train"]
    held = holdout_indices(train, stratify=task.spec.family == "classification")
    rest = np.setdiff1d(np.arange(len(train)), held)
    return train.subset(rest), train.subset(held)


def dev_view(task: TaskData) -> TaskData | None:
    """The task as the dev protocol scores it: dev rows in the ``test`` role (None: no dev rows).

    Returns:
        A ``TaskData`` whose ``test`` split is the dev split (or the held-out slice) and whose
        ``train`` split is the train split (less the held-out slice); None for a task with
        neither a dev nor a train split.
    """
    splits = task.splits
    if "dev" in splits:
        view = {"test": splits["dev"]} | ({"train": splits["train"]} if "train" in splits else {})
        return TaskData(task.spec, view)
    if has_holdout(splits):
        rest, held = split_holdout(task)
        return TaskData(task.spec, {"train": rest, "test": held})
    return None


def dev_tasks(tasks: list[TaskData]) -> list[TaskData]:
    """:func:`dev_view` of every task that has dev rows, in order.

    SciTail and STS12 drop out, unless the folder of ``data.ood_dev`` gives them dev rows.
    """
    return [view for task in tasks if (view := dev_view(task)) is not None]
