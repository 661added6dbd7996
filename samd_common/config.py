"""Typed run configuration: one dataclass per concern, defaults equal to the paper setting.

Paths resolve from the environment when not given explicitly:
``SAMD_EVAL_DIR`` (evaluation CSVs), ``SAMD_TRAIN_CSV`` (distillation corpus),
``SAMD_OUTPUT_DIR`` (results) and ``SAMD_CACHE_DIR`` (provisioned models, teacher cache).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DIMS: tuple[int, ...] = (768, 512, 384, 256, 128, 64)
"""Matryoshka dims evaluated by default (those above the model's width are dropped)."""


def env_path(var: str, default: str | Path | None) -> Path | None:
    """Return ``$var`` as a ``Path`` if set and non-empty, else ``default`` (as a Path or None)."""
    value = os.environ.get(var, "").strip()
    if value:
        return Path(value).expanduser()
    return None if default is None else Path(default).expanduser()


def resolve_setting(
    explicit: Any, preset: Any, env: str | None = None, use_env: bool = True
) -> Any:
    """One run setting: ``explicit`` (empty/0/None = unset) > ``$env`` > ``preset``.

    The variable is read with :func:`env_path` and returned as a string; it is skipped when
    ``env`` is None or ``use_env`` is false (e.g. the smoke preset, which uses generated data).
    """
    if explicit:
        return explicit
    value = env_path(env, None) if env is not None and use_env else None
    return preset if value is None else str(value)


def cache_root() -> Path:
    """Root of every on-disk cache: ``$SAMD_CACHE_DIR`` or ``~/.cache/samd``."""
    return env_path("SAMD_CACHE_DIR", Path.home() / ".cache" / "samd")


@dataclass
class EvalConfig:
    """How the 9-task suite is evaluated (DESIGN.md §7.1)."""

    eval_dir: str | None = None
    """Folder with the task CSVs (canonical or paper layout); None → ``$SAMD_EVAL_DIR``."""
    tasks: tuple[str, ...] | None = None
    """Task names to run (see ``samd_common.data.tasks.TASKS``); None runs all nine."""
    dims: tuple[int, ...] | None = None
    """Matryoshka dims; None → the halving series width, width/2, … ≥ 16 plus ``DEFAULT_DIMS``
    that fit (``evaluation.default_dims``)."""
    max_train: int | None = None
    """Cap on the rows of a classifier/threshold training split (stratified, seeded); None = all."""
    max_test: int | None = None
    """Cap on test rows (seeded) for quick looks; None = all (needed for comparable numbers)."""
    batch_size: int = 64
    """Texts per encoder forward pass."""
    max_length: int = 256
    """Tokens per text at encoding time (longer texts are truncated)."""
    seed: int = 0
    """Seed of the train-split subsample and of the logistic regression."""
    lr_max_iter: int = 200
    """Iteration cap of the logistic-regression solver (lbfgs)."""

    def resolved_eval_dir(self) -> Path:
        """The evaluation folder, from the field or ``$SAMD_EVAL_DIR``.

        Raises:
            ValueError: if neither is set.
        """
        path = (
            Path(self.eval_dir).expanduser() if self.eval_dir else env_path("SAMD_EVAL_DIR", None)
        )
        if path is None:
            raise ValueError(
                "No evaluation folder: pass eval_dir=/--eval-dir or set SAMD_EVAL_DIR "
                "(real data: ../shared/data/eval; tiny synthetic data: run "
                "`python scripts/prepare_demo_multitask_data.py` and use data/demo)."
            )
        return path


@dataclass
class RunConfig:
    """Everything that defines one run; saved with its results."""

    method: str = "eval"
    """Registry key of the method (``eval`` for a plain evaluation)."""
    model: str = "minilm-l6"
    """Model short name, Hugging Face id or local directory."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings."""
    output_dir: str | None = None
    """Where results go; None → ``$SAMD_OUTPUT_DIR`` or ``outputs/``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view of the config (``dataclasses.asdict``)."""
        return asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on CPU: tiny random models with two tokenizers, synthetic data (tests, CI).
    "smoke": {
        "teacher": "tiny-teacher",
        "student": "tiny-student",
        "max_texts": 64,
        "max_length": 32,
        "epochs": 1,
        "batch_size": 16,
        "lr": 5e-4,
        "max_train": 60,
        "max_test": None,
        "dims": None,
    },
    # Minutes on a 2-core CPU: the default offline pair on a small clean corpus, capped eval.
    "demo": {
        "teacher": "e5-small",
        "student": "minilm-l6",
        "max_texts": 640,
        "max_length": 64,
        "epochs": 1,
        "batch_size": 32,
        "lr": 2e-5,
        "max_train": 1000,
        "max_test": 500,
        "dims": (384, 256, 128, 64),
    },
    # The CPU benchmark (results/cpu-bench): a stronger teacher, 600 clean texts per in-domain
    # source (3,600), one epoch, evaluation capped at 1,000 fit / 1,000 test rows per task with a
    # fixed subsample (eval_seed) so that every method and seed is scored on the same rows.
    "cpu-bench": {
        "teacher": "embeddinggemma-300m",
        "student": "minilm-l6",
        "max_texts": 3600,
        "max_length": 128,
        "epochs": 1,
        "batch_size": 32,
        "lr": 2e-5,
        "max_train": 1000,
        "max_test": 1000,
        "eval_seed": 0,
        "dims": (384, 256, 128, 64),
    },
    # The paper setting: 5 epochs, lr 2e-5, batch 32, cosine schedule, full corpus and eval.
    "full": {
        "teacher": "e5-small",
        "student": "minilm-l6",
        "max_texts": None,
        "max_length": 128,
        "epochs": 5,
        "batch_size": 32,
        "lr": 2e-5,
        "max_train": None,
        "max_test": None,
        "dims": None,
    },
}


@dataclass
class ExperimentConfig:
    """One distillation run as the notebooks describe it (saved with its results)."""

    method: str  # registry key = notebook name, e.g. "SAMD"
    teacher: str  # short name, Hugging Face id or local dir
    student: str  # short name, Hugging Face id or local dir
    preset: str  # smoke | demo | cpu-bench | full
    seed: int  # seeds everything (data order, dropout, eval subsampling)
    output_dir: str  # run folder parent (results JSON, student, checkpoints)
    train_csv: str | None  # corpus (text[,source]); None → build a clean one from eval_dir
    eval_dir: str | None  # task CSVs; None → $SAMD_EVAL_DIR
    max_texts: int | None  # corpus cap (seeded sample); None = all
    max_length: int  # token cap for student and teacher
    teacher_layers: int  # last teacher layers whose attention is cached
    params: dict[str, Any]  # method hyper-parameters (validated by the method)
    train: Any  # training.TrainConfig
    eval: EvalConfig  # evaluation settings
    eval_before: bool = True  # also evaluate the undistilled student (the "before" row)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view (``dataclasses.asdict``)."""
        return asdict(self)


def halving_dims(width: int, minimum: int = 16) -> list[int]:
    """Nested dims ``[width, width//2, …]`` down to ``minimum`` (MRL/SAMD-MRL default).

    Args:
        width: full embedding width D.
        minimum: smallest dim kept (16 or 32 in the MRL setting).

    Returns:
        Descending list of K dims; ``[width]`` when ``width < 2·minimum``.
    """
    if width <= 0 or minimum <= 0:
        raise ValueError(f"width and minimum must be positive, got {width} and {minimum}.")
    dims = [width]
    while dims[-1] // 2 >= minimum:
        dims.append(dims[-1] // 2)
    return dims
