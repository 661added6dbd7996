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

Tasks (``MTEB_TASKS``, the 16 SKD reference tasks) and their loading from
``{Task}[_{subset}]_{split}.csv`` files or the hub live in :mod:`samd_common.evaluation.mteb_tasks`
(:func:`~.mteb_tasks.load_mteb_task`, :func:`~.mteb_tasks.csv_task`).

References:
    Muennighoff et al., "MTEB: Massive Text Embedding Benchmark", EACL 2023,
    https://arxiv.org/abs/2210.07316
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, average_precision_score, f1_score

from samd_common.data.tasks import DataError
from samd_common.evaluation.mteb_tasks import MTEB_SEED, LabeledTexts, TaskSplits
from samd_common.evaluation.suite import truncate

log = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]


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
    return truncate(emb, dim)


@dataclass
class MTEBResult:
    """Flat metrics plus per-experiment scores and costs."""

    metrics: dict[str, float]
    dims: list[int]
    per_experiment: dict[str, list[float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


class _Plan(NamedTuple):
    """One (task, subset) to score: its key prefix, train rows per experiment and splits."""

    prefix: str  # "{task}" or "{task}/{subset}"
    main_split: str  # the split reported without a split name
    rows: list[np.ndarray]  # train rows of each experiment
    train: LabeledTexts
    evals: dict[str, LabeledTexts]  # evaluation splits by name


def _plan(
    tasks: Sequence[TaskSplits],
    samples_per_label: int | None,
    n_experiments: int | None,
    seed: int,
) -> tuple[list[_Plan], list[str]]:
    """Undersample every task's train split; return the plans and every text to encode once."""
    plans = []
    texts: dict[str, None] = {}  # ordered set
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
            plans.append(_Plan(prefix, ts.task.main_split, rows, train, evals))
            texts.update(dict.fromkeys(train.texts[i] for i in np.unique(np.concatenate(rows))))
            for split in evals.values():
                texts.update(dict.fromkeys(split.texts))
    return plans, list(texts)


def _score_plan(
    plan: _Plan,
    vecs: np.ndarray,
    row_of: dict[str, int],
    dim: int,
    seed: int,
    max_iter: int,
    metrics: dict[str, float],
    per_exp: dict[str, list[float]],
) -> None:
    """Score one plan's splits on (N, dim) ``vecs``; write its keys into ``metrics``/``per_exp``."""
    train = plan.train
    for split_name, split in plan.evals.items():
        x_test = vecs[[row_of[t] for t in split.texts]]
        runs = []
        for r in plan.rows:
            x_tr = vecs[[row_of[train.texts[i]] for i in r]]
            runs.append(
                logistic_regression_scores(
                    x_tr, train.labels[r], x_test, split.labels, seed, max_iter
                )
            )
        key = plan.prefix if split_name == plan.main_split else f"{plan.prefix}/{split_name}"
        for name in runs[0]:
            metrics[f"{key}/{name}@{dim}"] = float(np.mean([s[name] for s in runs]))
        acc = [s["accuracy"] for s in runs]
        metrics[f"{key}/accuracy_std@{dim}"] = float(np.std(acc))
        per_exp[f"{key}/accuracy@{dim}"] = acc


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
        tasks: from ``mteb_tasks.load_mteb_task`` / ``mteb_tasks.csv_task``.
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
    plans, ordered = _plan(tasks, samples_per_label, n_experiments, seed)
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
        vecs = _at_dim(emb, dim)  # (N, dim)
        mains = []
        for plan in plans:
            _score_plan(plan, vecs, row_of, dim, seed, max_iter, metrics, per_exp)
            mains.append(metrics[f"{plan.prefix}/accuracy@{dim}"])
        metrics[f"avg/mteb/accuracy@{dim}"] = float(np.mean(mains))
    total_s = time.perf_counter() - start
    log.info("MTEB eval: %d texts, encode %.1fs, total %.1fs", len(ordered), encode_s, total_s)
    return MTEBResult(
        metrics,
        dims,
        per_exp,
        {"encode_s": encode_s, "total_s": total_s, "n_texts": float(len(ordered))},
    )
