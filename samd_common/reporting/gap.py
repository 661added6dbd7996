"""One run against its teacher: before / after / teacher and the share of the gap recovered.

``make demo`` prints it (``scripts/collect_results.py --show RUN --teacher REF``); a sweep's
version, mean over seeds per label, is :func:`~samd_common.reporting.tables.gap_table`.
"""

from __future__ import annotations

import math

import pandas as pd

from samd_common.reporting.keys import key_dims, metric_key
from samd_common.reporting.tables import COLUMNS as TABLE_COLUMNS
from samd_common.reporting.tables import gap_share, with_averages

# (name, key head) of the family averages and the overall ones, as the sweep tables name them
GROUPS = [(name, head) for name, head in TABLE_COLUMNS if head.startswith("avg/")]
COLUMNS = ["before", "after", "teacher", "gain", "gap %"]


def run_gap_table(
    before: dict[str, float],
    after: dict[str, float],
    teacher: dict[str, float],
    dims: list[int] | None = None,
) -> pd.DataFrame:
    """Per family (ID / OOD) and on average: the three scores, the gain and the gap share.

    ``gap % = 100·(after − before) / (teacher − before)`` (:func:`~samd_common.reporting.tables.
    gap_share`, the sweep tables' rule); NaN where the teacher is not ahead of the undistilled
    student (there is no gap to recover). A teacher evaluation lacking ``dim``
    is read at its own largest dim.

    Args:
        before: the undistilled student's metrics (a run's ``metrics_before``).
        after: the distilled student's (``metrics``).
        teacher: the teacher's (a reference evaluation's ``metrics``), same protocol.
        dims: dims to report; None: the run's full dim and a quarter of it (when evaluated).

    Returns:
        Frame indexed by (``dim``, ``group``) with columns ``before``, ``after``, ``teacher``,
        ``gain``, ``gap %``; groups without a score on both sides are left out.

    Raises:
        ValueError: if ``after`` or ``teacher`` holds no suite scores.
    """
    b, a, t = (with_averages(m) for m in (before, after, teacher))
    run_dims, t_dims = key_dims(a, "avg/all/id"), key_dims(t, "avg/all/id")
    if not run_dims or not t_dims:
        raise ValueError(
            "run_gap_table needs suite scores (avg/all/id@dim) in the run and the teacher "
            "evaluation; an MTEB-protocol run (SKD) has none."
        )
    if dims is None:
        dims = [d for d in (run_dims[0], run_dims[0] // 4) if d in run_dims]
    rows = []
    for dim in dims:
        t_dim = dim if dim in t_dims else t_dims[0]
        for name, head in GROUPS:
            key = metric_key(head, dim)
            if key not in a or key not in b:
                continue
            value, base = a[key], b[key]
            ref = t.get(metric_key(head, t_dim), math.nan)
            share = gap_share(value, base, ref)
            rows.append([dim, name, base, value, ref, value - base, share])
    return pd.DataFrame(rows, columns=["dim", "group", *COLUMNS]).set_index(["dim", "group"])


def format_gap_table(table: pd.DataFrame) -> str:
    """Plain text of :func:`run_gap_table` (scores to 2 decimals, gap share to whole %)."""
    text = table.copy().astype(object)
    for col in COLUMNS:
        fmt = "{:.0f}" if col == "gap %" else ("{:+.2f}" if col == "gain" else "{:.2f}")
        text[col] = ["-" if pd.isna(v) else fmt.format(v) for v in table[col]]
    return text.to_string()
