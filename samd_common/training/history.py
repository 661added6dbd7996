"""A run's training history: every step's logs, the thinned curve a results JSON keeps, progress.

``train`` appends one entry per optimizer step to :attr:`History.steps`: ``{"step", "lr",
"loss", <each term the method logs>}`` (``step`` counts from 0). A results JSON keeps
:func:`thin_history` of it, every ``log_every``-th step plus the last one, as columns::

    "history": {"log_every": 10,
                "steps": {"step": [0, 10, …, 111], "lr": […], "loss": […], "task": […]},
                "epochs": [{"epoch": 1, "step": 56, "avg/all/id@384": 76.1, …}, …]}

``"epochs"`` is there only when the run scored the student after every epoch
(``EvalConfig.every_epoch``): the suite at the student's full dim, one entry per epoch.

Values keep 4 significant digits (a curve needs no more) and a value a step did not log, or a
non-finite one, is ``null``. :func:`progress_line` is the log line ``train`` writes at
:func:`progress_every`: about :data:`PROGRESS_LINES` per run, whatever its length.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

PROGRESS_LINES = 20  # progress log lines per run (at multiples of log_every, plus the last step)


@dataclass
class History:
    """Per-step logs and run statistics."""

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs_done: int = 0
    skipped_nonfinite: int = 0
    step_times: list[float] = field(default_factory=list)
    epoch_evals: list[dict[str, float]] = field(default_factory=list)  # {"epoch", "step", scores}

    def curve(self, log_every: int) -> dict[str, Any]:
        """What a results JSON keeps: :func:`thin_history` of :attr:`steps`.

        Plus ``"epochs"``, the per-epoch evaluations, when the run asked for them.
        """
        curve = thin_history(self.steps, log_every)
        if self.epoch_evals:
            rounded = [{k: significant(v) for k, v in e.items()} for e in self.epoch_evals]
            curve["epochs"] = rounded
        return curve


def significant(value: Any, digits: int = 4) -> float | int | None:
    """``value`` rounded to ``digits`` significant digits; ints stay ints, non-finite → None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def thin_history(steps: list[dict[str, Any]], log_every: int) -> dict[str, Any]:
    """Every ``log_every``-th step of ``steps`` (step % log_every == 0) and the last, as columns.

    Args:
        steps: per-step logs (:attr:`History.steps`), each with ``step`` and any numeric terms.
        log_every: the interval in optimizer steps (≥ 1).

    Returns:
        ``{"log_every": log_every, "steps": {name: [value per kept step]}}``; columns ``step``,
        ``lr``, ``loss`` first, then the terms in the order they were first logged. Empty
        (``{}``) when there are no steps.

    Raises:
        ValueError: ``log_every`` < 1.
    """
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every must be a whole number of steps ≥ 1, got {log_every!r}.")
    if not steps:
        return {}
    kept = [s for s in steps[:-1] if s.get("step", 0) % log_every == 0] + [steps[-1]]
    names = list(dict.fromkeys(["step", "lr", "loss", *(k for s in kept for k in s)]))
    names = [n for n in names if any(n in s for s in kept)]
    columns = {n: [significant(s.get(n)) for s in kept] for n in names}
    return {"log_every": log_every, "steps": columns}


def progress_every(total: int, log_every: int, lines: int = PROGRESS_LINES) -> int:
    """The multiple of ``log_every`` that gives at most about ``lines`` progress lines."""
    return log_every * max(1, math.ceil(total / (lines * log_every)))


def progress_line(entry: dict[str, Any], total: int) -> str:
    """``"step 120/1000 loss 0.1234 (task 0.05, mrd 0.07) lr 2e-05"`` for one step's logs.

    The step is counted from 1 here (steps done), from 0 in :attr:`History.steps`.
    """
    named = [(k, v) for k, v in entry.items() if k not in ("step", "lr", "loss")]
    terms = [f"{k} {v:.4g}" for k, v in named if isinstance(v, numbers.Real)]
    loss = entry.get("loss")
    text = f"step {entry['step'] + 1}/{total}"
    text += f" loss {loss:.4g}" if isinstance(loss, numbers.Real) else ""
    text += f" ({', '.join(terms)})" if terms else ""
    return text + f" lr {entry['lr']:.3g}" if "lr" in entry else text
