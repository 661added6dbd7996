"""Write tiny synthetic CSVs for all 9 tasks (canonical layout) plus a demo training corpus.

    python scripts/prepare_demo_multitask_data.py [--out data/demo] [--seed 0]

Never overwrites existing files: it stops, naming the first file that exists.
"""

from __future__ import annotations

import argparse
import logging
import sys

from samd_common.data.demo import write_demo_data


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and write the demo data."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        paths = write_demo_data(args.out, args.seed)
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
