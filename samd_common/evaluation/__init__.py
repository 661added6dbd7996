"""Stage 7 — evaluation: the 9-task suite protocol, its memo, and the MTEB classification protocol.

* :mod:`~samd_common.evaluation.suite` — ``evaluate_suite(encode, tasks, dims)`` → flat metrics;
* :mod:`~samd_common.evaluation.checks` — range checks of the settings and the capped samples;
* :mod:`~samd_common.evaluation.memo` — memoised evaluation of an unchanged model;
* :mod:`~samd_common.evaluation.mteb_tasks`, :mod:`~samd_common.evaluation.mteb` — MTEB-style
  classification (SKD's protocol), without the ``mteb`` package.
"""

from __future__ import annotations

from samd_common.evaluation.checks import check_eval_config, check_max_length
from samd_common.evaluation.memo import cached_evaluate
from samd_common.evaluation.mteb import MTEBResult, evaluate_mteb
from samd_common.evaluation.suite import (
    SuiteResult,
    default_dims,
    evaluate_depth_grid,
    evaluate_suite,
    truncate,
)

__all__ = [
    "MTEBResult",
    "SuiteResult",
    "cached_evaluate",
    "check_eval_config",
    "check_max_length",
    "default_dims",
    "evaluate_depth_grid",
    "evaluate_mteb",
    "evaluate_suite",
    "truncate",
]
