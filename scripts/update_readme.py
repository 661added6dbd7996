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


SECTIONS = {"methods": methods_table}


def render(text: str) -> str:
    """README text with every generated section replaced."""
    for name, build in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README.md lacks the <!-- {name}:start/end --> markers")
        text = pattern.sub(lambda m, b=build: m.group(1) + b() + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    """Rewrite or check README.md."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
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
