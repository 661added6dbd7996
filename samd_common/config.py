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


def cache_root() -> Path:
    """Root of every on-disk cache: ``$SAMD_CACHE_DIR`` or ``~/.cache/samd``."""
    return env_path("SAMD_CACHE_DIR", Path.home() / ".cache" / "samd")


@dataclass
class EvalConfig:
    """How the 9-task suite is evaluated (DESIGN.md §7.1)."""

    eval_dir: str | None = None
    """Folder with the task CSVs (canonical or paper layout); None → ``$SAMD_EVAL_DIR``."""
    tasks: tuple[str, ...] | None = None
    """Task names to run (see ``samd_common.data.TASKS``); None runs all nine."""
    dims: tuple[int, ...] | None = None
    """Matryoshka dims; None → ``DEFAULT_DIMS`` ∩ ≤ model width, plus the width itself."""
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
