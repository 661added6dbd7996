"""The trained student inside a run's checkpoint: θ₁ of a run that saved an interpolated student.

A run with ``TrainConfig.interpolate < 1`` (SAMD's WiSE-FT, α = ½) saves θ₀ + α·(θ₁ − θ₀) as its
student; the trained weights θ₁ live on in its last checkpoint (``checkpoints/epoch-N.pt``,
``training.loop``). :func:`student_state` reads them back, so another α can be scored without
training again: ``scripts/evaluate.py --model RUN/student --checkpoint
RUN/checkpoints/epoch-N.pt --interpolate-from minilm-l6 --alpha A``.
"""

from __future__ import annotations

from pathlib import Path

import torch

PREFIX = "student."
"""Key prefix of the student's weights in a checkpoint's ``method`` state dict."""


def student_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The student's state dict saved in a training checkpoint (keys without ``student.``).

    Args:
        path: a checkpoint written by the training loop (a dict with a ``method`` state dict).
            It is unpickled whole (RNG states, history): read only checkpoints you made.

    Returns:
        ``{name: tensor}`` for every ``student.*`` entry, on the CPU.

    Raises:
        ValueError: the file is not a training checkpoint, or holds no student weights.
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=False)
    method = payload.get("method") if isinstance(payload, dict) else None
    if not isinstance(method, dict):
        raise ValueError(
            f"{path} is not a training checkpoint (no 'method' state dict); pass a run's "
            "checkpoints/epoch-N.pt."
        )
    state = {k[len(PREFIX) :]: v for k, v in method.items() if k.startswith(PREFIX)}
    if not state:
        raise ValueError(f"{path} holds no '{PREFIX}*' weights; found {sorted(method)[:5]} …")
    return state


def load_student_state(encoder: torch.nn.Module, path: str | Path) -> None:
    """Load :func:`student_state` of ``path`` into ``encoder`` (the run's saved student).

    Raises:
        ValueError: a weight missing on either side or of another shape.
    """
    fix = "pass the run's own student folder as --model."
    try:
        missing, unexpected = encoder.load_state_dict(student_state(path), strict=False)
    except RuntimeError as err:  # a shape mismatch
        raise ValueError(f"{path} does not fit this model ({str(err)[:200]} …); {fix}") from err
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit this model: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}; {fix}"
        )
