r"""SKD's steps one at a time (sense-dictionary distillation); every step resumes.

    # 1. gather teacher token states per task (skipped when the task's table is complete)
    python scripts/skd.py gather --teacher e5-small --task 2 --task 4 --out runs/skd/gather
    # 2. merge the per-task tables (SKD; SKD-sep skips this)
    python scripts/skd.py merge runs/skd/gather/Banking77Classification \\
        runs/skd/gather/EmotionClassification --out runs/skd/merged
    # 3. cluster: MCL then k-means (or --method kmeans), parallel over token ids
    python scripts/skd.py cluster runs/skd/merged --out runs/skd/dictionary --jobs 2
    # 4. train a student with the sense loss (student "teacher:4" = the teacher's first 4 layers)
    python scripts/skd.py train --teacher e5-small --student minilm-l6 --task 2 --task 4 \\
        --dictionary runs/skd/dictionary --out runs/skd/student
    # 5. MTEB classification scores, replace and continuous modes
    python scripts/skd.py evaluate runs/skd/student/model --teacher e5-small --task 2 --task 4

The whole pipeline is an ordinary run: ``CTKD/SKD.ipynb``, or ``scripts/run_experiments.py
--methods SKD --preset demo --param mode=sep ...`` (``make_config("SKD")`` →
``run_experiment``); any encoder's MTEB scores: ``scripts/evaluate.py --protocol mteb``.
Tasks are MTEB names or SKD reference indices 1–16; data comes from --data-dir (default
$SAMD_MTEB_DIR or ../shared/data/mteb).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from samd_common.config import PRESETS, ExperimentConfig, default_mteb_dir
from samd_common.data.tasks import DataError
from samd_common.evaluation.mteb_tasks import load_mteb_task
from samd_common.experiment import make_config, method_builder
from samd_common.models import load_encoder
from samd_common.models.tiny import resolve_model
from samd_common.skd import clustering, senses
from samd_common.skd import steps as skd_steps
from samd_common.training.teacher_cache import build_teacher_cache


def _texts(args) -> dict[str, list[str]]:
    data_dir = args.data_dir or default_mteb_dir()
    out = {}
    for key in args.task:
        ts = load_mteb_task(key, data_dir, splits=[])
        pool = [t for s in ts.subsets.values() for t in s[ts.task.train_split].texts]
        out[ts.task.name] = skd_steps._cap(list(dict.fromkeys(pool)), args.max_texts, args.seed)
    return out


def cmd_gather(args) -> None:
    """Gather reservoir-sampled teacher states for each --task."""
    args.max_length = args.max_length or 128
    teacher = load_encoder(resolve_model(args.teacher), max_length=args.max_length)
    for task, texts in _texts(args).items():
        path = senses.gather_task(
            teacher,
            texts,
            args.out,
            task,
            args.max_per_token,
            args.seed,
            args.max_length,
            args.batch_size,
        )
        table = senses.SenseTable.load(path, mmap=True)
        print(f"{task}: {len(table)} token ids, {len(table.vectors)} states → {path}")


def cmd_merge(args) -> None:
    """Merge per-task tables into one."""
    tables = [senses.SenseTable.load(p) for p in args.tables]
    merged = senses.merge_tables(tables, args.max_per_token, args.seed)
    print(f"merged {len(tables)} tables: {len(merged)} token ids → {merged.save(args.out)}")


def cmd_cluster(args) -> None:
    """Cluster a gathered table into the sense dictionary."""
    table = senses.SenseTable.load(args.table)
    out = clustering.cluster_senses(
        table, args.method, args.jobs, args.seed, args.n_init, out_dir=args.out
    )
    print(
        f"{len(out)} token ids, {len(out.vectors)} senses "
        f"(mean {out.meta['mean_senses']:.2f}) → {args.out}"
    )


def _config(args, **extra) -> ExperimentConfig:
    return make_config(
        "SKD",
        teacher=args.teacher,
        student=getattr(args, "student", None),
        tasks=args.task,
        eval_dir=args.data_dir,
        preset=args.preset,
        seed=args.seed,
        epochs=getattr(args, "epochs", None),
        lr=getattr(args, "lr", None),
        batch_size=getattr(args, "batch_size", None),
        max_texts=args.max_texts,
        max_length=args.max_length,
        mode=getattr(args, "mode", None),
        **{k: v for k, v in extra.items() if v is not None},
    )


def cmd_train(args) -> None:
    """Train a student with the sense loss on the tasks' training texts."""
    cfg = _config(args)
    teacher = load_encoder(
        resolve_model(cfg.teacher), max_length=cfg.max_length, attn_implementation="eager"
    )
    corpus = [t for group in _texts(args).values() for t in group]
    cache = build_teacher_cache(teacher, corpus, cfg.max_length, layers=1)
    out = Path(args.out)
    dictionary = Path(args.dictionary)
    build = method_builder(cfg)
    method, history = skd_steps.train_student(cfg, teacher, dictionary, corpus, cache, out, build)
    skd_steps.save_student(method, dictionary, out / "model")
    print(f"trained {len(history.steps)} steps → {out / 'model'}")


def _print_metrics(metrics: dict[str, float]) -> None:
    for key, value in sorted(metrics.items()):
        if "/accuracy@" in key or key.startswith("avg/"):
            print(f"{key:60s} {value:7.2f}")


def cmd_evaluate(args) -> None:
    """MTEB scores of a trained SKD student in every evaluation mode."""
    cfg = _config(args, n_experiments=args.n_experiments)
    teacher_tok = load_encoder(resolve_model(cfg.teacher), device="cpu")
    method = skd_steps.load_skd_student(args.student_dir)
    tasks = [load_mteb_task(t, cfg.eval_dir) for t in cfg.eval.tasks]
    prompt = teacher_tok.spec.prompt
    res = skd_steps.evaluate_student(cfg, method, teacher_tok.tokenizer, prompt, tasks)
    metrics = {f"{m}/{k}": v for m, r in res.items() for k, v in r.metrics.items()}
    _print_metrics(metrics)
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=1))


def _common(p: argparse.ArgumentParser) -> None:
    """The task and data arguments of gather, train and evaluate."""
    p.add_argument("--task", action="append", default=[], help="name or index 1–16")
    p.add_argument("--data-dir", default=None, help="folder of {Task}_{split}.csv")
    p.add_argument("--max-texts", type=int, default=None, help="cap per task (seeded)")
    p.add_argument("--max-length", type=int, default=None, help="default: the preset's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="full", choices=sorted(PRESETS))


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per step."""
    top = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = top.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("gather", help="teacher token states per task (reservoir sampling)")
    _common(p)
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", required=True, help="folder; one table per task inside")
    p.add_argument("--max-per-token", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(fn=cmd_gather)

    p = sub.add_parser("merge", help="union of per-task tables, cap re-applied")
    p.add_argument("tables", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--max-per-token", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_merge)

    p = sub.add_parser("cluster", help="MCL + k-means (or k-means only) per token id")
    p.add_argument("table")
    p.add_argument("--out", required=True)
    p.add_argument("--method", default="mcl", choices=["mcl", "kmeans"])
    p.add_argument("--jobs", type=int, default=1, help="parallel processes (-1: all cores)")
    p.add_argument("--n-init", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_cluster)

    p = sub.add_parser("train", help="train a student with the sense loss")
    _common(p)
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", required=True, help="name/dir or teacher:N (first N layers)")
    p.add_argument("--dictionary", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--mode", default="all", choices=["all", "sep"])
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("evaluate", help="MTEB scores of a trained SKD student (both modes)")
    _common(p)
    p.add_argument("student_dir")
    p.add_argument("--teacher", required=True, help="its tokenizer maps tokens to senses")
    p.add_argument("--n-experiments", type=int, default=None)
    p.add_argument("--json", default=None)
    p.set_defaults(fn=cmd_evaluate)
    return top


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one step."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.fn(args)
    except (DataError, FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
