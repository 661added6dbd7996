"""Stage 5 — training: teacher cache, distillation batches, and the one training loop.

* :mod:`~samd_common.training.teacher_cache` — the frozen teacher run once per corpus text;
* :mod:`~samd_common.training.batching` — ``DistillDataset``: student tokens + cached teacher
  outputs + cross-tokenizer alignment per batch;
* :mod:`~samd_common.training.loop` — ``train(method, dataset, cfg)`` for every method;
* :mod:`~samd_common.training.checkpoints` — the trained student (θ₁) read back from a checkpoint;
* :mod:`~samd_common.training.history` — its per-step logs and the thinned curve a run records;
* :mod:`~samd_common.training.bench` — step costs measured side by side (``scripts/bench.py``).
"""

from __future__ import annotations

from samd_common.training.batching import DistillDataset
from samd_common.training.history import History
from samd_common.training.loop import TrainConfig, seed_everything, train
from samd_common.training.teacher_cache import TeacherCache, build_teacher_cache

__all__ = [
    "DistillDataset",
    "History",
    "TeacherCache",
    "TrainConfig",
    "build_teacher_cache",
    "seed_everything",
    "train",
]
