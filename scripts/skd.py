r"""SKD (sense-dictionary distillation) pipeline, one command per step; every step resumes.

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
    # any encoder on MTEB tasks (e.g. to check the evaluator against published scores)
    python scripts/skd.py evaluate-model minilm-l6 --task Banking77 --task Emotion
    # everything at once (what CTKD/SKD.ipynb runs)
    python scripts/skd.py all --preset demo --mode all

Tasks are MTEB names or SKD reference indices 1–16; data comes from --data-dir (default
$SAMD_MTEB_DIR or ../shared/data/mteb).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from samd_common.data.tasks import DataError
from samd_common.evaluation.mteb import evaluate_mteb
from samd_common.evaluation.mteb_tasks import load_mteb_task
from samd_common.models import load_encoder
from samd_common.models.tiny import resolve_model
from samd_common.reporting.results import RunRecord, record_results
from samd_common.skd import clustering, senses
from samd_common.skd import run as skd
from samd_common.skd import steps as skd_steps


def _texts(args) -> dict[str, list[str]]:
    data_dir = args.data_dir or skd.default_mteb_dir()
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


def _config(args, **extra) -> skd.SKDConfig:
    return skd.make_skd_config(
        mode=getattr(args, "mode", "all"),
        teacher=args.teacher,
        student=getattr(args, "student", None),
        tasks=args.task,
        eval_dir=args.data_dir,
        preset=args.preset,
        seed=args.seed,
        output_dir=getattr(args, "output_dir", None),
        epochs=getattr(args, "epochs", None),
        lr=getattr(args, "lr", None),
        batch_size=getattr(args, "batch_size", None),
        max_texts=args.max_texts,
        **{k: v for k, v in {"max_length": args.max_length, **extra}.items() if v is not None},
    )


def cmd_train(args) -> None:
    """Train a student with the sense loss on the tasks' training texts."""
    from samd_common.training.teacher_cache import build_teacher_cache

    cfg = _config(args)
    teacher = load_encoder(
        resolve_model(cfg.teacher), max_length=cfg.max_length, attn_implementation="eager"
    )
    corpus = [t for group in _texts(args).values() for t in group]
    cache = build_teacher_cache(teacher, corpus, cfg.max_length, layers=1)
    out = Path(args.out)
    method, history = skd.train_student(cfg, teacher, Path(args.dictionary), corpus, cache, out)
    skd.save_student(method, Path(args.dictionary), out / "model")
    print(f"trained {len(history.steps)} steps → {out / 'model'}")


def _print_metrics(metrics: dict[str, float]) -> None:
    for key, value in sorted(metrics.items()):
        if "/accuracy@" in key or key.startswith("avg/"):
            print(f"{key:60s} {value:7.2f}")


def cmd_evaluate(args) -> None:
    """MTEB scores of a trained SKD student in every evaluation mode."""
    cfg = _config(args, n_experiments=args.n_experiments)
    teacher_tok = load_encoder(resolve_model(cfg.teacher), device="cpu")
    method = skd.load_skd_student(args.student_dir)
    tasks = [load_mteb_task(t, cfg.data_dir) for t in cfg.tasks]
    res = skd.evaluate_student(cfg, method, teacher_tok.tokenizer, teacher_tok.spec.prompt, tasks)
    metrics = {f"{m}/{k}": v for m, r in res.items() for k, v in r.metrics.items()}
    _print_metrics(metrics)
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=1))


def cmd_evaluate_model(args) -> None:
    """MTEB scores of any encoder (no senses)."""
    enc = load_encoder(resolve_model(args.model), max_length=args.max_length or 256)
    data_dir = args.data_dir or skd.default_mteb_dir()
    tasks = [load_mteb_task(t, data_dir, splits=args.split or None) for t in args.task]
    res = evaluate_mteb(
        lambda t: enc.encode(t, show_progress=True), tasks, n_experiments=args.n_experiments
    )
    _print_metrics(res.metrics)
    if args.json:  # a reference evaluation: collect_results.py reads it from _reference/
        config = {"tasks": args.task, "splits": args.split, "max_length": enc.max_length}
        record_results(RunRecord("eval", args.model, config, res.metrics), args.json)


def cmd_all(args) -> None:
    """Run the whole pipeline (run_skd)."""
    cfg = _config(args, cluster=args.method, jobs=args.jobs)
    result = skd.run_skd(cfg)
    print(skd.skd_table(result).to_string())
    print("results:", result.results_path)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one step."""
    top = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = top.add_subparsers(dest="cmd", required=True)

    def common(p, tasks=True):
        if tasks:
            p.add_argument("--task", action="append", default=[], help="name or index 1–16")
        p.add_argument("--data-dir", default=None, help="folder of {Task}_{split}.csv")
        p.add_argument("--max-texts", type=int, default=None, help="cap per task (seeded)")
        p.add_argument("--max-length", type=int, default=None, help="default: the preset's")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--preset", default="full", choices=sorted(skd.SKD_PRESETS))

    p = sub.add_parser("gather", help="teacher token states per task (reservoir sampling)")
    common(p)
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
    common(p)
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
    common(p)
    p.add_argument("student_dir")
    p.add_argument("--teacher", required=True, help="its tokenizer maps tokens to senses")
    p.add_argument("--n-experiments", type=int, default=None)
    p.add_argument("--json", default=None)
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("evaluate-model", help="MTEB classification scores of any encoder")
    common(p)
    p.add_argument("model")
    p.add_argument("--split", action="append", default=[], help="evaluation split(s)")
    p.add_argument("--n-experiments", type=int, default=None)
    p.add_argument("--json", default=None)
    p.set_defaults(fn=cmd_evaluate_model)

    p = sub.add_parser("all", help="the whole pipeline (as CTKD/SKD.ipynb)")
    common(p)
    p.add_argument("--mode", default="all", choices=["all", "sep"])
    p.add_argument("--teacher", default=None)
    p.add_argument("--student", default=None)
    p.add_argument("--output-dir", default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--method", default=None, choices=["mcl", "kmeans"])
    p.add_argument("--jobs", type=int, default=1)
    p.set_defaults(fn=cmd_all)

    args = top.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.fn(args)
    except (DataError, FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
