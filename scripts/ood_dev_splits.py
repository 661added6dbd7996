"""Give SciTail and STS12 dev rows, so the dev protocol scores transfer out of domain too.

    python scripts/ood_dev_splits.py --source ../shared/data/samd/multi-data \
        --eval-dir ../shared/data/eval --out ~/.cache/samd/eval-ood-dev

writes a folder that links every file of ``--eval-dir`` and adds ``scitail_dev.csv`` and
``sts12_dev.csv`` from the seed paper's validation files, less every pair that shares a sentence
with any file of ``--eval-dir`` (``samd_common.data.ood_dev``). Use it as the ``eval_dir`` of a
``bench-dev`` run or of ``scripts/evaluate.py --split dev``: the dev OOD average then covers
Emotion, SciTail and STS12, and the corpus (hence the teacher cache) stays the same.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from samd_common.data.ood_dev import build_ood_dev


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--source", type=Path, required=True, help="samd/multi-data folder")
    p.add_argument("--eval-dir", type=Path, required=True, help="the suite's task CSV folder")
    p.add_argument("--out", type=Path, required=True, help="folder to write (links + dev CSVs)")
    return p


def main(argv: list[str] | None = None) -> None:
    """Build the folder and log what each dev split kept."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = build_ood_dev(args.source, args.eval_dir, args.out.expanduser())
    logging.getLogger("ood_dev_splits").info("rows per task: %s", json.dumps(report))


if __name__ == "__main__":
    main()
