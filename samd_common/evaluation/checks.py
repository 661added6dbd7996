"""Range checks of the evaluation settings, and of the samples the evaluator actually scores.

``check_eval_config`` rejects numbers that would silently change what is measured (a test cap of
0, a batch of 0, a max length of 0); ``check_max_length`` compares the encoder's max length with
the model's position limit; ``check_plan`` re-checks each task after the seeded caps
(``max_test``/``max_train``), which can leave an STS sample of one row or a pair sample of one
class even when the files are fine. Every failure is one ``ValueError`` line naming the setting.
"""

from __future__ import annotations

from samd_common.config import EvalConfig, check_count
from samd_common.data.checks import SPLIT_FIXES, DataError, check_label_sets, split_problem
from samd_common.data.tasks import Split, TaskData

# (field, smallest valid value, None allowed and what None means)
_COUNTS = (
    ("max_train", 1, "None (every train row)"),
    ("max_test", 1, "None (every test row)"),
    ("batch_size", 1, None),
    ("max_length", 1, None),
    ("lr_max_iter", 1, None),
    ("seed", 0, None),
)


def check_eval_config(cfg: EvalConfig) -> None:
    """Range checks of the numbers in ``cfg`` (caps, batch size, max length, solver, seed, dims).

    Written without reference to anything but ``cfg`` so that ``EvalConfig.__post_init__`` can
    run the same rules.

    Raises:
        ValueError: naming the first bad field, e.g. ``max_test must be None (every test row) or
            an integer ≥ 1, got 0.``
    """
    for name, minimum, none_means in _COUNTS:
        check_count(name, getattr(cfg, name), minimum, none_means)
    if cfg.dims is not None:
        for dim in cfg.dims:
            check_count("each of dims", dim, 1)


def position_limit(encoder: object) -> int | None:
    """Most tokens per text the encoder's model takes, or None when it cannot tell.

    The smaller of the backbone's ``config.max_position_embeddings`` and the tokenizer's
    ``model_max_length`` (RoBERTa-style models reserve 2 of their 514 positions).
    """
    config = getattr(getattr(encoder, "backbone", None), "config", None)
    limits = [getattr(config, "max_position_embeddings", None)]
    limits.append(getattr(getattr(encoder, "tokenizer", None), "model_max_length", None))
    limits = [n for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
    return min(limits) if limits else None


def check_max_length(max_length: int, encoder: object) -> None:
    """``max_length`` is ≥ 1 and within the encoder's position limit (``position_limit``).

    Raises:
        ValueError: naming ``max_length`` and the limit, e.g. ``max_length=1024 exceeds …``.
    """
    check_count("max_length", max_length, 1)
    limit = position_limit(encoder)
    if limit is not None and max_length > limit:
        raise ValueError(
            f"max_length={max_length} exceeds the model's position limit of {limit} tokens "
            f"(max_position_embeddings / tokenizer model_max_length); use max_length ≤ {limit}."
        )


def _source(task: TaskData, role: str, split: Split) -> str:
    return str(split.path) if split.path is not None else f"task {task.spec.name!r} ({role})"


def check_plan(
    task: TaskData, plan: dict[str, Split], full: dict[str, Split], cfg: EvalConfig
) -> None:
    """The capped splits of ``task`` can still be scored.

    Args:
        task: the task.
        plan: role (``"test"``, ``"fit"``) → the capped split the evaluator will use.
        full: role → the same split before capping.
        cfg: the caps (``max_test`` for test, ``max_train`` for fit).

    Raises:
        ValueError: naming the cap that left a degenerate sample (raise it or set None);
        DataError: when the split was degenerate before capping (an in-memory ``TaskData``).
    """
    spec = task.spec
    if spec.family == "classification" and "fit" not in plan:
        raise DataError(f"task {spec.name!r}: classification needs a train split; none loaded.")
    for role, split in plan.items():
        problem = split_problem(spec.family, split.y, role)
        if problem is None:
            continue
        if len(split) < len(full[role]):
            cap = "max_test" if role == "test" else "max_train"
            raise ValueError(
                f"task {spec.name!r}: {cap}={getattr(cfg, cap)} keeps a sample of "
                f"{_source(task, role, split)} that {problem}. Raise {cap} or set it to None."
            )
        raise DataError(
            f"{_source(task, role, split)}: the {role} split {problem}. {SPLIT_FIXES[spec.family]}"
        )
    if spec.family == "classification":
        test, fit = plan["test"], plan["fit"]
        check_label_sets(test.y, fit.y, _source(task, "test", test), _source(task, "fit", fit))
