"""Collect the results JSONs of an experiment sweep into paper-style tables and figures.

Usage:
    python scripts/collect_results.py RESULTS_DIR [--out OUT_DIR] [--dims 384 64] [--method SAMD]

Input (written by ``scripts/run_experiments.py``): ``RESULTS_DIR/<label>/seed<k>/results.json``,
``<label>`` being a method (``SAMD``) or a method with an ablation tag (``SAMD+no-sam``); optional
``RESULTS_DIR/_reference/*.json`` from ``python -m samd_common.evaluate ... --output`` become
``teacher (<model>)`` rows (at their own largest dim when they lack the table's dim).

Output (in OUT_DIR, default RESULTS_DIR):

* ``results.md``: per-task table at the full dim (and at each ``--dims``): teacher, undistilled
  student, one row per label as mean ± std over seeds, best distilled value per column in bold;
  the Matryoshka table (avg ID / OOD per dim, % retained at d/2, d/4, d/8); "<method> vs best
  baseline" (ablations, labels with '+', excluded); SKD runs in a separate MTEB table.
* ``summary.csv`` (long: kind,label,task,dim,mean,std,n), ``runs.csv`` (one value per seed),
  ``table_<dim>.csv`` (mean and std columns), ``matryoshka.csv``, ``skd.csv``.
* ``matryoshka.png`` (avg score vs dim) and ``tasks.png`` (per-task bars at the full dim).

The per-task table(s) are printed to stdout. Exit code 2 when no results are found.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from samd_common.data import TASKS
from samd_common.plots import FAMILIES, GROUPS
from samd_common.results import load_results

log = logging.getLogger("collect_results")
TEACHER, STUDENT, DISTILLED = "teacher", "student", "distilled"
KIND_ORDER = {TEACHER: 0, STUDENT: 1, DISTILLED: 2}
STUDENT_LABEL = "student (undistilled)"
AVERAGES = ("avg ID", "avg OOD")
SKD_KEY = re.compile(r"^(?P<flavour>[^/]+)/(?P<name>.+)/accuracy@(?P<dim>\d+)$")
_TASKS = sorted(TASKS.values(), key=lambda t: (FAMILIES.index(t.family), t.ood))
TASK_COLUMNS = [(t.name + (" (OOD)" if t.ood else ""), f"{t.name}/{t.main_score}") for t in _TASKS]
COLUMNS = [
    *TASK_COLUMNS,
    *[(f"{f} {g.upper()}", f"avg/{f}/{g}") for f in FAMILIES for g in GROUPS],
    *zip(AVERAGES, ("avg/all/id", "avg/all/ood"), strict=True),
]
KEY_TO_COLUMN = {key: name for name, key in COLUMNS}


def is_suite(metrics: dict[str, float]) -> bool:
    """Whether ``metrics`` holds 9-task suite keys (SKD runs hold MTEB keys instead)."""
    prefixes = tuple(f"{key}@" for _, key in TASK_COLUMNS)
    return any(k.startswith(prefixes) for k in metrics)


def with_averages(metrics: dict[str, float]) -> dict[str, float]:
    """Copy of ``metrics`` with missing ``avg/{family|all}/{id|ood}@dim`` recomputed from tasks."""
    out = dict(metrics)
    dims = {int(k.rsplit("@", 1)[1]) for k in metrics if re.search(r"@\d+$", k)}
    for dim in dims:
        groups: dict[str, list[float]] = {}
        for t in _TASKS:
            value = metrics.get(f"{t.name}/{t.main_score}@{dim}")
            if value is not None:
                group = "ood" if t.ood else "id"
                groups.setdefault(f"{t.family}/{group}", []).append(value)
                groups.setdefault(f"all/{group}", []).append(value)
        for group, values in groups.items():
            out.setdefault(f"avg/{group}@{dim}", float(np.mean(values)))
    return out


def _read(path: Path) -> dict | None:
    try:
        return load_results(path)
    except ValueError as err:  # json.JSONDecodeError
        log.warning("skip %s: not valid JSON (%s)", path, err)
        return None


def load_runs(results_dir: Path) -> list[dict]:
    """``{label, seed, payload}`` per ``<label>/seed<k>/results.json`` (``_*`` folders skipped)."""
    runs = []
    for path in sorted(results_dir.glob("*/seed*/results.json")):
        label, seed = path.parent.parent.name, path.parent.name.removeprefix("seed")
        if label.startswith("_") or not seed.isdigit():
            continue
        if (payload := _read(path)) is not None:
            runs.append({"label": label, "seed": int(seed), "payload": payload})
    return runs


def load_references(results_dir: Path) -> list[dict]:
    """Reference evaluations ``_reference/*.json`` (``"method": "eval"``); other files ignored."""
    refs = [_read(p) for p in sorted((results_dir / "_reference").glob("*.json"))]
    return [r for r in refs if r and r.get("method") == "eval" and r.get("metrics")]


def records(metrics: dict[str, float], *, kind: str, label: str, seed: int) -> list[dict]:
    """One row (kind, label, seed, task, dim, value) per main-table value of one evaluation."""
    rows = []
    for key, value in with_averages(metrics).items():
        head, _, dim = key.rpartition("@")
        if head in KEY_TO_COLUMN and dim.isdigit():
            task = KEY_TO_COLUMN[head]
            rows.append(
                dict(kind=kind, label=label, seed=seed, task=task, dim=int(dim), value=value)
            )
    return rows


def collect(runs: list[dict], refs: list[dict]) -> pd.DataFrame:
    """Long frame of every suite value: teachers, undistilled students, distilled runs."""
    rows = []
    for ref in refs:
        rows += records(ref["metrics"], kind=TEACHER, label=f"teacher ({ref.get('model')})", seed=0)
    for run in runs:
        payload, seed = run["payload"], run["seed"]
        if is_suite(payload.get("metrics") or {}):
            rows += records(payload["metrics"], kind=DISTILLED, label=run["label"], seed=seed)
            before = payload.get("metrics_before") or {}
            rows += records(before, kind=STUDENT, label=STUDENT_LABEL, seed=seed)
    return pd.DataFrame(rows, columns=["kind", "label", "seed", "task", "dim", "value"])


def summarize(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof=1, NaN for one seed) and n per (kind, label, task, dim), in table order."""
    out = long.groupby(["kind", "label", "task", "dim"])["value"]
    out = out.agg(mean="mean", std="std", n="count").reset_index()
    order = {name: i for i, (name, _) in enumerate(COLUMNS)}
    keys = [out.kind.map(KIND_ORDER), out.label.str.lower(), out.task.map(order), -out.dim]
    out = out.iloc[np.lexsort(keys[::-1])].reset_index(drop=True)
    spread = out.loc[out.kind == STUDENT, "std"].max()
    if spread > 0.01:
        log.warning("undistilled student scores differ across runs (std up to %.2f)", spread)
    return out


def at_dim(summary: pd.DataFrame, dim: int) -> pd.DataFrame:
    """Rows of ``summary`` at ``dim``; a teacher lacking ``dim`` shows its own largest dim."""
    parts = []
    for (kind, label), part in summary.groupby(["kind", "label"], sort=False):
        use = dim if kind != TEACHER or dim in set(part.dim) else int(part.dim.max())
        part = part[part.dim == use].copy()
        part["label"] = label if use == dim else f"{label} @{use}"
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def cell(mean: float, std: float, n: int, with_std: bool = True, bold: bool = False) -> str:
    """``"72.00 ± 2.00"`` (just the mean for one seed or ``with_std=False``), optionally bold."""
    if pd.isna(mean):
        return "-"
    text = f"{mean:.2f} ± {std:.2f}" if with_std and n >= 2 and not pd.isna(std) else f"{mean:.2f}"
    return f"**{text}**" if bold else text


def to_markdown(frame: pd.DataFrame) -> str:
    """Markdown table of a frame of strings; the index becomes the first column."""
    lines = [
        "| " + " | ".join([str(frame.index.name or "")] + list(map(str, frame.columns))) + " |"
    ]
    lines.append("|" + "---|" * (len(frame.columns) + 1))
    lines += ["| " + " | ".join(map(str, [i, *row])) + " |" for i, row in frame.iterrows()]
    return "\n".join(lines)


def main_table(summary: pd.DataFrame, dim: int) -> tuple[str, pd.DataFrame]:
    """Per-task table at ``dim``: (markdown with best distilled values bold, CSV frame)."""
    data = at_dim(summary, dim)
    names = [c for c, _ in COLUMNS if c in set(data.task)]
    labels = list(dict.fromkeys(data.label))
    kinds = data.drop_duplicates("label").set_index("label")["kind"]
    mean, std, n = (
        data.pivot(index="label", columns="task", values=v).reindex(index=labels, columns=names)
        for v in ("mean", "std", "n")
    )
    distilled = [label for label in labels if kinds[label] == DISTILLED]
    best = mean.loc[distilled].round(2).max()
    cells = pd.DataFrame(index=pd.Index(labels, name="model"), columns=[*names, "n seeds"])
    for label in labels:
        ours = kinds[label] == DISTILLED
        for c in names:
            m, s, k = mean.at[label, c], std.at[label, c], n.at[label, c]
            cells.at[label, c] = cell(m, s, k, ours, ours and round(m, 2) == best[c])
        cells.at[label, "n seeds"] = str(int(n.loc[label].max())) if ours else "-"
    stats = (("mean", mean), ("std", std))
    wide = pd.DataFrame({f"{c} {stat}": frame[c] for c in names for stat, frame in stats})
    wide["n"] = n.max(axis=1)
    return to_markdown(cells), wide.rename_axis("label")


def matryoshka_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Avg ID / OOD per dim per row, plus % of the row's full-dim value kept at d/2, d/4, d/8."""
    rows = []
    for label, part in summary[summary.task.isin(AVERAGES)].groupby("label", sort=False):
        for group in AVERAGES:
            means = part[part.task == group].set_index("dim")["mean"]
            if means.empty:
                continue
            full = int(means.index.max())
            row = {"label": label, "group": group, **{d: means[d] for d in means.index}}
            for k in (2, 4, 8):
                kept = full // k if full % k == 0 and full // k in means.index else None
                row[f"d/{k} %"] = np.nan if kept is None else 100 * means[kept] / means[full]
            rows.append(row)
    frame = pd.DataFrame(rows)
    dims = sorted((c for c in frame.columns if isinstance(c, (int, np.integer))), reverse=True)
    return frame[["label", "group", *dims, "d/2 %", "d/4 %", "d/8 %"]]


def difference_vs_best(summary: pd.DataFrame, method: str, dim: int) -> list[dict]:
    """``method`` minus the best other non-ablation distilled label, for avg ID and avg OOD.

    The spread combines both labels' seeds: sqrt(s1²/n1 + s2²/n2) (std 0 for one seed).
    """
    out = []
    data = summary[(summary.kind == DISTILLED) & (summary.dim == dim)]
    for group in AVERAGES:
        rows = data[data.task == group].set_index("label")
        others = [x for x in rows.index if "+" not in x and x != method]
        if method not in rows.index or not others:
            continue
        best = rows.loc[others, "mean"].idxmax()
        a, b = rows.loc[method], rows.loc[best]
        spread = math.sqrt(sum(np.nan_to_num(r["std"]) ** 2 / r["n"] for r in (a, b)))
        out.append(
            dict(
                group=group,
                method=method,
                baseline=best,
                diff=a["mean"] - b["mean"],
                spread=spread,
                n_method=int(a["n"]),
                n_baseline=int(b["n"]),
            )
        )
    return out


def skd_summary(runs: list[dict]) -> pd.DataFrame:
    """SKD runs (MTEB accuracy keys): mean/std/n per ``<label>/<flavour>`` × ``<task>@<dim>``."""
    rows = []
    for run in runs:
        payload = run["payload"]
        if is_suite(payload.get("metrics") or {}):
            continue
        for metrics in (payload.get("metrics") or {}, payload.get("metrics_before") or {}):
            for key, value in metrics.items():
                m = SKD_KEY.match(key)
                if m and m["flavour"] != "avg" and not m["name"].endswith("/validation"):
                    row, column = f"{run['label']}/{m['flavour']}", f"{m['name']}@{m['dim']}"
                    rows.append(dict(label=row, column=column, seed=run["seed"], value=value))
    if not rows:
        return pd.DataFrame(columns=["label", "column", "mean", "std", "n"])
    grouped = pd.DataFrame(rows).groupby(["label", "column"], sort=False)["value"]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()


def plot_matryoshka(summary: pd.DataFrame, path: Path) -> None:
    """Avg ID and OOD score vs dim (log2 axis), one line per label; references dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = sorted(set(summary.loc[summary.kind == DISTILLED, "dim"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, group, (name, _, marker) in zip(axes, AVERAGES, GROUPS.values(), strict=True):
        data = summary[summary.task == group]
        for (kind, label), part in data.groupby(["kind", "label"], sort=False):
            shown = part[part.dim.isin(dims)]
            color = "0.2" if kind == TEACHER else "0.55"
            if kind == DISTILLED:
                ax.errorbar(
                    shown.dim,
                    shown["mean"],
                    yerr=shown["std"].fillna(0),
                    marker=marker,
                    ms=4,
                    capsize=2,
                    label=label,
                )
            elif len(shown) >= 2:
                ax.plot(shown.dim, shown["mean"], "--", color=color, label=label)
            else:  # a reference with fewer shared dims: a level at its largest (shared) dim
                top = (shown if len(shown) else part).sort_values("dim").iloc[-1]
                ax.axhline(top["mean"], ls=":", color=color, label=f"{label} @{top.dim}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims], fontsize=7)
        ax.minorticks_off()
        ax.set(title=f"{name} average", xlabel="embedding dim (Matryoshka prefix)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("average main score (×100)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tasks(summary: pd.DataFrame, dim: int, path: Path) -> None:
    """Grouped bars per task at ``dim``: one bar per row, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = at_dim(summary, dim)
    tasks = [c for c, _ in TASK_COLUMNS if c in set(data.task)]
    labels = list(dict.fromkeys(data.label))
    width, x = 0.8 / len(labels), np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(min(14.0, max(7.0, 0.2 * len(tasks) * len(labels) + 2)), 4))
    for i, label in enumerate(labels):
        part = data[data.label == label].set_index("task").reindex(tasks)
        ours = (part.kind == DISTILLED).any()
        ax.bar(
            x + (i - (len(labels) - 1) / 2) * width,
            part["mean"],
            width,
            label=label,
            yerr=part["std"].fillna(0) if ours else None,
            capsize=2,
            color=None if ours else ("0.25" if (part.kind == TEACHER).any() else "0.6"),
        )
    ax.set_xticks(x, tasks, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="main score (×100)", title=f"per-task main score @{dim}")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _fmt(value: float, spec: str = ".2f") -> str:
    return "-" if pd.isna(value) else format(value, spec)


def suite_sections(summary: pd.DataFrame, dims: list[int], method: str, out: Path) -> list[str]:
    """Markdown sections of the suite runs; writes their CSVs and figures to ``out``."""
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
    sections.append(f"## {method} vs best baseline (@{full})")
    diffs = difference_vs_best(summary, method, full)
    sections.append(
        "\n".join(
            f"- {d['group']}: {d['method']} − {d['baseline']} = {d['diff']:+.2f} ± "
            f"{d['spread']:.2f} (n = {d['n_method']} vs {d['n_baseline']} seeds)"
            for d in diffs
        )
        or f"- not available: needs `{method}` and another non-ablation label at dim {full}."
    )
    plot_matryoshka(summary, out / "matryoshka.png")
    plot_tasks(summary, full, out / "tasks.png")
    return sections


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


def main(argv: list[str] | None = None) -> int:
    """Collect RESULTS_DIR into tables and figures; 2 when there are no results."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("results_dir", type=Path)
    p.add_argument("--out", type=Path, help="output folder (default: RESULTS_DIR)")
    p.add_argument(
        "--dims", type=int, nargs="+", help="dims of the per-task tables (default: full)"
    )
    p.add_argument("--method", default="SAMD", help="label compared with the best baseline")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
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
    long = collect(runs, load_references(args.results_dir))
    sections = [f"# Results of {args.results_dir}"]
    if (long.kind == DISTILLED).any():
        long.to_csv(out / "runs.csv", index=False)
        summary = summarize(long)
        summary.to_csv(out / "summary.csv", index=False)
        sections += suite_sections(summary, args.dims, args.method, out)
    skd = skd_summary(runs)
    if not skd.empty:
        skd.to_csv(out / "skd.csv", index=False)
        sections += ["## MTEB classification (SKD runs)", skd_section(skd)]
        print(f"## MTEB classification (SKD runs)\n\n{skd_section(skd)}\n")
    if len(sections) == 1:
        log.error("no suite or SKD metrics in the results.json files under %s", args.results_dir)
        return 2
    (out / "results.md").write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    log.info("wrote %s (tables, CSVs and figures)", out / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
