"""SKD's own settings (DESIGN.md §6.9): the pipeline parameters next to the loss's in ``params``.

An SKD run is configured like every other one, by ``experiment.make_config("SKD", ...)`` (its
preset values are in ``config.PRESETS``; its evaluation settings in ``config.MTEBConfig``). Its
``params`` hold the loss's :class:`~samd_common.skd.loss.SKDParams` (``mode``, ``projection``,
``w_kd``, …) and the sense-dictionary stage's :class:`SenseSettings` (``max_per_token``,
``cluster``, ``jobs``, ``eval_modes``); :func:`split_params` separates and checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from samd_common.config import ExperimentConfig
from samd_common.skd.loss import SKDParams

EVAL_MODES = ("replace", "continuous")
CLUSTER_METHODS = ("mcl", "kmeans")


@dataclass(frozen=True)
class SenseSettings:
    """How SKD builds its sense dictionary and scores its students (``cfg.params`` keys)."""

    max_per_token: int = 1000  # states kept per token id when gathering (reference 1000)
    cluster: str = "mcl"  # mcl (MCL → k-means, the reference) | kmeans (fast mode)
    jobs: int = 1  # parallel clustering processes (-1: all cores)
    eval_modes: tuple[str, ...] = EVAL_MODES  # scored encoders: sense-replaced and/or continuous

    def __post_init__(self) -> None:
        bad = []
        if self.max_per_token < 1:
            bad.append("max_per_token ≥ 1")
        if self.cluster not in CLUSTER_METHODS:
            bad.append(f"cluster in {'|'.join(CLUSTER_METHODS)}")
        if self.jobs == 0:
            bad.append("jobs ≠ 0 (-1: all cores)")
        if not self.eval_modes or not set(self.eval_modes) <= set(EVAL_MODES):
            bad.append(f"eval_modes a non-empty subset of {EVAL_MODES}")
        if bad:
            raise ValueError(f"Invalid SKD settings, need {'; '.join(bad)} (got {self}).")


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], SenseSettings]:
    """``params`` → (the loss's parameters, checked by ``SKDParams``; the pipeline settings).

    Raises:
        ValueError: an unknown key (with a suggestion) or an invalid value.
    """
    own = {f.name for f in fields(SenseSettings)}
    loss = {k: v for k, v in params.items() if k not in own}
    SKDParams.from_dict(loss)
    values = {k: v for k, v in params.items() if k in own}
    if "eval_modes" in values:
        values["eval_modes"] = tuple(values["eval_modes"])  # a list once read back from JSON
    return loss, SenseSettings(**values)


def mode(cfg: ExperimentConfig) -> str:
    """``"all"`` (SKD: one dictionary and student from every task) or ``"sep"`` (one per task)."""
    return cfg.params.get("mode", "all")


def flavour(cfg: ExperimentConfig) -> str:
    """The run's label: ``SKD`` or ``SKD-sep``."""
    return "SKD" if mode(cfg) == "all" else "SKD-sep"


def check_config(cfg: ExperimentConfig) -> SenseSettings:
    """Validate an SKD config; return its pipeline settings.

    Raises:
        ValueError: invalid parameters, or a corpus (``train_csv``) with ``mode="sep"``.
    """
    _, settings = split_params(cfg.params)
    if mode(cfg) == "sep" and cfg.train_csv:
        raise ValueError("train_csv replaces every task's texts; it only works with mode='all'.")
    return settings
