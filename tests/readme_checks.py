"""The README command checker (``test_readme_commands.py``, ``test_readme_inline_commands.py``).

Every shell command in README.md's ```bash blocks is one that a test checks.

A command is taken from a ```bash block with its backslash continuations joined, its
``# comment`` kept apart and blank lines dropped; ``&&``/``||``/``;``/``|`` split it into parts,
each checked on its own:

* ``make TARGET [VAR=value]``: the target is a rule of the Makefile, each VAR is used there;
* ``python scripts/X.py ARGS`` (also ``.venv/bin/python``, Colab's ``!python``): the script exists
  and its ``build_parser()`` accepts ARGS (parsed only, the script does not run);
* ``papermill ...`` (also ``python -m papermill``): papermill's own command line accepts it, the
  notebook exists and every ``-p NAME`` is one of its parameters (papermill itself only warns);
* ``python -m pytest ...``: every marker named in ``-m EXPR`` is registered, every path exists;
  any other ``python -m MODULE ARGS`` is checked as the command ``MODULE ARGS``;
* anything else (pip, git, conda, jupyter, venv, ``cd``) only when ``NOT_RUN`` names its program
  with the reason it is not run here, and the README marks the line ``# not run here: <reason>``.

README commands are literal: optional flags are written out with example values and a comment
says they are optional, never as ``[--flag N]`` placeholders (argparse rejects those, so the
checker fails on them), and a checked command has no ``…`` or ``<name>`` placeholder either.
``$VARS`` are not expanded; arguments are only parsed, not opened. Commands written inline in the
README's prose get the same checks (``test_readme_inline_commands.py``). A plain module, not a
test file: pytest's ``pythonpath`` (pyproject.toml) puts ``tests/`` on the path in every import
mode.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
NOT_RUN_MARK = "not run here"
NOT_RUN = {  # program → why no test or CI runs it (the README line must say so too)
    "pip": "installs packages: needs internet (CI installs through `make setup`)",
    "conda": "needs conda and internet; the venv is what CI tests",
    "git": "Colab only: clones the repository (CI already has a checkout)",
    "jupyter": "interactive server (`make lab` is the tested entry point)",
    "venv": "creates the environment (CI gets it from `make setup`)",
    "cd": "Colab only: changes into the clone",
}
SEPARATORS = {"&&", "||", ";", "|"}
PLACEHOLDER = re.compile(r"…|<[^<>]*>")
MAKE_RULE = re.compile(r"^([A-Za-z0-9_./-][A-Za-z0-9_./ -]*?)\s*:(?!=)", re.MULTILINE)


@dataclass(frozen=True)
class Command:
    """One README shell command: its first line number, code and (``#``-less) comment."""

    line: int
    code: str
    comment: str


def split_comment(line: str) -> tuple[str, str]:
    """``(code, comment)`` of one shell line; a ``#`` inside quotes or a word is code."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def readme_commands(text: str) -> list[Command]:
    """The commands of every ```bash block of a README text, continuations joined."""
    commands: list[Command] = []
    in_bash, start, code, comments = False, 0, [], []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_bash = line.strip() == "```bash" and not in_bash
            continue
        if not in_bash:
            continue
        part, comment = split_comment(line)
        if not code and not part.strip():
            continue  # blank line or a comment-only line
        start = start if code else number
        code.append(part.removesuffix("\\").strip())
        comments.append(comment)
        if not part.endswith("\\"):
            text_comment = " ".join(c for c in comments if c)
            commands.append(Command(start, " ".join(code), text_comment))
            code, comments = [], []
    return commands


def parts(code: str) -> list[list[str]]:
    """The shell words of each part of a command line, split at ``&&``, ``||``, ``;``, ``|``."""
    out: list[list[str]] = [[]]
    for word in shlex.split(code):
        if word in SEPARATORS:
            out.append([])
        else:
            out[-1].append(word)
    return [words for words in out if words]


def check_make(args: list[str]) -> list[str]:
    """Errors of ``make ARGS``: unknown targets, variables the Makefile never uses."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = {t for rule in MAKE_RULE.findall(makefile) for t in rule.split()}
    errors = []
    for arg in args:
        name, eq, _ = arg.partition("=")
        if eq and not re.search(rf"\b{re.escape(name)}\b", makefile):
            errors.append(f"make: the Makefile never uses variable {name!r}")
        elif not eq and (arg.startswith("-") or arg not in targets):
            errors.append(f"make: no target {arg!r} in the Makefile (targets: {sorted(targets)})")
    return errors


def load_script(path: Path):
    """Import ``scripts/X.py`` as a module without running its ``main``."""
    spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def check_script(script: str, args: list[str]) -> list[str]:
    """Errors of ``python SCRIPT ARGS``: a missing script, no parser, arguments it rejects."""
    path = REPO / script
    if not script.startswith("scripts/") or not path.is_file():
        return [f"python: no script {script!r} under scripts/"]
    module = load_script(path)
    if not hasattr(module, "build_parser"):
        return [f"{script} has no build_parser(): its arguments cannot be checked"]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            module.build_parser().parse_args(args)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            message = (stderr.getvalue().strip().splitlines() or [""])[-1]
            return [f"{script} rejects {args}: {message}"]
    return []


def check_papermill(args: list[str]) -> list[str]:
    """Errors of ``papermill ARGS``: options papermill rejects, a missing notebook or parameter."""
    import click
    import papermill
    from papermill.cli import papermill as cli

    try:
        params = cli.make_context("papermill", list(args)).params
    except click.ClickException as err:
        return [f"papermill rejects {args}: {err.format_message()}"]
    notebook = REPO / params["notebook_path"]
    if not notebook.is_file():
        return [f"papermill: no notebook {params['notebook_path']!r}"]
    known = set(papermill.inspect_notebook(str(notebook)))
    given = [name for name, _ in params["parameters"] + params["parameters_raw"]]
    return [f"papermill: {notebook.name} has no parameter {n!r}" for n in given if n not in known]


def check_pytest(args: list[str], markers: set[str]) -> list[str]:
    """Errors of ``pytest ARGS``: unregistered markers in ``-m EXPR``, missing test paths."""
    errors, words = [], iter(args)
    for arg in words:
        if arg == "-k":
            next(words, "")  # a test-name expression: nothing to check
        elif arg == "-m":
            names = set(re.findall(r"[A-Za-z_]\w*", next(words, ""))) - {"and", "or", "not"}
            errors += [f"pytest: marker {n!r} is not registered" for n in sorted(names - markers)]
        elif not arg.startswith("-") and not (REPO / arg.split("::")[0]).exists():
            errors.append(f"pytest: no test path {arg!r}")
    return errors


def check_part(words: list[str], comment: str, markers: set[str]) -> list[str]:
    """Errors of one command part (see the module docstring for what each program gets)."""
    program, args = Path(words[0].removeprefix("!")).name, words[1:]
    if program in ("python", "python3") and args[:1] == ["-m"] and len(args) > 1:
        return check_part(args[1:], comment, markers)  # python -m MODULE: the command MODULE
    if program not in NOT_RUN and PLACEHOLDER.search(" ".join(args)):
        return [f"{program}: a placeholder in {' '.join(args)!r}; write a literal command"]
    if program in ("python", "python3"):
        if args and args[0].endswith(".py"):
            return check_script(args[0], args[1:])
        return [f"python {' '.join(args[:2])}: no check for this form"]
    if program == "make":
        return check_make(args)
    if program == "papermill":
        return check_papermill(args)
    if program == "pytest":
        return check_pytest(args, markers)
    if program not in NOT_RUN:
        return [f"{program}: no test runs or checks it and NOT_RUN does not list it"]
    if NOT_RUN_MARK not in comment:
        return [f"{program}: not run here ({NOT_RUN[program]}); mark it '# {NOT_RUN_MARK}: …'"]
    return []


def check_command(command: Command, markers: set[str]) -> list[str]:
    """Every error of one README command, each prefixed with its line number."""
    errors = [
        e for words in parts(command.code) for e in check_part(words, command.comment, markers)
    ]
    return [f"README.md:{command.line}: {e}" for e in errors]


def registered_markers(config: pytest.Config) -> set[str]:
    """The markers registered in pyproject.toml (pytest's own reading)."""
    return {line.split(":")[0].strip() for line in config.getini("markers")}
