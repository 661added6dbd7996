"""Metric keys ``{task}/{metric}@{dim}``: the one parser and formatter of flat metric dicts.

Every evaluation returns flat keys (DESIGN.md §7):

* ``"stsb/spearman@384"`` — a task's metric at one Matryoshka dim (9-task suite);
* ``"avg/all/id@384"`` — an average (``avg/{family|all}/{id|ood}``);
* ``"Banking77Classification/accuracy@384"``, ``"EmotionClassification/validation/accuracy@384"``
  — the MTEB protocol (main split, then other splits and subsets inside the name);
* a prefix naming the encoder where one run scores several (SKD: ``replace/…``,
  ``continuous/…``, ``student/…``);
* a depth suffix ``/L{k}`` on an elastic-depth grid (ESE): ``"avg/all/id@384/L3"``.

So a key is ``{head}@{dim}[/L{depth}]`` with ``head = {name}/{metric}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_KEY = re.compile(r"^(?P<head>.+)@(?P<dim>\d+)(?:/L(?P<depth>\d+))?$")


@dataclass(frozen=True)
class MetricKey:
    """One parsed metric key."""

    head: str  # everything before "@": "stsb/spearman", "avg/all/id", "replace/X/accuracy"
    dim: int  # Matryoshka dim (embedding prefix length)
    depth: int | None = None  # number of layers on an elastic-depth grid; None = full depth

    @property
    def name(self) -> str:
        """The head without its metric: ``"stsb"``, ``"avg/all"``, ``"replace/X/validation"``."""
        return self.head.rpartition("/")[0]

    @property
    def metric(self) -> str:
        """The last part of the head: ``"spearman"``, ``"id"``, ``"accuracy"``."""
        return self.head.rpartition("/")[2]

    def __str__(self) -> str:
        return metric_key(self.head, self.dim, self.depth)


def metric_key(head: str, dim: int, depth: int | None = None) -> str:
    """``"{head}@{dim}"``, plus ``"/L{depth}"`` on a depth grid."""
    return f"{head}@{dim}" + ("" if depth is None else f"/L{depth}")


def with_depth(key: str, depth: int) -> str:
    """``key`` (``"{head}@{dim}"``) as a point of an elastic-depth grid: ``"{key}/L{depth}"``."""
    return f"{key}/L{depth}"


def parse_key(key: str) -> MetricKey | None:
    """The parts of ``key``; None for a key without ``@{dim}`` (e.g. a count or a timing)."""
    m = _KEY.match(key)
    if m is None:
        return None
    depth = m["depth"]
    return MetricKey(m["head"], int(m["dim"]), None if depth is None else int(depth))


def parse_keys(keys: Iterable[str], depth: bool = False) -> list[tuple[str, MetricKey]]:
    """``(key, parsed)`` of every metric key; depth-grid keys only when ``depth`` is true."""
    out = []
    for key in keys:
        parsed = parse_key(key)
        if parsed is not None and (depth or parsed.depth is None):
            out.append((key, parsed))
    return out


def key_dims(keys: Iterable[str], head: str | None = None, depth: bool = False) -> list[int]:
    """The distinct dims of ``keys`` (of those with this ``head`` when given), largest first."""
    return sorted(
        {k.dim for _, k in parse_keys(keys, depth) if head is None or k.head == head},
        reverse=True,
    )


def key_depths(keys: Iterable[str]) -> list[int]:
    """The distinct depths ``L{k}`` of depth-grid keys, smallest first."""
    return sorted({k.depth for _, k in parse_keys(keys, depth=True) if k.depth is not None})
