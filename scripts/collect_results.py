"""Collect the results JSONs of an experiment sweep into paper-style tables and figures.

Usage:
    python scripts/collect_results.py RESULTS_DIR [--out OUT_DIR] [--dims 384 64] [--method SAMD]
        [--curves]
    python scripts/collect_results.py --show RESULTS_JSON [RESULTS_JSON ...] [--teacher REF_JSON]

Input (written by ``scripts/run_experiments.py``): ``RESULTS_DIR/<label>/seed<k>/results.json``,
``<label>`` being a method (``SAMD``) or a method with an ablation tag (``SAMD+no-sam``); optional
``RESULTS_DIR/_reference/*.json`` from ``python scripts/evaluate.py ... --output`` (either
protocol) become ``teacher (<model>)`` rows (at their own largest dim when they lack the table's
dim).

``--show`` prints the table of each given results JSON instead (one run: the undistilled student
next to the distilled one per task and dim; the MTEB table for an SKD run) and writes nothing.
With ``--teacher REF_JSON`` (a reference evaluation of the teacher with the run's protocol, e.g.
``_reference/teacher-e5-small.json``) each run's table is followed by the distillation summary
``make demo`` ends with: before / after / teacher and the share of the gap recovered, per family
and on average, at the full dim and a quarter of it.
A results file that does not read (truncated JSON, not a results record) is reported and skipped,
in a sweep as with ``--show`` (exit code 2 there if any was skipped).

Output (in OUT_DIR, default RESULTS_DIR):

* ``results.md``: per-task table at the full dim (and at each ``--dims``): teacher, undistilled
  student, one row per label as mean ± std over seeds, best distilled value per column in bold;
  the share of the teacher–student gap each label recovered (avg ID / OOD, at the full dim, a
  quarter of it and each ``--dims``; ``gap.csv``); the Matryoshka table (avg ID / OOD per dim,
  % retained at d/2, d/4, d/8); "<method> vs best baseline" (ablations, labels with '+',
  excluded); "Ablations" (each ``<method>`` minus its ``<method>+<tag>`` runs: what the removed
  term contributes); SKD runs in a separate MTEB table.
  Both comparisons are paired over the seeds the two labels share (``reporting.compare``).
* ``summary.csv`` (long: kind,label,task,dim,mean,std,n), ``runs.csv`` (one value per seed),
  ``table_<dim>.csv`` (mean and std columns), ``matryoshka.csv``, ``skd.csv``, ``cost.csv``
  (runs, min–max of train/step/total seconds and peak RSS per label, from each run's timings),
  ``differences.csv`` (the paired differences above, per task).
* ``matryoshka.png`` (avg score vs dim) and ``tasks.png`` (per-task bars at the full dim).
* with ``--curves``: ``curves.png``, the training curves (total loss vs optimizer step) overlaid,
  one panel per label and one line per seed, and a "Training curves" section in ``results.md``;
  only from runs whose results hold a ``history`` (older runs and SKD have none: skipped, and
  nothing is written when no run has one).

The per-task table(s) are printed to stdout. Exit code 2 when no results are found.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")  # headless: figures are written to files

from samd_common.methods import METHODS  # noqa: E402
from samd_common.reporting.compare import ablation_effects, difference_vs_best, per_task  # noqa: E402
from samd_common.reporting.curves import has_history, plot_sweep_curves  # noqa: E402
from samd_common.reporting.gap import format_gap_table, run_gap_table  # noqa: E402
from samd_common.reporting.plots import plot_sweep_dims, plot_sweep_tasks  # noqa: E402
from samd_common.reporting.results import is_suite, load_record, results_table  # noqa: E402
from samd_common.reporting.tables import (  # noqa: E402
    DISTILLED,
    cell,
    collect,
    cost_table,
    gap_table,
    load_references,
    load_runs,
    main_table,
    matryoshka_table,
    mteb_summary,
    summarize,
    to_markdown,
)

log = logging.getLogger("collect_results")


def _fmt(value: float, spec: str = ".2f") -> str:
    return "-" if pd.isna(value) else format(value, spec)


def _fmt_signed(value: float) -> str:
    return _fmt(round(value, 2) + 0.0, "+.2f")  # + 0.0: no "-0.00"


def _diff_line(d: dict) -> str:
    """``- avg ID: A − B = +x ± s (paired over seeds 0, 1)`` for one :mod:`compare` entry."""
    seeds = ", ".join(map(str, d["seeds"]))
    if not d["paired"]:
        spread = f" ± {d['spread']:.2f}" if max(d["n_method"], d["n_baseline"]) > 1 else ""
        how = f"{spread} (no shared seed: means over {d['n_method']} vs {d['n_baseline']} seeds)"
    elif len(d["seeds"]) > 1:
        how = f" ± {d['spread']:.2f} (paired over seeds {seeds})"
    else:
        how = f" (seed {seeds} only: no spread yet)"
    return f"- {d['group']}: {d['method']} − {d['baseline']} = {d['diff']:+.2f}{how}"


def suite_sections(long: pd.DataFrame, dims: list[int], method: str, out: Path) -> list[str]:
    """Markdown sections of the suite runs (``long``: per-seed frame); writes CSVs and figures."""
    summary = summarize(long)
    summary.to_csv(out / "summary.csv", index=False)
    full = int(summary.loc[summary.kind == DISTILLED, "dim"].max())
    sections = []
    for dim in dims or [full]:
        if dim not in set(summary.loc[summary.kind == DISTILLED, "dim"]):
            log.warning("no distilled run was evaluated at dim %d; skipped", dim)
            continue
        markdown, wide = main_table(summary, dim)
        wide.to_csv(out / f"table_{dim}.csv")
        print(f"## Per-task main scores @{dim}\n\n{markdown}\n")
        sections += [f"## Per-task main scores @{dim}", markdown]
    evaluated = set(summary.loc[summary.kind == DISTILLED, "dim"])
    gap_dims = sorted({full, full // 4, *(dims or [])} & evaluated, reverse=True)  # + a quarter
    sections += gap_sections(summary, gap_dims, out)
    matryoshka = matryoshka_table(summary)
    matryoshka.to_csv(out / "matryoshka.csv", index=False)
    sections.append("## Matryoshka: average main score per dim")
    for group, part in matryoshka.groupby("group", sort=False):
        part = part.set_index("label").drop(columns="group").dropna(axis=1, how="all")
        text = pd.DataFrame(
            {c: [_fmt(v, ".1f" if "%" in str(c) else ".2f") for v in part[c]] for c in part},
            index=part.index,
        )
        sections += [f"### {group}", to_markdown(text.rename_axis("model"))]
    ran = set(long.loc[long.kind == DISTILLED, "label"])  # registry baselines with runs here
    baselines = [name for name, spec in METHODS.items() if not spec.ours and name in ran]
    sections.append(f"## {method} vs the best baseline (@{full})")
    sections.append(
        f"Baselines: {', '.join(baselines)} (not ours, no ablations); the best is the highest "
        "mean over its seeds. Differences are paired: taken per seed on the seeds both runs "
        "share (a seed sets initialisation, dropout and data order, and the corpus sample "
        "where the preset draws one per seed), ± the standard error of their mean."
    )
    diffs = difference_vs_best(long, method, full, baselines)
    sections.append(
        "\n".join(_diff_line(d) for d in diffs)
        or f"- not available: needs `{method}` and a baseline (non-ablation) run at dim {full}."
    )
    effects = ablation_effects(long, full)
    if effects:
        sections.append(f"## Ablations (@{full}): full method − ablated run")
        sections.append(
            "A positive difference means the removed term helps.\n\n"
            + "\n".join(_diff_line(d) for d in effects)
        )
    pairs = [(d["method"], d["baseline"]) for d in diffs + effects]
    if pairs:
        tasks = per_task(long, pairs, full)
        tasks.to_csv(out / "differences.csv", index_label="difference")
        text = tasks.apply(lambda col: col if col.name == "seeds" else col.map(_fmt_signed))
        sections.append(f"## Per-task paired differences (@{full})")
        sections.append(to_markdown(text.rename_axis("difference")))
    plot_sweep_dims(summary, out / "matryoshka.png")
    plot_sweep_tasks(summary, full, out / "tasks.png")
    return sections


def gap_sections(summary: pd.DataFrame, dims: list[int], out: Path) -> list[str]:
    """The "gap recovered" section (avg ID / OOD, share of the teacher–student gap) per dim.

    Writes ``gap.csv``; nothing without a teacher row.
    """
    tables = {dim: gap_table(summary, dim) for dim in dims}
    tables = {dim: t for dim, t in tables.items() if not t.empty}
    if not tables:
        return []
    pd.concat(tables, names=["dim"]).to_csv(out / "gap.csv", float_format="%.4f")
    sections = [
        "## Share of the teacher–student gap recovered",
        "(distilled − undistilled) / (teacher − undistilled) per average, in %, from the seed "
        "means; negative: the distilled student lost ground.",
    ]
    for dim, table in tables.items():
        text = pd.DataFrame(
            {c: [_fmt(v, ".1f" if "%" in c else ".2f") for v in table[c]] for c in table},
            index=table.index,
        )
        sections += [f"### @{dim}", to_markdown(text.rename_axis("model"))]
    return sections


def show(paths: list[Path], teacher: Path | None = None) -> int:
    """Print the table of each results JSON (``--show``), and its gap table with ``teacher``."""
    shown = 0
    ref = load_record(teacher) if teacher else None
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        for path in paths:
            try:
                record = load_record(path)
            except (OSError, ValueError) as err:  # a truncated or foreign file: report, go on
                log.error("skip %s: %s", path, " ".join(str(err).split()))
                continue
            shown += 1
            pair = f"{record.teacher} → {record.model}" if record.teacher else record.model
            print(f"\n{record.method}: {pair}  ({path})")
            print(results_table(record).to_string())
            if ref is not None and is_suite(record.metrics):
                table = run_gap_table(record.metrics_before, record.metrics, ref.metrics)
                print(f"\nDistillation: undistilled → distilled student, teacher {ref.model}")
                print(format_gap_table(table))
    return 0 if shown == len(paths) else 2


def skd_section(skd: pd.DataFrame) -> str:
    """Markdown table of the SKD runs (rows ``label/flavour``, columns ``task@dim``)."""
    cells = skd.assign(
        text=[cell(m, s, n) for m, s, n in zip(skd["mean"], skd["std"], skd.n, strict=True)]
    )
    table = cells.pivot(index="label", columns="column", values="text")
    table = table.reindex(
        index=list(dict.fromkeys(skd.label)), columns=list(dict.fromkeys(skd.column))
    )
    return to_markdown(table.fillna("-").rename_axis("run / flavour"))


def curves_section(runs: list[dict], out: Path) -> list[str]:
    """``--curves``: write ``curves.png`` from the runs with a history; its markdown section."""
    import matplotlib.pyplot as plt

    fig = plot_sweep_curves(runs, out / "curves.png")
    if fig is None:
        log.warning(
            "--curves: no run has a training history (results recorded before histories were "
            "kept, or SKD runs); curves.png not written"
        )
        return []
    plt.close(fig)
    n = sum(has_history(r["record"]) for r in runs)
    return [
        "## Training curves",
        f"Total loss vs optimizer step of the {n} run(s) that recorded a history, one panel per "
        "label, one line per seed.\n\n![training curves](curves.png)",
    ]


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python scripts/collect_results.py``."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("results_dir", type=Path, nargs="?", help="a sweep's folder of runs")
    p.add_argument("--show", type=Path, nargs="+", metavar="RESULTS_JSON", help="print run tables")
    p.add_argument(
        "--teacher",
        type=Path,
        metavar="REF_JSON",
        help="--show: also the gap table vs this teacher",
    )
    p.add_argument("--out", type=Path, help="output folder (default: RESULTS_DIR)")
    p.add_argument(
        "--dims", type=int, nargs="+", help="dims of the per-task tables (default: full)"
    )
    p.add_argument("--method", default="SAMD", help="label compared with the best baseline")
    p.add_argument(
        "--curves", action="store_true", help="also overlay the runs' training curves (curves.png)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Collect RESULTS_DIR into tables and figures; 2 when there are no results."""
    p = build_parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.show:
        return show(args.show, args.teacher)
    if args.teacher:
        p.error(
            "--teacher goes with --show (a sweep reads its teachers from RESULTS_DIR/_reference)"
        )
    if args.results_dir is None:
        p.error("give RESULTS_DIR (a sweep) or --show RESULTS_JSON (single runs)")
    runs = load_runs(args.results_dir) if args.results_dir.is_dir() else []
    if not runs:
        log.error(
            "no results.json under %s (expected <label>/seed<k>/results.json); "
            "run scripts/run_experiments.py first",
            args.results_dir,
        )
        return 2
    out = args.out or args.results_dir
    out.mkdir(parents=True, exist_ok=True)
    refs = load_references(args.results_dir)
    long = collect(runs, refs)
    sections = [f"# Results of {args.results_dir}"]
    if (long.kind == DISTILLED).any():
        long.to_csv(out / "runs.csv", index=False)
        sections += suite_sections(long, args.dims, args.method, out)
    cost = cost_table(runs)
    if not cost.empty:
        cost.to_csv(out / "cost.csv")
        sections += [
            "## Cost (measured per run, min–max over its runs)",
            "Wall-clock of the machine that ran each run; `total s` includes what a run built "
            "for later ones (its seed's teacher cache, the undistilled evaluation).",
            to_markdown(cost),
        ]
    skd = mteb_summary(runs, refs)
    if not skd.empty:
        skd.to_csv(out / "skd.csv", index=False)
        sections += ["## MTEB classification (SKD runs)", skd_section(skd)]
        print(f"## MTEB classification (SKD runs)\n\n{skd_section(skd)}\n")
    if len(sections) == 1:
        log.error("no suite or SKD metrics in the results.json files under %s", args.results_dir)
        return 2
    if args.curves:
        sections += curves_section(runs, out)
    tmp = out / ".results.md.tmp"  # written whole, then renamed: never a half table
    tmp.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    os.replace(tmp, out / "results.md")
    log.info("wrote %s (tables, CSVs and figures)", out / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
