"""Hyper-parameter bases: one ``from_dict`` with a did-you-mean, one rule check for every method.

A method's parameters are a ``@dataclass`` deriving from :class:`Params` (or
:class:`DistillParams` when it mixes a task loss with distillation terms). The subclass gives
each field its paper default and a one-line comment, names the method in ``method`` and states
its value rules in ``rules()`` as ``{"what must hold": holds}``; construction raises one
``ValueError`` naming every broken rule, and ``from_dict`` turns a notebook's plain dict into the
dataclass, rejecting unknown keys with the closest valid name.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import ClassVar, TypeVar

P = TypeVar("P", bound="Params")


@dataclass
class Params:
    """Base of every method's hyper-parameters (no fields of its own).

    Example:
        >>> @dataclass
        ... class ToyParams(Params):
        ...     method = "Toy"
        ...     temperature: float = 0.07  # InfoNCE τ
        ...     def rules(self) -> dict[str, bool]:
        ...         return {"temperature > 0": self.temperature > 0}
        >>> ToyParams.from_dict({"temperature": 0.05}).temperature
        0.05
    """

    method: ClassVar[str] = "method"  # name used in error messages

    def rules(self) -> dict[str, bool]:
        """``{"rule as a reader should see it": whether it holds}``; none by default."""
        return {}

    def __post_init__(self) -> None:
        bad = [rule for rule, holds in self.rules().items() if not holds]
        if bad:
            raise ValueError(f"Invalid {type(self).__name__}, need {'; '.join(bad)} (got {self}).")

    @classmethod
    def from_dict(cls: type[P], d: dict) -> P:
        """Build from a plain dict; an unknown key raises ``ValueError`` naming the closest field.

        Args:
            d: notebook/registry parameters (field name → value).

        Returns:
            ``cls(**d)``, validated by its rules.
        """
        names = [f.name for f in fields(cls)]
        for key in d:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"Unknown {cls.method} parameter {key!r}.{hint} Known: {', '.join(names)}"
                )
        return cls(**d)


@dataclass
class DistillParams(Params):
    """Parameters of every ``w_task·L_task + w_kd·L_kd`` objective (DESIGN.md §6 defaults)."""

    w_task: float = 0.5  # weight of the task loss (SimCSE InfoNCE)
    w_kd: float = 0.5  # weight of the distillation terms
    temperature: float = 0.07  # InfoNCE τ

    def rules(self) -> dict[str, bool]:
        """Non-negative weights and a positive temperature."""
        return {
            "w_task, w_kd ≥ 0": self.w_task >= 0 and self.w_kd >= 0,
            "temperature > 0": self.temperature > 0,
        }
