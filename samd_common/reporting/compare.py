"""Differences between sweep labels (method vs best baseline, method vs its ablations), paired.

Every function takes the long per-seed frame of :func:`~.tables.collect` (columns
kind, label, seed, task, dim, value). A difference ``a − b`` is computed on the seeds both labels
share: each seed draws its own training corpus, so ``a`` and ``b`` of one seed saw the same texts,
and the per-seed differences cancel the corpus noise that two unpaired means would add. The
spread is the standard error of the mean per-seed difference, ``std(d, ddof=1) / sqrt(n)``
(NaN for one shared seed). Labels with no seed in common fall back to the difference of their
means with the unpaired spread ``sqrt(s1²/n1 + s2²/n2)``, flagged ``paired=False``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import pandas as pd

from samd_common.reporting.tables import AVERAGES, DISTILLED, TASK_COLUMNS


def seed_table(long: pd.DataFrame, dim: int) -> pd.DataFrame:
    """Distilled values at ``dim``: rows ``(label, seed)``, one column per task and average."""
    data = long[(long.kind == DISTILLED) & (long.dim == dim)]
    return data.pivot(index=["label", "seed"], columns="task", values="value")


def seed_tables(long: pd.DataFrame, dim: int) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(group, table)`` per average (avg ID, avg OOD): distilled labels × seeds at ``dim``."""
    table = seed_table(long, dim)
    for group in AVERAGES:
        if group in table:
            yield group, table[group].unstack("seed")


def _shared_seeds(table: pd.DataFrame | pd.Series, a: str, b: str):
    """``(rows of a, rows of b, seeds both have)`` of a table indexed by label, then seed."""
    ta, tb = table.loc[a], table.loc[b]
    return ta, tb, ta.index.intersection(tb.index)


def paired_difference(table: pd.DataFrame, group: str, a: str, b: str) -> dict:
    """``a − b`` of one average from a labels × seeds ``table`` (NaN where a seed was not run).

    Returns group, method (``a``), baseline (``b``), diff, spread, paired, seeds (the shared
    seeds, or every seed of either label when unpaired), n_method and n_baseline (seeds run).
    """
    va, vb, shared = _shared_seeds(table.stack().dropna(), a, b)  # without the seeds not run
    if len(shared):
        d = va[shared] - vb[shared]
        diff = float(d.mean())
        spread = float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else math.nan
        seeds = sorted(int(s) for s in shared)
    else:
        diff = float(va.mean() - vb.mean())
        spread = math.sqrt(sum(v.var(ddof=1) / len(v) if len(v) > 1 else 0.0 for v in (va, vb)))
        seeds = sorted(int(s) for s in va.index.union(vb.index))
    return dict(
        group=group,
        method=a,
        baseline=b,
        diff=diff,
        spread=spread,
        paired=bool(len(shared)),
        seeds=seeds,
        n_method=len(va),
        n_baseline=len(vb),
    )


def difference_vs_best(
    long: pd.DataFrame, method: str, dim: int, baselines: Iterable[str] | None = None
) -> list[dict]:
    """``method`` minus the best baseline label, for avg ID and avg OOD (paired, see module).

    The best baseline is the highest mean over all its seeds among the other distilled labels
    without an ablation tag ('+'), restricted to ``baselines`` when given (e.g. the registry's
    non-``ours`` methods, so that SAMD is not compared with its own SAMD-MRL variant).
    """
    out = []
    allowed = None if baselines is None else set(baselines)
    for group, table in seed_tables(long, dim):
        others = [
            x
            for x in table.index
            if "+" not in x and x != method and (allowed is None or x in allowed)
        ]
        if method in table.index and others:
            best = table.loc[others].mean(axis=1).idxmax()
            out.append(paired_difference(table, group, method, best))
    return out


def ablation_effects(long: pd.DataFrame, dim: int) -> list[dict]:
    """What each ablated term contributes: ``<method>`` minus ``<method>+<tag>`` per average.

    A positive ``diff`` means the full method scores higher, i.e. the removed term helps.
    Keys as :func:`paired_difference` (``method`` the full label, ``baseline`` the ablation).
    """
    out = []
    for group, table in seed_tables(long, dim):
        for label in table.index:
            base = label.split("+")[0]
            if "+" in label and base in table.index:
                out.append(paired_difference(table, group, base, label))
    return out


def per_task(long: pd.DataFrame, pairs: Iterable[tuple[str, str]], dim: int) -> pd.DataFrame:
    """Paired ``a − b`` per task and average at ``dim``: one row ``"a − b"`` per pair.

    Columns: the suite's task columns, then avg ID / avg OOD, then ``seeds`` (the shared seeds,
    e.g. ``"0, 1, 2"``); pairs without a shared seed are left out.
    """
    table = seed_table(long, dim)
    labels = set(table.index.get_level_values("label"))
    columns = [name for name, _ in TASK_COLUMNS] + list(AVERAGES)
    rows = {}
    for a, b in dict.fromkeys(pairs):
        if a not in labels or b not in labels:
            continue
        ta, tb, shared = _shared_seeds(table, a, b)
        if len(shared):
            diff = (ta.loc[shared] - tb.loc[shared]).mean()
            rows[f"{a} − {b}"] = {
                **diff.reindex(columns).to_dict(),
                "seeds": ", ".join(map(str, shared)),
            }
    return pd.DataFrame.from_dict(rows, orient="index", columns=[*columns, "seeds"])
