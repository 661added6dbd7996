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
import numbers
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar, TypeVar

P = TypeVar("P", bound="Params")
# annotation → whether a value fits it (bool is no number here: True must not pass as 1)
_KINDS: dict[str, Callable[[object], bool]] = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}


def type_problem(annotation: object, value: object) -> str | None:
    """Why ``value`` does not fit a field annotated ``annotation`` (None: it fits, or unchecked).

    Checks the simple annotations of parameter classes (``bool``, ``int``, ``float``, ``str``,
    ``list[...]`` of those, each ``| None``); ``"no"`` for a bool is an error, not ``True``.
    """
    kinds = [k.strip() for k in str(annotation).split("|")]
    if value is None and "None" in kinds:
        return None
    kinds = [k for k in kinds if k != "None"]
    if len(kinds) != 1:
        return None
    kind = kinds[0]
    inner = kind[5:-1] if kind.startswith("list[") else None
    if inner in _KINDS:
        ok = isinstance(value, list | tuple) and all(_KINDS[inner](v) for v in value)
    elif kind in _KINDS:
        ok = _KINDS[kind](value)
    else:
        return None
    if ok:
        return None
    hint = " (JSON: true/false)" if kind == "bool" else ""
    return f"must be {kind}{' or None' if 'None' in str(annotation) else ''}{hint}, got {value!r}"


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
        for f in fields(self):
            problem = type_problem(f.type, getattr(self, f.name))
            if problem:
                raise ValueError(f"Invalid {self.method} parameter {f.name}: {problem}.")
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
