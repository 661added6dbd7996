"""Print the results table of one or more run JSONs (written by run_experiment / evaluate).

python scripts/show_results.py outputs/demo/*/results.json
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from samd_common.reporting.results import comparison_table, load_results


def main(argv: list[str] | None = None) -> int:
    """Print a before/after table per results file."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("paths", nargs="+")
    args = p.parse_args(argv)
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        for path in args.paths:
            res = load_results(path)
            dims = res.get("dims") or sorted(
                {int(k.rsplit("@", 1)[1]) for k in res["metrics"] if "@" in k}, reverse=True
            )
            pair = f"{res['teacher']} → {res['model']}" if res.get("teacher") else res["model"]
            title = f"{res['method']}: {pair}"
            print(f"\n{title}  ({path})")
            print(
                comparison_table(
                    res["metrics"], res.get("metrics_before"), dims, res["method"]
                ).to_string()
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
