"""Every shell command in README.md's ```bash blocks passes ``readme_checks`` (its docstring says
what is checked), and the checker fails on bad commands."""

from __future__ import annotations

import pytest
from readme_checks import README, Command, check_command, readme_commands, registered_markers


@pytest.fixture(scope="module")
def markers(pytestconfig) -> set[str]:
    """The registered markers (see ``registered_markers``)."""
    return registered_markers(pytestconfig)


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def test_readme_has_commands():
    assert len(COMMANDS) >= 15, [c.code for c in COMMANDS]
    assert all(c.code and "\\" not in c.code and "#" not in c.code for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"L{c.line}")
def test_readme_command_is_checked(command, markers):
    assert check_command(command, markers) == []


def test_extraction_joins_continuations_and_drops_comments():
    text = "x\n```bash\n# alone\nmake test   # all\n\npython a.py \\\n    --b 'c#d'  # e\n```\n"
    assert readme_commands(text) == [
        Command(4, "make test", "all"),
        Command(6, "python a.py --b 'c#d'", "e"),
    ]
    assert readme_commands("```python\nmake tset\n```\n") == []


BAD = {
    "make tset": "no target 'tset'",
    "make lab LAB_ARSG=1": "never uses variable 'LAB_ARSG'",
    "python scripts/evaluate.py --model m --eval-dri d": "rejects",
    "python scripts/evaluate.py --model m [--dims 384]": "rejects",
    "python scripts/evalute.py --model m": "no script",
    "!python scripts/collect_results.py --shwo r.json": "rejects",
    '.venv/bin/python -m pytest -m "not realmodel"': "'realmodel' is not registered",
    "papermill CTKD/SAMD.ipynb out.ipynb -p epoch 2": "no parameter 'epoch'",
    "papermill CTKD/SAMD.ipynb out.ipynb --paramter a 1": "rejects",
    "pip install foo": "mark it",
    "git clone x && cd x": "mark it",
    "python3 -m venv .venv": "mark it",
    "python scripts/build_corpus.py --eval-dir d --out …": "placeholder",
    "frobnicate --now  # not run here: GPU only": "NOT_RUN does not list it",
}


@pytest.mark.parametrize("line", BAD)
def test_checker_fails_on_a_bad_command(line, markers):
    (command,) = readme_commands(f"```bash\n{line}\n```\n")
    errors = check_command(command, markers)
    assert errors and BAD[line] in " ".join(errors), errors


def test_checker_passes_marked_and_valid_commands(markers):
    text = (
        "```bash\n!pip install -r requirements-gpu.txt  # not run here: Colab only\n"
        "make lab LAB_ARGS=--no-browser\npapermill --help-notebook MRL/ESE.ipynb\n```\n"
    )
    assert [e for c in readme_commands(text) for e in check_command(c, markers)] == []
