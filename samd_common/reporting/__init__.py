"""Stage 8 — reporting: the run record, sweep tables, paired comparisons, plots.

* :mod:`~samd_common.reporting.keys` — the metric keys ``{task}/{metric}@{dim}`` (one parser);
* :mod:`~samd_common.reporting.results` — :class:`RunRecord` (one JSON per run) and run tables;
* :mod:`~samd_common.reporting.tables` — a sweep's records → mean ± std tables;
* :mod:`~samd_common.reporting.compare` — paired differences (best baseline, ablations);
* :mod:`~samd_common.reporting.plots` — Matryoshka curves, depth grids, MTEB bars, sweep figures;
* :mod:`~samd_common.reporting.curves` — training curves (a run's ``history``, a sweep's overlaid).
"""

from __future__ import annotations

from samd_common.reporting.keys import MetricKey, key_dims, metric_key, parse_key
from samd_common.reporting.results import (
    RunRecord,
    comparison_table,
    format_table,
    load_record,
    mteb_table,
    record_results,
    results_table,
    suite_table,
)

__all__ = [
    "MetricKey",
    "RunRecord",
    "comparison_table",
    "format_table",
    "key_dims",
    "load_record",
    "metric_key",
    "mteb_table",
    "parse_key",
    "record_results",
    "results_table",
    "suite_table",
]
