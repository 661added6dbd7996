"""Memoised suite evaluation of an unchanged model (the "before" row of every run).

A sweep distils the same student many times; its undistilled evaluation is identical across
those runs (same weights, same tasks, same protocol), so it is computed once and stored as JSON
under ``cache_root()/evals``. The key holds everything that changes the numbers: a content
fingerprint of the weights, the encoder spec (pooling, prompt, max length), the evaluation
config, the dims, each task's spec (so a user's task read with another family or score range
is a new entry), and the path, size and mtime of every task file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from samd_common.config import EvalConfig, cache_root
from samd_common.data.tasks import TaskData
from samd_common.evaluation.suite import SuiteResult
from samd_common.files import write_json_atomic
from samd_common.models.io import fingerprint_model

log = logging.getLogger(__name__)


def _spec_key(task: TaskData) -> list[object]:
    """What of a task's spec changes its scores: name, family, main score, range, OOD flag."""
    spec = task.spec
    return [spec.name, spec.family, spec.main_score, spec.score_range, spec.ood]


def eval_key(model, tasks: list[TaskData], dims: list[int], cfg: EvalConfig) -> str:
    """Hex digest of what determines ``evaluate_suite``'s output for ``model``.

    Args:
        model: a ``SentenceEncoder`` (its weights, ``spec`` and ``max_length`` are read).
        tasks: loaded tasks (their specs and their split files' path, size and mtime enter the
            key).
        dims: evaluated dims.
        cfg: evaluation config.
    """
    files = sorted({str(s.path) for t in tasks for s in t.splits.values() if s.path is not None})
    stats = [(f, Path(f).stat().st_size, Path(f).stat().st_mtime_ns) for f in files]
    payload = {
        "weights": fingerprint_model(model),  # backbone + dense head
        "spec": asdict(model.spec),
        "max_length": model.max_length,
        "eval": {k: v for k, v in asdict(cfg).items() if k != "eval_dir"},
        "dims": list(dims),
        "tasks": [_spec_key(t) for t in tasks],
        "files": stats,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def cached_evaluate(
    model,
    tasks: list[TaskData],
    dims: list[int],
    cfg: EvalConfig,
    evaluate: Callable[[], SuiteResult],
    root: Path | None = None,
) -> SuiteResult:
    """``evaluate()``'s result, read from the memo when this exact evaluation was done before."""
    path = (root or cache_root() / "evals") / f"{eval_key(model, tasks, dims, cfg)[:32]}.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        log.info("undistilled evaluation read from %s", path)
        return SuiteResult(data["metrics"], data["dims"], data["timings"], data["info"])
    result = evaluate()
    write_json_atomic(path, asdict(result))
    return result
