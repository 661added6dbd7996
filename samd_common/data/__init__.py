"""Stage 1 — data: the 9 evaluation tasks as a table, the distillation corpus, synthetic demo data.

* :mod:`~samd_common.data.tasks` — ``TASKS`` (one ``TaskSpec`` per task) and validated CSV loading;
* :mod:`~samd_common.data.corpus` — the leakage-free corpus builder, its audit and loader;
* :mod:`~samd_common.data.holdout` — the dev protocol's rows (dev splits, held-out train slices);
* :mod:`~samd_common.data.ood_dev` — dev rows for SciTail and STS12 from the seed paper's files;
* :mod:`~samd_common.data.demo` — tiny synthetic data in the canonical layout (smoke runs, tests);
* :mod:`~samd_common.data.user_tasks` — a user's own tasks from CSV files and a family, and task
  lists as a CLI flag or notebook parameter gives them (``"stsb;my_eval:sts"``).
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
from samd_common.data.user_tasks import (
    load_user_tasks,
    parse_user_tasks,
    resolve_task_list,
    split_task_list,
    user_tasks,
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
    "load_user_tasks",
    "parse_user_tasks",
    "resolve_task_list",
    "split_task_list",
    "synthetic_sentences",
    "user_tasks",
    "write_demo_data",
]
