"""Benchmark: KD step cost, teacher-cache throughput, and vectorised vs naive span alignment.

    python scripts/bench.py --output bench.json [--teacher e5-small] [--student minilm-l6]
        [--methods SAMD EmbedDistill] [--baseline EmbedDistill] [--steps 24] [--batch-size 32]
        [--max-length 64] [--variant LABEL METHOD JSON ...]

All variants run in one process on the same batches, interleaved step by step; ratios are
against the SimCSE step of the same run (DESIGN.md §8 targets: KD-with-cache ≤ 1.15× SimCSE,
vectorised alignment ≥ 20× the naive loops) and, paired step by step, against ``--baseline``
when it is among the methods (issue 15: a SAMD step ≤ 1.05× the pointwise baseline's). The
teacher cache's build throughput is compared with the teacher's bare ``encode`` of the same
texts (target ≥ 0.9×).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from samd_common.alignment import token_spans
from samd_common.config import env_path
from samd_common.data.corpus import build_corpus
from samd_common.data.demo import synthetic_sentences
from samd_common.files import write_json_atomic
from samd_common.losses import SimCSELoss
from samd_common.methods import METHODS, TeacherInfo, get_method
from samd_common.models import load_encoder
from samd_common.reporting.results import environment_info
from samd_common.training.batching import DistillDataset
from samd_common.training.bench import (
    alignment_speed,
    cached_batches,
    interleaved_times,
    live_teacher_batches,
    paired_ratio,
    summarize_times,
    training_step,
)
from samd_common.training.teacher_cache import build_teacher_cache


def corpus_texts(eval_dir: Path | None, n: int) -> list[str]:
    """``n`` clean corpus texts from the suite's train splits (synthetic if no data)."""
    if eval_dir is None or not eval_dir.is_dir():
        return synthetic_sentences(n)
    frame, _ = build_corpus(eval_dir, n_per_source=n // 4 + 1, seed=0)
    return frame["text"].sample(n=min(n, len(frame)), random_state=0).tolist()


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--teacher", default="e5-small")
    p.add_argument("--student", default="minilm-l6")
    p.add_argument("--methods", nargs="+", default=["SAMD"], help="registry keys or 'all'")
    p.add_argument("--baseline", default="EmbedDistill", help="paired ratios against this method")
    p.add_argument("--eval-dir", type=Path, default=env_path("SAMD_EVAL_DIR", None))
    p.add_argument("--steps", type=int, default=24, help="measured steps per variant")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument(
        "--variant",
        nargs=3,
        action="append",
        default=[],
        metavar=("LABEL", "METHOD", "JSON"),
        help="also time METHOD with these params as 'LABEL (cache)', e.g. SAMD+simcse SAMD "
        '\'{"lambda_unif": 0, "w_task": 0.5}\' (repeatable)',
    )
    p.add_argument("--no-live", action="store_true", help="skip the live-teacher SAMD row")
    p.add_argument("--output", type=Path, default=Path("bench.json"))
    return p


def parse_params(raw: str) -> dict:
    """A ``--variant``'s JSON object of method parameters (checked by the method's params)."""
    hint = f"--variant params must be a JSON object such as '{{\"w_kd\": 1}}'; got {raw!r}"
    try:
        params = json.loads(raw)
    except json.JSONDecodeError as err:
        raise SystemExit(f"{hint} ({err}).") from err
    if not isinstance(params, dict):
        raise SystemExit(f"{hint}.")
    return params


def timed_fresh_cache(teacher, texts: list[str], max_length: int, scratch: Path):
    """Build the teacher cache of ``texts`` in the empty folder ``scratch``; (cache, seconds).

    Always a real build: in the default cache folder an earlier run's cache of the same texts
    would be a hit, and the throughput ratio would time opening files, not the teacher.
    """
    t0 = time.perf_counter()
    cache = build_teacher_cache(teacher, texts, max_length, cache_dir=scratch)
    return cache, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the JSON report."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.manual_seed(0)
    methods = (
        [m for m in METHODS if get_method(m).needs_teacher]
        if args.methods == ["all"]
        else [get_method(m).name for m in args.methods]
    )
    variants = [(name, name, {}) for name in methods]  # (label, method, params) each timed
    variants += [(label, get_method(m).name, parse_params(raw)) for label, m, raw in args.variant]
    texts = corpus_texts(args.eval_dir, args.batch_size * (args.steps + args.warmup))
    student = load_encoder(
        args.student, device="cpu", max_length=args.max_length, attn_implementation="eager"
    )
    teacher = load_encoder(
        args.teacher, device="cpu", max_length=args.max_length, attn_implementation="eager"
    )
    t0 = time.perf_counter()
    teacher.encode(texts, batch_size=args.batch_size)  # the bare encode, same texts and batch
    encode_s = time.perf_counter() - t0
    scratch = tempfile.TemporaryDirectory(prefix="samd-bench-cache-")  # removed at the end
    cache, cache_s = timed_fresh_cache(teacher, texts, args.max_length, Path(scratch.name))
    maps = sorted({m for _, name, _ in variants for m in get_method(name).maps})
    dataset = DistillDataset(
        texts, student.tokenizer, args.max_length, student.spec.prompt, cache, maps=maps
    )
    plain = DistillDataset(texts, student.tokenizer, args.max_length, student.spec.prompt)
    info = TeacherInfo.from_cache(args.teacher, cache)
    total = 1000
    steps = {
        "SimCSE": training_step(
            SimCSELoss(copy.deepcopy(student)), cached_batches(plain, args.batch_size), total
        )
    }
    for label, name, params in variants:
        module = get_method(name).build(copy.deepcopy(student), info, params)
        steps[f"{label} (cache)"] = training_step(
            module, cached_batches(dataset, args.batch_size), total
        )
    if "SAMD" in methods and not args.no_live:
        live = get_method("SAMD").build(copy.deepcopy(student), info, {})
        steps["SAMD (live teacher)"] = training_step(
            live, live_teacher_batches(dataset, teacher, args.batch_size, args.max_length), total
        )
    times = interleaved_times(steps, args.steps, args.warmup)
    rows = summarize_times(times, "SimCSE")
    base = f"{get_method(args.baseline).name} (cache)"
    paired = {n: paired_ratio(times, n, base) for n in steps if n != base} if base in steps else {}
    long_texts = [" ".join(texts[i : i + 12]) for i in range(0, 32 * 12, 12)]
    align = alignment_speed(
        token_spans(student.tokenizer, long_texts, 128),
        token_spans(teacher.tokenizer, long_texts, 128, teacher.spec.prompt),
    )
    report = {
        "env": environment_info(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "teacher_cache_build_s": cache_s,
        "teacher_encode_s": encode_s,
        "cache_throughput_ratio": encode_s / cache_s,
        "paired_vs_baseline": {"baseline": base, **paired} if paired else {},
        "n_texts": len(texts),
        "steps": rows,
        "alignment": align,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    write_json_atomic(args.output, report)
    print(
        f"\n{args.teacher} → {args.student}, batch {args.batch_size}, max_length "
        f"{args.max_length}, {args.steps} steps per variant, interleaved"
    )
    print(f"{'variant':24s} {'median s':>9s} {'mean s':>8s} {'×SimCSE med':>12s} {'×mean':>7s}")
    for name, r in rows.items():
        print(
            f"{name:24s} {r['median_s']:9.3f} {r['mean_s']:8.3f} {r['ratio_median']:12.2f} "
            f"{r['ratio_mean']:7.2f}"
        )
    for name, r in paired.items():
        print(f"{name:24s} ×{base}, paired per step: median {r['median']:.3f} ± {r['se']:.3f}")
    print(
        f"alignment {align['shape']}: vectorised {align['vectorised_s'] * 1e3:.1f} ms, naive "
        f"{align['naive_s'] * 1e3:.0f} ms → {align['speedup']:.0f}× (target ≥ 20×)"
    )
    print(
        f"teacher cache build {cache_s:.1f} s for {len(texts)} texts, bare encode {encode_s:.1f} s "
        f"→ {encode_s / cache_s:.2f}× the encode throughput (target ≥ 0.9×); peak RSS "
        f"{report['peak_rss_mb']:.0f} MB; wrote {args.output}"
    )
    scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
