"""Every shell command written inline in README.md's prose is one that a test here checks.

The README's ```bash blocks are covered by ``test_readme_commands.py``; this covers its prose
(everything outside fenced ``` blocks). A code span there is a **command** when it has at least
two words and its first word, less a leading ``!`` (Colab) and any directory (``.venv/bin/``), is
one of ``PROGRAMS`` (``make``, ``python``, ``pip``, ``git``, ``jupyter``, ``papermill``,
``pytest``, ``torchrun``, ``accelerate``, ...), or is a script path ``scripts/NAME.py`` (checked
as ``python scripts/NAME.py ...``). So ``make lab`` and ``python scripts/bench.py --output b.json``
are commands; ``make_config``, ``python3`` (a kernel name), ``--resume`` and
``scripts/run_experiments.py`` alone are not. A span may run over a line break (Markdown reads
the break as a space).

Each command gets the same checks as a block command (``check_command``: Makefile targets and
variables, the script's ``build_parser()``, papermill and its ``-p`` names, pytest markers), so
it is literal: no ``…``, ``<name>`` or ``{a,b}`` placeholders. A program that no test runs
(``NOT_RUN``: pip, git, conda, jupyter, venv, cd) is allowed only when the **sentence** holding
the span also holds a visible mark ``(not run here: REASON)``, e.g.
"``conda env create -f environment.yml`` (not run here: needs conda and internet)". A sentence
ends at ``.``/``!``/``?`` before a capital letter, ``*``, a backtick or ``(``, at a blank line, a
heading or a list item; text inside code spans never ends one or counts as a mark.
"""

from __future__ import annotations

import re

import pytest
from readme_checks import (
    NOT_RUN,
    NOT_RUN_MARK,
    README,
    Command,
    check_command,
    readme_commands,
    registered_markers,
)

PROGRAMS = {"make", "python", "python3", "pip", "pip3", "git", "conda", "jupyter", "papermill",
            "pytest", "torchrun", "accelerate", "cd", *NOT_RUN}  # fmt: skip
SPAN = re.compile(r"`([^`]+)`")
SCRIPT = re.compile(r"scripts/\w+\.py")
BLOCK_START = re.compile(r"\s*(#|[*+-] |\||<!--)")  # a heading, list item, table row, comment
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z*`(])")
MARK = re.compile(rf"\({NOT_RUN_MARK}:[^()]*\)")


def prose_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line, text)`` of each paragraph or list item outside fenced code blocks."""
    blocks: list[tuple[int, list[str]]] = []
    fenced, open_ = False, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced, open_ = not fenced, False
            continue
        if fenced or not line.strip():
            open_ = False
            continue
        if not open_ or BLOCK_START.match(line):
            blocks.append((number, []))
        blocks[-1][1].append(line)
        open_ = not line.lstrip().startswith("#")  # a heading is a block of its own
    return [(start, "\n".join(lines)) for start, lines in blocks]


def is_command(words: list[str]) -> bool:
    """Whether a code span's words are a command (see the module docstring)."""
    if len(words) < 2:
        return False
    first = words[0].removeprefix("!")
    return first.rsplit("/", 1)[-1] in PROGRAMS or SCRIPT.fullmatch(first) is not None


def marks(block: str, start: int, end: int) -> str:
    """The ``(not run here: …)`` marks of the sentence of ``block`` holding ``[start, end)``."""
    masked = SPAN.sub(lambda m: "`" + "x" * (len(m.group(0)) - 2) + "`", block)
    begin = 0
    for boundary in SENTENCE_END.finditer(masked):
        if boundary.start() >= end:
            return " ".join(MARK.findall(masked[begin : boundary.start()]))
        if boundary.end() <= start:
            begin = boundary.end()
    return " ".join(MARK.findall(masked[begin:]))


def inline_commands(text: str) -> list[Command]:
    """The command code spans of a README's prose, each with its sentence's marks."""
    commands = []
    for first_line, block in prose_blocks(text):
        for span in SPAN.finditer(block):
            words = span.group(1).split()
            if not is_command(words):
                continue
            if SCRIPT.fullmatch(words[0]):
                words.insert(0, "python")
            line = first_line + block.count("\n", 0, span.start())
            comment = marks(block, span.start(), span.end())
            commands.append(Command(line, " ".join(words), comment))
    return commands


@pytest.fixture(scope="module")
def markers(pytestconfig) -> set[str]:
    """The markers registered in pyproject.toml."""
    return registered_markers(pytestconfig)


COMMANDS = inline_commands(README.read_text(encoding="utf-8"))


def test_readme_prose_has_commands():
    codes = [c.code for c in COMMANDS]
    assert len(codes) >= 15, codes
    assert "make demo" in codes and "conda env create -f environment.yml" in codes
    block_lines = {c.line for c in readme_commands(README.read_text(encoding="utf-8"))}
    assert not block_lines & {c.line for c in COMMANDS}  # prose only, never a block's line


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"L{c.line}")
def test_readme_inline_command_is_checked(command, markers):
    assert check_command(command, markers) == []


def test_extraction_finds_command_spans_in_prose_only():
    text = (
        "# T\n\nUse `make_config`, `python3`, `--resume` or `scripts/run_experiments.py`; run\n"
        "`python\n  scripts/bench.py --steps 2` or `scripts/skd.py merge a --out b`.\n\n"
        "```bash\nmake tset\n```\n"
        "* `conda env create` (not run here: conda). Then `pip install x`.\n"
    )
    assert inline_commands(text) == [
        Command(4, "python scripts/bench.py --steps 2", ""),
        Command(5, "python scripts/skd.py merge a --out b", ""),
        Command(10, "conda env create", "(not run here: conda)"),
        Command(10, "pip install x", ""),  # the mark is in the sentence before
    ]


BAD = {
    "Time it with `python scripts/bench.py --ouptut b.json` first.": "rejects",
    "A step: `python\n  scripts/gpu_check.py --jsn r.json` (CPU too).": "rejects",
    "Run `make lab LAB_ARSG=--no-browser`.": "never uses variable 'LAB_ARSG'",
    "Steps: `python scripts/skd.py {gather,merge,cluster}` one at a time.": "rejects",
    "Build `scripts/build_corpus.py --eval-dir d --out …` once.": "placeholder",
    "In Colab: `!pip install -r requirements-gpu.txt`, then run all cells.": "mark it",
    "In Colab: `!git clone x && cd x`. Then run it (not run here: Colab).": "mark it",
    "Or `.venv/bin/jupyter lab` (not run here; interactive).": "mark it",
    "Or `torchrun --nproc-per-node 2 train.py` (not run here: GPU).": "NOT_RUN does not list it",
}


@pytest.mark.parametrize("text", BAD)
def test_checker_fails_on_a_bad_inline_command(text, markers):
    (command,) = inline_commands(text)
    errors = check_command(command, markers)
    assert errors and BAD[text] in " ".join(errors), errors


def test_checker_passes_marked_and_valid_inline_commands(markers):
    text = (
        "* **Colab** (not run here: Colab): `!pip install -r requirements-gpu.txt` and\n"
        "  `pip install --no-deps -e .`, then `!python scripts/bench.py --output b.json`.\n"
        '* `make lab LAB_ARGS="--no-browser --port 8899"` or `pytest -m gpu`.\n'
    )
    commands = inline_commands(text)
    assert len(commands) == 5
    assert [e for c in commands for e in check_command(c, markers)] == []
