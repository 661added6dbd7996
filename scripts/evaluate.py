r"""Evaluate one model with either protocol and write a results JSON (e.g. a teacher reference).

    # the 9-task suite (DESIGN.md §7.1)
    python scripts/evaluate.py --model minilm-l6 --eval-dir ../shared/data/eval \
        --output results.json [--dims 384 256 128 64] [--max-train N] [--tasks stsb sickr]
    # the dev protocol (dev splits, held-out train slices; data/holdout.py): --split dev
    # the MTEB classification protocol (DESIGN.md §7.2), SKD's: tasks by name or index 1–16
    python scripts/evaluate.py --protocol mteb --model e5-small --tasks Banking77 Emotion \
        --splits test [--n-experiments N] [--eval-dir ../shared/data/mteb] --output ref.json

    # a distilled student interpolated with its starting point (WiSE-FT, models/merge.py):
    # θ₀ + α·(θ₁ − θ₀), α = 1 the trained student
    python scripts/evaluate.py --model RUN/student --interpolate-from minilm-l6 --alpha 0.5 ...
    # θ₁ of a run that saved an interpolated student (SAMD, α = ½) is in its last checkpoint:
    # score another α without training again (training/checkpoints.py)
    python scripts/evaluate.py --model RUN/student --checkpoint RUN/checkpoints/epoch-2.pt \
        --interpolate-from minilm-l6 --alpha 0.75 ...

    # your own tasks (CSV files and a family; data/user_tasks.py), alone or next to built-ins
    python scripts/evaluate.py --model minilm-l6 --user-tasks my_eval:sts [--tasks stsb]

The suite's folder defaults to $SAMD_EVAL_DIR, MTEB's to $SAMD_MTEB_DIR or ../shared/data/mteb.
A bad argument, file or model ends in one line naming it (exit 2); ``--debug`` shows the
traceback.
A results JSON written into a sweep's ``_reference/`` folder becomes a ``teacher (<model>)`` row
of ``scripts/collect_results.py`` (the suite table, or the MTEB table for MTEB keys). All logic
lives in ``samd_common`` (``evaluation``, ``models``, ``reporting``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from samd_common.config import EvalConfig, MTEBConfig, default_mteb_dir
from samd_common.data import DataError, load_tasks, resolve_task_list
from samd_common.evaluation import check_eval_config, check_max_length
from samd_common.evaluation.checks import position_limit
from samd_common.evaluation.mteb import evaluate_mteb
from samd_common.evaluation.mteb_tasks import load_mteb_task
from samd_common.evaluation.suite import evaluate_suite
from samd_common.models import load_encoder
from samd_common.models.merge import interpolate_encoder
from samd_common.models.tiny import resolve_model
from samd_common.reporting.results import RunRecord, format_table, record_results
from samd_common.training.checkpoints import load_student_state

log = logging.getLogger("evaluate")
USER_ERRORS = (DataError, ValueError, KeyError, OSError)  # bad input: one line, no traceback
DEFAULT_MAX_LENGTH = 256  # tokens per text unless --max-length (or the model's limit) is lower


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one line (no usage block) with exit code 2."""

    def error(self, message: str):
        """Print ``prog: error: message`` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def count(minimum: int):
    """An argparse type: an integer ≥ ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer ≥ {minimum}, got {text!r}")
        return value

    return parse


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (a KeyError's without its quotes)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(text).split()) or type(err).__name__


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python scripts/evaluate.py``."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", default="suite", choices=["suite", "mteb"])
    p.add_argument("--model", required=True, help="short name, Hugging Face id or local dir")
    p.add_argument("--eval-dir", help="task CSV folder (default: see above)")
    p.add_argument("--output", help="results JSON path (default: print only)")
    p.add_argument("--tasks", nargs="+", help="subset of tasks (suite: names; MTEB: or 1–16)")
    p.add_argument(
        "--user-tasks",
        action="append",
        default=[],
        metavar="PATH[:FAMILY]",
        help="suite: your own tasks, PATH[:sts|pair|classification|auto] or "
        "PATH:task=family,... (repeatable); alone, only these are scored",
    )
    p.add_argument("--dims", type=count(1), nargs="+", help="Matryoshka dims (default: all)")
    p.add_argument("--max-train", type=count(1), help="suite: cap rows of classifier fits")
    p.add_argument("--max-test", type=count(1), help="suite: cap test rows (quick looks only)")
    p.add_argument(
        "--split",
        choices=("test", "dev"),
        default="test",
        help="suite: score the test splits, or the dev protocol (dev splits and held-out slices)",
    )
    p.add_argument("--splits", nargs="+", help="MTEB: evaluation splits (default: the task's)")
    p.add_argument("--n-experiments", type=count(1), help="MTEB: experiments (default: 10)")
    p.add_argument("--samples-per-label", type=count(1), help="MTEB: default the task's own")
    p.add_argument(
        "--interpolate-from",
        metavar="MODEL",
        help="the model --model was trained from: score θ₀ + α·(θ₁ − θ₀) (WiSE-FT) instead",
    )
    p.add_argument("--alpha", type=float, default=1.0, help="with --interpolate-from (default 1)")
    p.add_argument(
        "--checkpoint",
        metavar="PT",
        help="a run's checkpoints/epoch-N.pt: score the student weights saved there (θ₁, "
        "before the run's interpolation) in --model, the run's student folder",
    )
    p.add_argument("--batch-size", type=count(1), default=64)
    p.add_argument(
        "--max-length", type=count(1), help="tokens per text (default: 256 or the model's limit)"
    )
    p.add_argument("--seed", type=count(0), default=0, help="suite: subsample/classifier seed")
    p.add_argument("--device", help="cpu / cuda (default: cuda if available)")
    p.add_argument("--threads", type=count(1), help="torch CPU threads (default: torch's choice)")
    p.add_argument("--progress", action="store_true", help="show an encoding progress bar")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def suite_config(args) -> EvalConfig:
    """The suite's settings from the arguments, checked (``check_eval_config``)."""
    items = [*(args.tasks or []), *args.user_tasks]
    cfg = EvalConfig(
        eval_dir=args.eval_dir,
        tasks=tuple(items) if items else None,
        dims=tuple(args.dims) if args.dims else None,
        max_train=args.max_train,
        max_test=args.max_test,
        batch_size=args.batch_size,
        max_length=args.max_length or DEFAULT_MAX_LENGTH,
        seed=args.seed,
        split=args.split,
    )
    check_eval_config(cfg)
    return cfg


def evaluate_on_suite(args, encoder) -> RunRecord:
    """The 9-task suite (and/or the user's tasks) at every dim; prints its table."""
    cfg = suite_config(args)
    builtin = args.tasks or not args.user_tasks  # the nine need the eval folder, user tasks not
    eval_dir = cfg.resolved_eval_dir() if builtin else None
    tasks = load_tasks(resolve_task_list(cfg.tasks), eval_dir)

    def encode(texts: list[str]):
        return encoder.encode(texts, batch_size=cfg.batch_size, show_progress=args.progress)

    result = evaluate_suite(encode, tasks, cfg.dims, cfg)
    sys.stdout.write(
        f"\n{args.model}  (encode {result.timings['encode_s']:.1f}s, "
        f"total {result.timings['total_s']:.1f}s, "
        f"{int(result.timings['n_texts'])} texts)\n"
    )
    sys.stdout.write(format_table(result.metrics, result.dims) + "\n")
    config = {"model": args.model, "model_spec": asdict(encoder.spec), "eval": asdict(cfg)}
    config["eval_dir"] = str(eval_dir) if eval_dir else None
    if args.interpolate_from:
        config["interpolate"] = {"from": args.interpolate_from, "alpha": args.alpha}
    config["checkpoint"] = args.checkpoint
    return RunRecord(
        "eval",
        args.model,
        config,
        result.metrics,
        dims=result.dims,
        timings=result.timings,
        extra={"data": result.info},
    )


def evaluate_on_mteb(args, encoder) -> RunRecord:
    """The MTEB classification protocol on each task; prints the accuracies."""
    cfg = MTEBConfig(
        tasks=tuple(args.tasks or ("Banking77Classification", "EmotionClassification")),
        splits=tuple(args.splits) if args.splits else None,
        n_experiments=args.n_experiments,
        samples_per_label=args.samples_per_label,
    )
    data_dir = Path(args.eval_dir) if args.eval_dir else default_mteb_dir()
    tasks = [load_mteb_task(t, data_dir, splits=cfg.splits) for t in cfg.tasks]

    def encode(texts: list[str]):
        return encoder.encode(texts, batch_size=args.batch_size, show_progress=args.progress)

    result = evaluate_mteb(
        encode,
        tasks,
        args.dims,
        samples_per_label=cfg.samples_per_label,
        n_experiments=cfg.n_experiments,
    )
    for key, value in sorted(result.metrics.items()):
        if "/accuracy@" in key or key.startswith("avg/"):
            sys.stdout.write(f"{key:60s} {value:7.2f}\n")
    config = {"model": args.model, "model_spec": asdict(encoder.spec), "eval": asdict(cfg)}
    config.update(eval_dir=str(data_dir) if data_dir else None, max_length=encoder.max_length)
    return RunRecord("eval", args.model, config, result.metrics, dims=result.dims)


def check_arguments(args) -> None:
    """Argument checks that need no model: the settings of the chosen protocol.

    Raises:
        ValueError: naming the argument.
    """
    if not 0.0 <= args.alpha <= 1.0 or (args.alpha != 1.0 and not args.interpolate_from):
        raise ValueError(
            f"--alpha must be in [0, 1] and goes with --interpolate-from MODEL (the model "
            f"--model was trained from); got --alpha {args.alpha}."
        )
    if args.protocol == "suite":
        resolve_task_list(suite_config(args).tasks)  # unknown names, missing user-task files
    elif args.user_tasks:
        raise ValueError("--user-tasks works with --protocol suite only (MTEB tasks are named).")


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; return a process exit code (2 for bad data, arguments or models)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        check_arguments(args)
        encoder = load_encoder(resolve_model(args.model), device=args.device)
        if args.checkpoint:
            load_student_state(encoder, args.checkpoint)
            log.info("student weights from %s", args.checkpoint)
        if args.interpolate_from:
            base = load_encoder(resolve_model(args.interpolate_from), device=args.device)
            interpolate_encoder(encoder, base, args.alpha)
            log.info("scoring θ₀ + %g·(θ₁ − θ₀), θ₀ = %s", args.alpha, args.interpolate_from)
        limit = position_limit(encoder) or DEFAULT_MAX_LENGTH
        args.max_length = args.max_length or min(DEFAULT_MAX_LENGTH, limit)
        check_max_length(args.max_length, encoder)  # one given above the limit
        encoder.max_length = args.max_length
        run = evaluate_on_mteb if args.protocol == "mteb" else evaluate_on_suite
        record = run(args, encoder)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    if args.output:
        log.info("wrote %s", record_results(record, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
