"""Build the leakage-free distillation corpus and its leakage report (DESIGN.md §3.2).

    python scripts/build_corpus.py --eval-dir ../shared/data/eval --out data/corpus.csv \
        [--n-per-source 3000] [--include-ood] [--seed 0] [--protect-dir DIR ...]
    python scripts/build_corpus.py --eval-dir ../shared/data/eval \
        --audit ../shared/data/samd/merged_9_data_3k_each_ver2.csv      # measure an existing one

The report (JSON, next to the corpus unless --report is given) lists, per source, the texts
dropped for overlapping a dev/test sentence or for being duplicates, and, per task, how many of
its distinct dev/test sentences occur in the corpus (0 for a clean corpus).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from samd_common.data.corpus import audit_corpus, build_corpus
from samd_common.files import write_json_atomic


def main(argv: list[str] | None = None) -> int:
    """Build (or audit) a corpus; print the per-task overlap table."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--eval-dir", type=Path, required=True, help="task CSV folder")
    p.add_argument("--out", type=Path, help="corpus CSV to write (text,source)")
    p.add_argument("--report", type=Path, help="leakage report JSON (default: <out>.report.json)")
    p.add_argument("--n-per-source", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--include-ood", action="store_true", help="also sample OOD tasks' train text")
    p.add_argument(
        "--protect-dir",
        type=Path,
        nargs="*",
        default=[],
        help="more folders whose dev/test sentences must be excluded",
    )
    p.add_argument("--audit", type=Path, help="measure leakage of an existing corpus instead")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.audit:
        result = audit_corpus(args.audit, [args.eval_dir, *args.protect_dir])
        report_path = args.report or Path(f"{args.audit.name}.leakage.json")
    else:
        if args.out is None:
            p.error("--out is required unless --audit is given")
        if args.out.exists():
            p.error(f"{args.out} exists; refusing to overwrite (delete it or pick another --out)")
        frame, report = build_corpus(
            args.eval_dir, args.n_per_source, args.seed, args.include_ood, args.protect_dir
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)
        result = {"corpus": str(args.out), "rows": len(frame), **asdict(report)}
        report_path = args.report or args.out.with_suffix(".report.json")
        for name, row in report.sources.items():
            print(f"source {name:10s} {row}")
    write_json_atomic(report_path, result)
    print(f"{result['rows']} texts; distinct eval sentences found in the corpus, per task:")
    print(f"  {'task':10s} {'test':>22s}   {'dev+test':>22s}")
    for name, row in result["overlap"].items():
        print(
            f"  {name:10s} {row['test_in_corpus']:5d} / {row['test_sentences']:5d} "
            f"{row['test_percent']:6.2f} %   {row['in_corpus']:5d} / {row['eval_sentences']:5d} "
            f"{row['percent']:6.2f} %"
        )
    if "leaking_rows_by_source" in result:
        print(f"leaking rows by source: {result['leaking_rows_by_source']}")
    print(f"report: {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
