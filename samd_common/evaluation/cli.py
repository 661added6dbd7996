"""Command line: evaluate one model on the 9-task suite and write a results JSON.

    python -m samd_common.evaluation.cli --model minilm-l6 --eval-dir ../shared/data/eval \
        --output results.json [--dims 384 256 128 64] [--max-train N] [--tasks stsb sickr]

This is the package's one CLI module (the command is part of the public interface); all logic
lives in ``data``, ``models``, ``evaluation`` and ``results``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict, replace

import torch

from samd_common.config import EvalConfig
from samd_common.data.tasks import TASKS, load_tasks
from samd_common.evaluation.suite import evaluate_suite
from samd_common.models import load_encoder
from samd_common.reporting.results import RunRecord, format_table, record_results

log = logging.getLogger("samd_common.evaluation.cli")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m samd_common.evaluation.cli``."""
    p = argparse.ArgumentParser(
        prog="python -m samd_common.evaluation.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="short name, Hugging Face id or local dir")
    p.add_argument("--eval-dir", help="task CSV folder (default: $SAMD_EVAL_DIR)")
    p.add_argument("--output", help="results JSON path (default: print only)")
    p.add_argument("--dims", type=int, nargs="+", help="Matryoshka dims (default: all that fit)")
    p.add_argument("--max-train", type=int, help="cap rows of classifier/threshold fit splits")
    p.add_argument("--max-test", type=int, help="cap test rows (quick looks only)")
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), help="subset of tasks")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu / cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--progress", action="store_true", help="show an encoding progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; return a process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = EvalConfig(
        eval_dir=args.eval_dir,
        tasks=tuple(args.tasks) if args.tasks else None,
        dims=tuple(args.dims) if args.dims else None,
        max_train=args.max_train,
        max_test=args.max_test,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
    )
    tasks = load_tasks(cfg.tasks, cfg.resolved_eval_dir())
    encoder = load_encoder(args.model, device=args.device, max_length=cfg.max_length)

    def encode(texts: list[str]):
        return encoder.encode(texts, batch_size=cfg.batch_size, show_progress=args.progress)

    result = evaluate_suite(encode, tasks, cfg.dims, cfg)
    sys.stdout.write(
        f"\n{args.model}  (encode {result.timings['encode_s']:.1f}s, "
        f"total {result.timings['total_s']:.1f}s, "
        f"{int(result.timings['n_texts'])} texts)\n"
    )
    sys.stdout.write(format_table(result.metrics, result.dims) + "\n")
    if args.output:
        config = {
            "model": args.model,
            "model_spec": asdict(encoder.spec),
            "eval": asdict(cfg),
            "eval_dir": str(cfg.resolved_eval_dir()),
        }
        record = RunRecord(
            "eval", args.model, config, result.metrics, dims=result.dims, timings=result.timings
        )
        path = record_results(replace(record, extra={"data": result.info}), args.output)
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
