"""Loss-weight schedules as functions of the training progress (a fraction of the total steps)."""

from __future__ import annotations


def linear_ramp(progress: float, start: float, length: float, end_value: float = 1.0) -> float:
    """Schedule value at a training progress (fraction of total steps).

    ``v = end_value · clip((progress − start) / length, 0, 1)`` (a step at ``start`` if length=0)

    Args:
        progress: step / total_steps, in [0, 1].
        start: progress at which the ramp begins (value 0 before it).
        length: progress span of the ramp; 0 gives a step function.
        end_value: value reached at ``start + length`` and kept after.

    Returns:
        The schedule value as a float.

    Example:
        >>> linear_ramp(0.1, start=0.0, length=0.2)
        0.5
    """
    if length < 0 or start < 0:
        raise ValueError(f"start and length must be ≥ 0, got start={start}, length={length}.")
    if progress < start:
        return 0.0
    if length == 0:
        return float(end_value)
    return float(end_value) * min(1.0, (progress - start) / length)
