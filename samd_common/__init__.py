"""samd_common — Span-Aware Matryoshka Distillation toolkit (shared logic of the notebooks).

Shape symbols used in every docstring:
``B`` batch size, ``T_s``/``T_t`` student/teacher sequence length, ``D_s``/``D_t`` student/teacher
hidden size, ``K`` number of Matryoshka dims, ``N`` number of evaluation examples.
"""

from __future__ import annotations

from samd_common.config import PRESETS, EvalConfig, ExperimentConfig, MTEBConfig, Preset
from samd_common.data.tasks import TASKS, DataError, TaskSpec, get_task, load_task, load_tasks
from samd_common.evaluation.suite import SuiteResult, evaluate_suite, truncate
from samd_common.models import MODELS, ModelSpec, SentenceEncoder, load_encoder
from samd_common.reporting.results import (
    RunRecord,
    format_table,
    load_record,
    record_results,
    suite_table,
)

__all__ = [
    "MODELS",
    "PRESETS",
    "TASKS",
    "DataError",
    "EvalConfig",
    "ExperimentConfig",
    "MTEBConfig",
    "ModelSpec",
    "Preset",
    "RunRecord",
    "SentenceEncoder",
    "SuiteResult",
    "TaskSpec",
    "evaluate_suite",
    "format_table",
    "get_task",
    "load_encoder",
    "load_record",
    "load_task",
    "load_tasks",
    "record_results",
    "suite_table",
    "truncate",
]
