"""Regenerate the generated sections of README.md from the code (so they cannot drift).

    python scripts/update_readme.py          # rewrite the sections in place
    python scripts/update_readme.py --check  # exit 1 if README.md is out of date

Sections are delimited by ``<!-- NAME:start -->`` / ``<!-- NAME:end -->`` markers.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from samd_common.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]


def methods_table() -> str:
    """Markdown table of the registry."""
    rows = ["| method | family | notebook | paper |", "|---|---|---|---|"]
    for spec in METHODS.values():
        folder = {"ctkd": "CTKD", "mrl": "MRL"}[spec.family]
        rows.append(
            f"| {spec.name} | {spec.family} | [`{folder}/{spec.name}.ipynb`]"
            f"({folder}/{spec.name}.ipynb) | {spec.paper} |"
        )
    return "\n".join(rows)


HEADLINES = ("bench", "cpu-bench")  # the first with a gap.csv is the README's headline
AVERAGES = ("avg ID", "avg OOD")


def _ref_cells(part: pd.DataFrame, dims: list[int]) -> list[str]:
    """A teacher / undistilled row's cells per dim (teacher: its largest dim if it lacks one)."""
    cells = []
    for d in dims:
        mean = part[part.dim == (d if d in set(part.dim) else part.dim.max())]
        mean = mean.set_index("task")["mean"]
        cells += [f"{mean.get(AVERAGES[0], float('nan')):.2f}", ""]
        cells += [f"{mean.get(AVERAGES[1], float('nan')):.2f}", ""]
    return cells


def _gap_cells(part: pd.DataFrame, dims: list[int]) -> list[str]:
    """A distilled label's avg ID, gap ID, avg OOD, gap OOD per dim (``gap.csv`` rows)."""
    cells = []
    for d in dims:
        rows = part[part.dim == d]
        for avg in AVERAGES:
            if rows.empty:
                cells += ["-", "-"]
                continue
            r = rows.iloc[0]
            cells += [f"{r[avg]:.2f}", f"{round(r[f'{avg} gap %'])} %"]
    return cells


def headline_table(folder: Path) -> str:
    """A results folder's compact table: avg ID / OOD and the share of the gap recovered.

    Rows: teacher, undistilled student (``summary.csv``), each label (``gap.csv``); columns: the
    number of seeds behind each distilled row, then avg ID / OOD and their gap share at the full
    dim and at a quarter of it, all written by ``scripts/collect_results.py``.
    """
    gap = pd.read_csv(folder / "gap.csv")
    summary = pd.read_csv(folder / "summary.csv")
    full = int(gap.dim.max())
    dims = [d for d in (full, full // 4) if d in set(gap.dim)]
    head = ["method", "seeds"]
    head += [f"{c} @{d}" for d in dims for c in ("avg ID", "gap", "avg OOD", "gap")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    refs = summary[summary.kind.isin(["teacher", "student"]) & summary.task.isin(AVERAGES)]
    for label, part in refs.groupby("label", sort=False):
        lines.append(f"| {label} | - | " + " | ".join(_ref_cells(part, dims)) + " |")
    at_full = summary[(summary.task == AVERAGES[0]) & (summary.dim == full)]
    seeds = at_full.set_index("label")["n"]
    for label, part in gap.groupby("label", sort=False):
        n = int(seeds.get(label, 0))
        lines.append(f"| {label} | {n} | " + " | ".join(_gap_cells(part, dims)) + " |")
    return "\n".join(lines)


def results_section(root: Path = ROOT) -> str:
    """The headline folder's compact table and figure, then links to every results folder."""
    folders = sorted(
        md.parent.relative_to(root).as_posix() for md in root.glob("results/*/results.md")
    )
    if not folders:
        return "No committed results yet: `make cpu-bench` produces `results/cpu-bench/`."
    heads = [f"results/{n}" for n in HEADLINES if (root / f"results/{n}/gap.csv").is_file()]
    parts = []
    if heads:
        rel = heads[0]
        parts += [
            f"### Headline: `{rel}`",
            "Mean over seeds; gap = the share of the teacher–student gap recovered, "
            "(distilled − undistilled) / (teacher − undistilled). Setting and commands: "
            f"[`{rel}/README.md`]({rel}/README.md); every task, dim and paired comparison: "
            f"[`{rel}/results.md`]({rel}/results.md).",
            headline_table(root / rel),
        ]
        if (root / rel / "matryoshka.png").is_file():
            parts.append(f"![avg score per dim]({rel}/matryoshka.png)")
    links = [
        f"- [`{f}/results.md`]({f}/results.md), setting in [`README.md`]({f}/README.md)"
        for f in folders
    ]
    return "\n\n".join([*parts, "### Every results folder", "\n".join(links)])


SECTIONS = {"methods": methods_table, "results": results_section}


def render(text: str) -> str:
    """README text with every generated section replaced."""
    for name, build in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README.md lacks the <!-- {name}:start/end --> markers")
        text = pattern.sub(lambda m, b=build: m.group(1) + b() + "\n" + m.group(2), text)
    return text


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python scripts/update_readme.py``."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Rewrite or check README.md."""
    args = build_parser().parse_args(argv)
    path = ROOT / "README.md"
    old = path.read_text(encoding="utf-8")
    new = render(old)
    if args.check:
        if new != old:
            print("README.md is out of date: run python scripts/update_readme.py")
            return 1
        return 0
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
