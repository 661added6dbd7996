"""One evaluation entry point for every model (DESIGN.md §7.1).

``evaluate_suite(encoder, tasks, dims, cfg)`` encodes every distinct text once, then scores each
Matryoshka dim by truncating and re-normalising those vectors (no re-encoding):

* classification — logistic regression on standardised frozen embeddings: accuracy, macro-F1;
* pair — average precision of cosine scores (threshold-free), plus accuracy/F1 at the threshold
  that maximises accuracy on the dev (else train) split, never on test;
* STS — Spearman (and Pearson) of cosine similarity.

``cfg.split`` chooses the rows scored: ``"test"`` the test splits; ``"dev"`` the dev protocol of
``data.holdout`` — each task's dev split, else a fixed held-out slice of its train split
(Banking77, MRPC; the classifier fits on the rest), and no score for a task with neither
(SciTail, STS12 — the folder of ``data.ood_dev`` gives them dev rows), so no test row is ever
read.

All scores are ×100. Keys are flat and stable: ``"stsb/spearman@256"``, ``"avg/sts/id@256"``.

``evaluate_depth_grid(encoder, tasks, depths, dims, cfg)`` repeats this for elastic-depth (ESE)
students, encoding once per depth (``encode(texts, num_layers=k)``); its keys carry the depth:
``"stsb/spearman@64/L3"``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, average_precision_score, f1_score
from sklearn.preprocessing import StandardScaler

from samd_common.config import DEFAULT_DIMS, EvalConfig, halving_dims
from samd_common.data.holdout import dev_tasks
from samd_common.data.tasks import Split, TaskData, cap_split, fit_split_name
from samd_common.evaluation.checks import check_eval_config, check_plan

log = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]


@dataclass
class SuiteResult:
    """Flat metrics plus what it cost to get them."""

    metrics: dict[str, float]
    dims: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)


def truncate(emb: np.ndarray, dim: int) -> np.ndarray:
    """First ``dim`` coordinates, L2-re-normalised.

    Args:
        emb: (N, D) embeddings.
        dim: prefix length, 1 ≤ dim ≤ D.

    Returns:
        (N, dim) unit-norm float32 rows.
    """
    if not 1 <= dim <= emb.shape[1]:
        raise ValueError(f"Matryoshka dim {dim} is outside 1..{emb.shape[1]} (the model width).")
    x = emb[:, :dim].astype(np.float32, copy=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def checked_dims(width: int, dims: tuple[int, ...] | list[int]) -> list[int]:
    """Exactly the requested dims, validated against ``width``, unique and descending."""
    dims = [int(d) for d in dims]
    if not dims or any(d <= 0 for d in dims):
        raise ValueError(f"dims must be a non-empty list of positive ints, got {dims}.")
    too_big = [d for d in dims if d > width]
    if too_big:
        raise ValueError(f"dims {too_big} exceed the embedding width {width}; drop them.")
    return sorted(set(dims), reverse=True)


def default_dims(
    width: int, dims: tuple[int, ...] | list[int] | None = None, minimum: int = 16
) -> list[int]:
    """Every Matryoshka dim a student is evaluated at: the halving series plus configured dims.

    ``{width, width//2, …, ≥ minimum}`` (the MRL training dims) ∪ ``dims``; with ``dims=None``
    the configured dims are ``DEFAULT_DIMS`` that fit in ``width`` (SAMD's MRD dims).

    Args:
        width: embedding width D.
        dims: configured dims (``EvalConfig.dims``); each must be ≤ ``width``.
        minimum: smallest dim of the halving series.

    Returns:
        Unique dims, descending; the first is ``width``.

    Example:
        >>> default_dims(384)
        [384, 256, 192, 128, 96, 64, 48, 24]
    """
    extra = [d for d in DEFAULT_DIMS if d <= width] if dims is None else checked_dims(width, dims)
    return sorted(set(halving_dims(width, minimum)) | set(extra), reverse=True)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (N, D) unit-norm matrices → (N,)."""
    return np.einsum("nd,nd->n", a, b)


def classification_scores(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    seed: int = 0,
    max_iter: int = 200,
) -> dict[str, float]:
    """Logistic regression on standardised features → accuracy and macro-F1 (×100)."""
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    clf.fit(scaler.transform(x_train), y_train)
    pred = clf.predict(scaler.transform(x_test))
    return {
        "accuracy": 100 * accuracy_score(y_test, pred),
        "f1": 100 * f1_score(y_test, pred, average="macro"),
    }


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold on ``scores`` that maximises accuracy of ``score >= t`` → positive.

    Args:
        scores: (N,) similarity scores.
        labels: (N,) 0/1 targets.

    Returns:
        The midpoint between the two sorted scores around the best cut.
    """
    order = np.argsort(scores)
    s, y = scores[order], labels[order].astype(np.int64)
    # Cut k puts s[:k] below the threshold: correct = negatives among s[:k] + positives in s[k:].
    neg_below = np.concatenate([[0], np.cumsum(1 - y)])  # (N+1,)
    pos_above = y.sum() - np.concatenate([[0], np.cumsum(y)])
    k = int(np.argmax(neg_below + pos_above))
    lo = s[k - 1] if k > 0 else s[0] - 1.0
    hi = s[k] if k < len(s) else s[-1] + 1.0
    return float((lo + hi) / 2)


def pair_scores(
    test_scores: np.ndarray,
    y_test: np.ndarray,
    fit_scores: np.ndarray | None,
    y_fit: np.ndarray | None,
) -> dict[str, float]:
    """AP of cosine scores; accuracy/F1 at a threshold fitted on a non-test split if given."""
    out = {"ap": 100 * average_precision_score(y_test, test_scores)}
    if fit_scores is not None and y_fit is not None:
        thr = best_threshold(fit_scores, y_fit)
        pred = (test_scores >= thr).astype(np.int64)
        out.update(
            accuracy=100 * accuracy_score(y_test, pred),
            f1=100 * f1_score(y_test, pred),
            threshold=thr,
        )
    return out


def sts_scores(scores: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson (×100) between cosine scores and gold similarity."""
    return {
        "spearman": 100 * float(spearmanr(scores, gold).statistic),
        "pearson": 100 * float(pearsonr(scores, gold).statistic),
    }


def scored_tasks(tasks: list[TaskData], cfg: EvalConfig) -> list[TaskData]:
    """The tasks as ``cfg.split`` scores them: as loaded, or their dev rows in the test role.

    ``"test"``: the tasks as loaded; ``"dev"``: ``data.holdout.dev_tasks`` (tasks without dev
    rows drop out).

    Raises:
        ValueError: an unknown split, or no task with dev rows.
    """
    if cfg.split == "test":
        return tasks
    if cfg.split != "dev":
        raise ValueError(f"split must be 'test' or 'dev', got {cfg.split!r}.")
    scored = dev_tasks(tasks)
    if not scored:
        names = [t.spec.name for t in tasks]
        raise ValueError(
            f"split='dev': none of {names} has a dev split or a train split to hold rows out "
            "of; evaluate on split='test' or add a *_dev.csv file."
        )
    return scored


def _plan(task: TaskData, cfg: EvalConfig) -> dict[str, Split]:
    """Which splits a task needs: test, plus the (capped) split a classifier/threshold fits on.

    Raises:
        ValueError: when a cap leaves a sample that cannot be scored (``checks.check_plan``).
    """
    fam, splits = task.spec.family, task.splits
    full = {"test": splits["test"]}
    fit_name = fit_split_name(fam, splits)
    if fit_name is not None:
        full["fit"] = splits[fit_name]
    stratify = fam == "classification"
    plan = {"test": cap_split(full["test"], cfg.max_test, cfg.seed, stratify=stratify)}
    if "fit" in full:
        plan["fit"] = cap_split(full["fit"], cfg.max_train, cfg.seed, stratify=stratify)
    check_plan(task, plan, full, cfg)
    return plan


def _score_task(
    task: TaskData, plan: dict[str, Split], vec: Callable[[list[str]], np.ndarray], cfg: EvalConfig
) -> dict[str, float]:
    fam, test, fit = task.spec.family, plan["test"], plan.get("fit")
    if fam == "classification":
        return classification_scores(
            vec(fit.text1), fit.y, vec(test.text1), test.y, cfg.seed, cfg.lr_max_iter
        )
    test_sim = cosine_rows(vec(test.text1), vec(test.text2))
    if fam == "sts":
        return sts_scores(test_sim, test.y)
    fit_sim = None if fit is None else cosine_rows(vec(fit.text1), vec(fit.text2))
    return pair_scores(test_sim, test.y, fit_sim, None if fit is None else fit.y)


def _distinct_texts(plans: dict[str, dict[str, Split]]) -> list[str]:
    """Every text of every planned split, once, sorted (the encoder sees each text once)."""
    texts = {
        s
        for plan in plans.values()
        for split in plan.values()
        for s in split.text1 + (split.text2 or [])
    }
    return sorted(texts)


def summarize(
    metrics: dict[str, float], tasks: list[TaskData], dims: list[int]
) -> dict[str, float]:
    """Family × {id, ood} averages of each task's main score, per dim, plus overall id/ood."""
    out: dict[str, float] = {}
    for dim in dims:
        groups: dict[str, list[float]] = {}
        for t in tasks:
            key, value = (
                ("ood" if t.spec.ood else "id"),
                metrics[f"{t.spec.name}/{t.spec.main_score}@{dim}"],
            )
            groups.setdefault(f"{t.spec.family}/{key}", []).append(value)
            groups.setdefault(f"all/{key}", []).append(value)
        out.update({f"avg/{g}@{dim}": float(np.mean(v)) for g, v in groups.items()})
    return out


def evaluate_suite(
    encoder: EncodeFn | object,
    tasks: list[TaskData],
    dims: list[int] | tuple[int, ...] | None = None,
    cfg: EvalConfig | None = None,
) -> SuiteResult:
    """Evaluate one model on ``tasks`` at every Matryoshka dim.

    Args:
        encoder: a callable ``texts -> (N, D) array`` or any object with ``.encode(texts)``.
        tasks: loaded tasks (``samd_common.data.tasks.load_tasks``).
        dims: exactly these Matryoshka dims; None → ``default_dims(width)`` (the halving series
            from the width down to 16 plus ``DEFAULT_DIMS`` that fit).
        cfg: evaluation settings (train cap, seed, solver iterations, ``split``: test or dev
            rows, see :func:`scored_tasks`).

    Returns:
        ``SuiteResult`` with metrics ``"{task}/{metric}@{dim}"`` and
        ``"avg/{family}/{id|ood}@{dim}"`` (in dev mode: of the dev rows; ``info["split"]``).

    Raises:
        ValueError: on an out-of-range setting in ``cfg`` (``checks.check_eval_config``), no
            tasks (no task with dev rows, in dev mode), or a cap that leaves a sample that
            cannot be scored (``checks.check_plan``);
            ``DataError`` on a degenerate in-memory task.
    """
    cfg = cfg or EvalConfig()
    check_eval_config(cfg)
    if not tasks:
        raise ValueError("no tasks to evaluate; pass loaded tasks (data.tasks.load_tasks).")
    tasks = scored_tasks(tasks, cfg)
    encode = encoder.encode if hasattr(encoder, "encode") else encoder
    start = time.perf_counter()
    plans = {t.spec.name: _plan(t, cfg) for t in tasks}
    texts = _distinct_texts(plans)
    row = {t: i for i, t in enumerate(texts)}
    t0 = time.perf_counter()
    emb = np.asarray(encode(texts), dtype=np.float32)  # (N, D)
    encode_s = time.perf_counter() - t0
    dims = default_dims(emb.shape[1]) if dims is None else checked_dims(emb.shape[1], dims)
    metrics: dict[str, float] = {}
    for dim in dims:
        vecs = truncate(emb, dim)

        def vec(batch: list[str], vecs: np.ndarray = vecs) -> np.ndarray:
            return vecs[[row[s] for s in batch]]

        for task in tasks:
            scores = _score_task(task, plans[task.spec.name], vec, cfg)
            metrics.update({f"{task.spec.name}/{k}@{dim}": float(v) for k, v in scores.items()})
    metrics.update(summarize(metrics, tasks, dims))
    total_s = time.perf_counter() - start
    log.info("evaluated %d texts: encode %.1fs, total %.1fs", len(texts), encode_s, total_s)
    info = {
        name: {k: {"rows": len(s), "file": str(s.path)} for k, s in plan.items()}
        for name, plan in plans.items()
    }
    timings = {"encode_s": encode_s, "total_s": total_s, "n_texts": float(len(texts))}
    return SuiteResult(metrics, dims, timings, {"splits": info, "split": cfg.split})


def evaluate_depth_grid(
    encoder: Callable[[list[str], int], np.ndarray] | object,
    tasks: list[TaskData],
    depths: list[int] | tuple[int, ...],
    dims: list[int] | tuple[int, ...] | None = None,
    cfg: EvalConfig | None = None,
) -> SuiteResult:
    """Evaluate an elastic-depth (ESE) model on a layers × dims grid.

    For each depth k the texts are encoded once with only the first k layers, then every dim is
    scored by truncation, exactly as in ``evaluate_suite``.

    Args:
        encoder: a callable ``(texts, k) -> (N, D) array`` or an object whose
            ``.encode(texts, num_layers=k)`` does that (``SentenceEncoder``).
        tasks: loaded tasks.
        depths: numbers of layers to evaluate (each ≥ 1).
        dims: Matryoshka dims (as in ``evaluate_suite``).
        cfg: evaluation settings.

    Returns:
        ``SuiteResult`` whose keys are ``evaluate_suite``'s plus ``"/L{k}"``, e.g.
        ``"stsb/spearman@64/L3"`` and ``"avg/all/id@64/L3"``; ``info["depths"]`` lists the depths.
    """
    if not depths or any(int(k) != k or k < 1 for k in depths):
        raise ValueError(f"depths must be a non-empty list of layer counts ≥ 1, got {depths}.")
    if hasattr(encoder, "encode"):

        def encode_at(texts: list[str], k: int) -> np.ndarray:
            return encoder.encode(texts, num_layers=k)

    else:
        encode_at = encoder
    metrics: dict[str, float] = {}
    timings: dict[str, float] = {}
    out_dims: list[int] = []
    for k in depths:
        result = evaluate_suite(lambda texts, k=k: encode_at(texts, k), tasks, dims, cfg)
        metrics.update({f"{key}/L{k}": value for key, value in result.metrics.items()})
        timings.update({f"{key}/L{k}": value for key, value in result.timings.items()})
        out_dims = result.dims
    return SuiteResult(metrics, out_dims, timings, {"depths": [int(k) for k in depths]})
