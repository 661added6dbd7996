"""Check every notebook under CTKD/ and MRL/ (exit 1 with one line per problem).

Checks: valid nbformat; exactly one code cell tagged ``parameters`` that defines the required
names and whose ``method`` default is the notebook's name; no outputs or execution counts; no
``def``/``class`` in code cells; and a one-to-one match between notebooks and registry entries.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("method", "teacher", "student", "train_csv", "eval_dir", "preset", "seed", "output_dir")


def check_notebook(path: Path) -> list[str]:
    """Problems found in one notebook (empty list = valid)."""
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001 - any parse/validation error is a finding
        return [f"{path}: invalid notebook ({err})"]
    problems = []
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(params) != 1 or params[0].cell_type != "code":
        problems.append(
            f"{path}: needs exactly one code cell tagged 'parameters' (found {len(params)})"
        )
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs") or cell.get("execution_count") is not None:
            problems.append(f"{path}: cell {i} has outputs; clear them before committing")
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as err:
            problems.append(f"{path}: cell {i} is not valid Python ({err.msg})")
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                problems.append(
                    f"{path}: cell {i} defines {node.name!r}; move logic into samd_common"
                )
    if len(params) == 1:
        tree = ast.parse(params[0].source)
        names = {
            t.id: node.value
            for node in tree.body
            if isinstance(node, ast.AnnAssign | ast.Assign)
            for t in ([node.target] if isinstance(node, ast.AnnAssign) else node.targets)
            if isinstance(t, ast.Name)
        }
        from papermill.translators import PythonTranslator

        inferred = {p.name for p in PythonTranslator.inspect(params[0])}
        if set(names) - inferred:
            problems.append(
                f"{path}: papermill cannot parse {sorted(set(names) - inferred)} "
                f"(one `name: type = value  # help` per line, no '=' in the help)"
            )
        missing = [n for n in REQUIRED if n not in names]
        if missing:
            problems.append(f"{path}: parameters cell lacks {missing}")
        method = names.get("method")
        if isinstance(method, ast.Constant) and method.value != path.stem:
            problems.append(
                f"{path}: method default {method.value!r} != notebook name {path.stem!r}"
            )
    return problems


def main() -> int:
    """Validate all notebooks against each other and the method registry."""
    sys.path.insert(0, str(ROOT))
    from samd_common.methods import METHODS

    notebooks = sorted([*ROOT.glob("CTKD/*.ipynb"), *ROOT.glob("MRL/*.ipynb")])
    problems = [p for nb in notebooks for p in check_notebook(nb)]
    names = {nb.stem for nb in notebooks}
    for key in sorted(set(METHODS) - names):
        problems.append(f"registry entry {key!r} has no notebook (scripts/new_notebook.py {key})")
    for key in sorted(names - set(METHODS)):
        problems.append(f"notebook {key!r} has no registry entry in samd_common/methods.py")
    for spec in METHODS.values():
        folder = {"ctkd": "CTKD", "mrl": "MRL"}[spec.family]
        if spec.name in names and not (ROOT / folder / f"{spec.name}.ipynb").exists():
            problems.append(f"{spec.name}: notebook must live in {folder}/")
    for line in problems:
        print(line)
    print(f"{len(notebooks)} notebooks checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
