"""The package tree is a picture of the data path (STYLE.md §1), checked on the source with ``ast``.

A module's stage is the first component after ``samd_common.``. Stages, in data-path order:
the shared modules ``config``, ``distributed``, ``files`` (which import nothing from the package
but each other, and ``config`` nothing at all) → ``data`` → ``provision`` → ``models`` →
``alignment`` → ``training`` → ``losses`` → ``evaluation`` → ``reporting`` → ``skd`` →
``methods`` → ``experiment``. A module imports only from its own stage or an earlier one, never
through a function-local import, there are no import cycles, and no function is longer than
60 lines. ``samd_common/__init__.py`` may import anything; nothing may import it back.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "samd_common"
ROOT = PKG.name
SHARED = ("config", "distributed", "files")
STAGES = (*SHARED, "data", "provision", "models", "alignment", "training", "losses",
          "evaluation", "reporting", "skd", "methods", "experiment")  # fmt: skip
MAX_FUNCTION_LINES = 60


def _rank(stage: str) -> int:
    """Shared modules share rank 0; the package root comes after every stage."""
    if stage == ROOT:
        return len(STAGES)
    return 0 if stage in SHARED else STAGES.index(stage)


@dataclass(frozen=True)
class Import:
    """One import of a package module: where it is and whether it sits inside a function."""

    source: str  # importing module, e.g. "samd_common.training.loop"
    target: str  # imported module (the most specific one that exists)
    line: int
    local: bool  # inside a function body


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py")) if "__pycache__" not in p.parts}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _resolve(name: str) -> str | None:
    """The most specific package module ``name`` refers to (None: outside the package)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports_of(module: str) -> list[Import]:
    is_package = MODULES[module].name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: anchor at the importing package
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in child.names]  # a module or a name in base
            for name in names:
                if name.split(".")[0] != ROOT:
                    continue
                target = _resolve(name)
                if target is not None and target != module:
                    found.append(Import(module, target, child.lineno, local))
            visit(child, inner)

    visit(TREES[module], False)
    return found


IMPORTS = list(dict.fromkeys(imp for module in MODULES for imp in _imports_of(module)))


def _where(imp: Import) -> str:
    return f"{MODULES[imp.source].relative_to(PKG.parent)}:{imp.line} imports {imp.target}"


def test_the_stage_table_covers_every_module():
    stages = {_stage(m) for m in MODULES} - {ROOT}
    assert stages <= set(STAGES), f"stage(s) missing from STAGES: {sorted(stages - set(STAGES))}"


def test_no_function_local_package_imports():
    local = [_where(imp) for imp in IMPORTS if imp.local]
    assert not local, "function-local samd_common imports:\n" + "\n".join(local)


def test_modules_import_only_their_own_or_earlier_stages():
    bad = []
    for imp in IMPORTS:
        src, dst = _stage(imp.source), _stage(imp.target)
        if src == ROOT:
            continue  # the package root re-exports everything
        if src in SHARED:
            ok = dst in SHARED and src != "config"  # config is imported, imports nothing
        else:
            ok = _rank(dst) <= _rank(src)
        if not ok:
            bad.append(f"{_where(imp)} ({src} → {dst})")
    assert not bad, "imports from a later stage:\n" + "\n".join(bad)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_planted_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_no_import_cycles():
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        edges[imp.source].add(imp.target)
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


def test_no_function_longer_than_60_lines():
    long = []
    for module, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    where = MODULES[module].relative_to(PKG.parent)
                    long.append(f"{where}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 60 lines (split them into named steps):\n" + "\n".join(long)
