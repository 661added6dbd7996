"""Stage 8 — reporting: the results record of a run, sweep tables, paired comparisons, plots.

* :mod:`~samd_common.reporting.results` — ``record_results`` (one JSON per run) and run tables;
* :mod:`~samd_common.reporting.tables` — a sweep's JSONs → mean ± std tables;
* :mod:`~samd_common.reporting.compare` — paired differences (best baseline, ablations);
* :mod:`~samd_common.reporting.plots` — Matryoshka curves, depth grids, sweep figures.
"""

from __future__ import annotations

from samd_common.reporting.results import (
    comparison_table,
    format_table,
    load_results,
    record_results,
    suite_table,
)

__all__ = ["comparison_table", "format_table", "load_results", "record_results", "suite_table"]
