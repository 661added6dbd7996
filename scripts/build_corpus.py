"""Build the leakage-free distillation corpus and its leakage report (DESIGN.md §3.2).

    python scripts/build_corpus.py --eval-dir ../shared/data/eval --out data/corpus.csv \
        [--n-per-source 3000|all] [--include-ood] [--seed 0] [--holdout] [--protect-dir DIR ...]
    python scripts/build_corpus.py --eval-dir ../shared/data/eval --preset bench \
        --out outputs/bench/corpus.csv          # exactly the corpus a `bench` run builds
    python scripts/build_corpus.py --eval-dir ../shared/data/eval \
        --audit ../shared/data/samd/merged_9_data_3k_each_ver2.csv      # measure an existing one

The report (JSON, next to the corpus unless --report is given) lists, per source, the texts
dropped for overlapping a dev/test sentence or for being duplicates, and, per task, how many of
its distinct dev/test sentences occur in the corpus (0 for a clean corpus). ``--holdout`` also
leaves out the held-out dev slices of the tasks without a dev split (``samd_common.data.holdout``:
Banking77, MRPC), as the dev protocol needs. ``--preset`` takes the per-source cap, seed and
hold-out setting of a preset's runs (the ``bench`` corpus: every clean text, corpus seed 0,
hold-out slices out), so the file has the very texts, in the same order, that those runs train on.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

from samd_common.config import get_preset
from samd_common.data.corpus import audit_corpus, build_corpus
from samd_common.files import write_json_atomic


def per_source(text: str) -> int | None:
    """``--n-per-source``: a positive count, or ``all`` (every clean text of every source)."""
    if text.strip().lower() == "all":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a count ≥ 1 or 'all', got {text!r}")
    return value


def preset_settings(name: str) -> dict[str, object]:
    """``build_corpus`` settings of a preset's runs (``experiment._corpus``, suite protocol)."""
    p = get_preset(name)
    n = p.per_source if p.max_texts is None else max(1, p.max_texts // 6)
    seed = 0 if p.corpus_seed is None else p.corpus_seed
    return {"n_per_source": n, "seed": seed, "holdout": p.holdout or p.eval_split == "dev"}


def build(args: argparse.Namespace) -> tuple[dict, Path]:
    """Build the corpus ``args`` ask for, write it; return (report dict, report path)."""
    settings = {"n_per_source": args.n_per_source, "seed": args.seed, "holdout": args.holdout}
    settings.update(preset_settings(args.preset) if args.preset else {})
    start = time.perf_counter()
    frame, report = build_corpus(
        args.eval_dir, include_ood=args.include_ood, protect_dirs=args.protect_dir, **settings
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    seconds = round(time.perf_counter() - start, 1)
    result = {"corpus": str(args.out), "rows": len(frame), "seconds": seconds, **asdict(report)}
    for name, row in report.sources.items():
        print(f"source {name:10s} {row}")
    for name, row in report.holdout.items():
        print(f"held-out dev slice {name}: {row['sentences']} sentences, {row['in_corpus']} kept")
    print(f"built in {seconds} s with {settings}")
    return result, args.report or args.out.with_suffix(".report.json")


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--eval-dir", type=Path, required=True, help="task CSV folder")
    p.add_argument("--out", type=Path, help="corpus CSV to write (text,source)")
    p.add_argument("--report", type=Path, help="leakage report JSON (default: <out>.report.json)")
    p.add_argument("--n-per-source", type=per_source, default=3000, help="count or 'all'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout", action="store_true", help="leave the held-out dev slices out")
    p.add_argument(
        "--preset",
        help="take --n-per-source, --seed and --holdout from this preset's runs "
        "(with a per-seed corpus, seed 0's)",
    )
    p.add_argument("--include-ood", action="store_true", help="also sample OOD tasks' train text")
    p.add_argument(
        "--protect-dir",
        type=Path,
        nargs="*",
        default=[],
        help="more folders whose dev/test sentences must be excluded",
    )
    p.add_argument("--audit", type=Path, help="measure leakage of an existing corpus instead")
    return p


def main(argv: list[str] | None = None) -> int:
    """Build (or audit) a corpus; print the per-task overlap table."""
    p = build_parser()
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
        result, report_path = build(args)
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
