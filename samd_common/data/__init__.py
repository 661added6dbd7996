"""Stage 1 — data: the 9 evaluation tasks as a table, the distillation corpus, synthetic demo data.

* :mod:`~samd_common.data.tasks` — ``TASKS`` (one ``TaskSpec`` per task) and validated CSV loading;
* :mod:`~samd_common.data.corpus` — the leakage-free corpus builder, its audit and loader;
* :mod:`~samd_common.data.demo` — tiny synthetic data in the canonical layout (smoke runs, tests).
"""

from __future__ import annotations

from samd_common.data.corpus import CorpusReport, audit_corpus, build_corpus, load_corpus
from samd_common.data.demo import demo_frames, synthetic_sentences, write_demo_data
from samd_common.data.tasks import (
    TASKS,
    DataError,
    Split,
    TaskData,
    TaskSpec,
    get_task,
    load_task,
    load_tasks,
)

__all__ = [
    "TASKS",
    "CorpusReport",
    "DataError",
    "Split",
    "TaskData",
    "TaskSpec",
    "audit_corpus",
    "build_corpus",
    "demo_frames",
    "get_task",
    "load_corpus",
    "load_task",
    "load_tasks",
    "synthetic_sentences",
    "write_demo_data",
]
