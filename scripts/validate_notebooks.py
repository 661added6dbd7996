"""Generate every method notebook from the registry, and check the committed ones against it.

    python scripts/validate_notebooks.py            # check (exit 1 with one line per problem)
    python scripts/validate_notebooks.py --write    # regenerate CTKD/*.ipynb and MRL/*.ipynb

Every notebook is built from its registry entry (``samd_common.methods.METHODS``) by
:func:`build`, so none can drift: the check regenerates each one and compares it with the file.
A notebook reads like a paper page: title and purpose, ``## Method`` (the loss formula, what it
needs), ``## Parameters`` (one ``parameters`` cell with the real defaults), ``## Run``,
``## Results`` (the run's table and figure, the committed benchmark for context) and
``## References``. The check also covers nbformat validity, no outputs, no ``def``/``class`` in
code cells, parameters that papermill can parse, and registry ↔ notebooks one to one.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import nbformat
from papermill.translators import PythonTranslator

from samd_common.config import PRESETS
from samd_common.methods import METHODS, MethodSpec

ROOT = Path(__file__).resolve().parents[1]
FOLDER = {"ctkd": "CTKD", "mrl": "MRL"}
REQUIRED = ("method", "teacher", "student", "train_csv", "eval_dir", "preset", "seed", "output_dir")
# papermill's parameter parser reads `Optional[int]` but not `int | None`, hence `Optional`.
PARAMETERS = """from typing import Optional

method: str = "{name}"  # registry key, the name of this notebook
teacher: Optional[str] = None  # preset full: {teacher}{teacher_note}
student: Optional[str] = None  # preset full: {student} (short name, HF id or local dir)
train_csv: Optional[str] = None  # {corpus_help}
eval_dir: Optional[str] = None  # {eval_help}
preset: str = "full"  # smoke (seconds) | demo (minutes on CPU) | cpu-bench | full (paper)
seed: int = 0  # seeds initialisation, dropout, data order and evaluation subsampling
output_dir: Optional[str] = None  # None means $SAMD_OUTPUT_DIR or outputs
epochs: Optional[int] = None  # preset full: {epochs}
lr: Optional[float] = None  # preset full: {lr}
batch_size: Optional[int] = None  # preset full: {batch_size}
max_texts: Optional[int] = None  # corpus cap; preset full: {max_texts}
max_steps: Optional[int] = None  # steps, replace epochs; preset full: {max_steps}
resume: bool = False  # continue an interrupted run from its last per-epoch checkpoint
log_every: Optional[int] = None  # training-curve / progress-log interval in steps; None: 10
neighbours: Optional[int] = None  # pair batch texts with k teacher neighbours; None: {neighbours}
interpolate: Optional[float] = None  # keep a share α of the update: θ₀ + α(θ − θ₀); None: {alpha}
{extra}params: Optional[dict] = None  # method parameters over its defaults (listed above)"""
# The suite's tasks: built-in names and/or the user's CSVs (data.user_tasks), made ``tasks=``.
EVAL_TASKS = (
    'eval_tasks: Optional[str] = None  # None: the 9 tasks; or names/your CSVs "stsb;my_eval:sts"'
)
EVERY_EPOCH = "every_epoch: bool = False  # also score the student (full dim) after every epoch"
HELP = {
    "suite": (
        "corpus file; None: $SAMD_TRAIN_CSV or a clean one from eval_dir",
        "task CSV folder; None: $SAMD_EVAL_DIR (smoke: generated data)",
    ),
    "mteb": (
        "corpus file; None: the MTEB tasks' own train texts",
        "MTEB CSV folder; None: $SAMD_MTEB_DIR or ../shared/data/mteb",
    ),
}
# The run's own progress (models, teacher cache, training loss about 20 times, evaluation) as
# log lines on stdout: read in the notebook, and streamed by papermill's log_output in batch runs.
LOGGING = (
    "# The run's progress (models, teacher cache, training loss, evaluation) as log lines\n"
    'logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)\n'
    'logging.getLogger("samd_common").setLevel(logging.INFO)'
)
CONFIG_ARGS = (
    *("teacher", "student", "train_csv", "eval_dir", "preset", "seed", "output_dir"),
    *("epochs", "lr", "batch_size", "max_texts", "max_steps", "resume", "log_every"),
    *("neighbours", "interpolate"),
)  # parameters passed on to make_config by keyword (then the method's extras, then params)


def notebook_path(spec: MethodSpec) -> Path:
    """Where the notebook of a registry entry lives (``CTKD/`` or ``MRL/``)."""
    return ROOT / FOLDER[spec.family] / f"{spec.name}.ipynb"


def _title(spec: MethodSpec) -> str:
    """``# title`` and the purpose paragraph."""
    title = spec.paper if spec.paper.startswith(spec.name) else f"{spec.name}: {spec.paper}"
    paper = f"[{spec.paper}]({spec.url})" if spec.url else "this project's own method (no paper)"
    return (
        f"# {title}\n\n{spec.summary}\n\nPaper: {paper}. This notebook is generated from the "
        "method registry (`python scripts/validate_notebooks.py --write`) and runs headless with "
        f"papermill, e.g. `papermill {FOLDER[spec.family]}/{spec.name}.ipynb out.ipynb -p preset "
        "smoke`. All logic lives in `samd_common`."
    )


def _method(spec: MethodSpec) -> str:
    """``## Method``: the loss formula and what the method needs."""
    if spec.needs_teacher:
        needs = (
            "It needs a teacher and a student with *any* tokenizers; the teacher runs once per "
            "corpus text into the teacher cache (its sentence embedding, token states and "
            "attention), never during training."
        )
    else:
        needs = "It is teacher-free: `teacher` is unused; only the student and the corpus matter."
    notation = (
        "$s^{(1)}, s^{(2)}$: the student's pooled embeddings under two dropout masks; $t$: the "
        "teacher's; $s_{:m}$: the first $m$ (Matryoshka) dims; $H$/$h$: token states; "
        "$\\bar h_g$: the mean token state over a span group $g$ (the characters both "
        "tokenizers cover); $Q$: a student-side head; $\\tau$: the InfoNCE temperature; "
        "$\\mathrm{Att}$: head-averaged attention; $t$ in $\\beta(t), \\alpha(t)$: training "
        "progress."
    )
    return f"## Method\n\n$$\n{spec.formula}\n$$\n\n{notation}\n\n{needs}"


def _parameters(spec: MethodSpec) -> str:
    """The ``parameters`` cell: typed defaults that state the real (preset ``full``) values."""
    p = PRESETS["full"].for_method(spec.name)
    train = {**spec.train_defaults, **p.train}  # the TrainConfig values the run will start from
    corpus_help, eval_help = HELP[spec.hooks.protocol]
    teacher_note = "" if spec.needs_teacher else " (unused: teacher-free method)"
    return PARAMETERS.format(
        name=spec.name,
        teacher=p.teacher,
        teacher_note=teacher_note,
        student=p.student,
        corpus_help=corpus_help,
        eval_help=eval_help,
        epochs=p.epochs,
        lr=p.lr,
        batch_size=p.batch_size,
        max_texts="all texts" if p.max_texts is None else p.max_texts,
        max_steps=p.train.get("max_steps") or "unset",
        neighbours=train.get("neighbours", 0),
        alpha=train.get("interpolate", 1.0),
        extra="".join(f"{line}\n" for line in _extra_parameters(spec)),
    )


def _extra_parameters(spec: MethodSpec) -> tuple[str, ...]:
    """Parameter lines after the shared ones: the suite's ``eval_tasks``, the method's own."""
    suite = (EVAL_TASKS, EVERY_EPOCH) if spec.hooks.protocol == "suite" else ()
    return (*suite, *spec.notebook_parameters)


def _run_cells(spec: MethodSpec) -> list[str]:
    """``make_config(...)`` with every parameter, then ``run_experiment``."""
    extras = [line.split(":")[0] for line in _extra_parameters(spec)]
    keyword = {"eval_tasks": "tasks"}  # notebook parameter → make_config argument
    names = (*CONFIG_ARGS, *extras, "params")
    args = "".join(f"    {keyword.get(a, a)}={a},\n" for a in names)
    return [f"cfg = make_config(\n    method,\n{args})\ncfg", "result = run_experiment(cfg)"]


def _results(spec: MethodSpec) -> tuple[str, list[str], str]:
    """``## Results``: how to read them, the run's table and figures, the benchmark's figure."""
    out = 'Path(result.results_path).with_name("{}")'
    if spec.hooks.protocol == "mteb":
        intro = (
            "## Results\n\nMTEB classification accuracy per task, the undistilled student next "
            "to the distilled one, for each scored encoder (token states replaced by their "
            "nearest sense, or left continuous)."
        )
        cells = ["display(results_table(result))", f"plot_mteb(result, {out.format('skd.png')});"]
        context = (
            "For context, the committed CPU runs of SKD and their teacher rows: "
            "[`results/skd-demo/results.md`](../results/skd-demo/results.md)."
        )
        return intro, cells, context
    intro = (
        "## Results\n\nMain score per task (accuracy, average precision or Spearman × 100) at "
        "each Matryoshka dim, the undistilled student next to the distilled one; the first "
        "figure averages them per task family, in-domain and out-of-domain, against the dim. The "
        "training curve shows the total loss, each term the method logs and the learning rate "
        "against the optimizer step (every `log_every` steps and the last, as the results JSON "
        "keeps them)."
    )
    cells = [
        "display(results_table(result))",
        f"plot_matryoshka(result, {out.format('matryoshka.png')});",
        f"plot_history(result, {out.format('curve.png')});",
    ]
    if spec.elastic_depth:
        cells.append(f"plot_depth_grid(result, {out.format('depth_grid.png')});")
    context = (
        "For context, every method of the CPU benchmark (average main score per dim; "
        "[`results/cpu-bench`](../results/cpu-bench/README.md)):\n\n"
        "![cpu-bench](../results/cpu-bench/matryoshka.png)"
    )
    return intro, cells, context


def _imports(spec: MethodSpec) -> str:
    """The imports cell (``samd_common`` and the standard stack only)."""
    if spec.hooks.protocol == "mteb":
        plots = ["plot_mteb"]
    else:
        plots = [*(["plot_depth_grid"] if spec.elastic_depth else []), "plot_matryoshka"]
    names = sorted(["make_config", *plots, "results_table", "run_experiment"])
    line = f"from samd_common.experiment import {', '.join(names)}"
    if len(line) > 100:
        line = (
            "from samd_common.experiment import (\n" + "".join(f"    {n},\n" for n in names) + ")"
        )
    if spec.hooks.protocol == "suite":
        line += "\nfrom samd_common.reporting.curves import plot_history"
    return (
        "import logging\nimport sys\nfrom pathlib import Path\n\n"
        f"from IPython.display import display\n\n{line}\n\n{LOGGING}"
    )


def build(spec: MethodSpec) -> nbformat.NotebookNode:
    """The notebook of one registry entry."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    intro, result_cells, context = _results(spec)
    cells = [
        md(_title(spec)),
        md(_method(spec)),
        code(_imports(spec)),
        md(
            "## Parameters\n\nEvery parameter can be injected by papermill (`-p name value`); "
            "`None` means the preset's value, stated in each comment for the `full` preset. "
            f"The method's own defaults (`params` is merged over them): `{spec.defaults or {}}`."
        ),
        code(_parameters(spec), metadata={"tags": ["parameters"]}),
        md(
            "## Run\n\nOne call builds the run's configuration, one runs it: corpus, models, "
            "evaluation before, teacher cache, training, evaluation after, results JSON."
        ),
        *[code(src) for src in _run_cells(spec)],
        md(intro),
        *[code(src) for src in result_cells],
        code('print("results:", result.results_path)'),
        md(context),
        md(f"## References\n\n```bibtex\n{spec.citation}\n```"),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def keep_cell_ids(nb: nbformat.NotebookNode, path: Path) -> nbformat.NotebookNode:
    """``nb`` with the cell ids of the notebook at ``path`` where its cells line up (same type).

    The ids are random; keeping them keeps a regenerated notebook's diff to what changed.
    """
    if not path.is_file():
        return nb
    try:
        old = nbformat.read(path, as_version=4).cells
    except Exception:  # noqa: BLE001 - an unreadable notebook is rewritten with new ids
        return nb
    for cell, before in zip(nb.cells, old, strict=False):
        if cell.cell_type == before.cell_type and before.get("id"):
            cell["id"] = before["id"]
    return nb


def _strip_ids(nb: nbformat.NotebookNode) -> list[tuple[str, str, dict]]:
    """What a comparison looks at: each cell's type, source and metadata (not its random id)."""
    return [(c.cell_type, c.source, dict(c.get("metadata", {}))) for c in nb.cells]


def check_code_cells(path: Path, nb: nbformat.NotebookNode) -> list[str]:
    """No outputs, valid Python, no ``def``/``class`` in any code cell."""
    problems = []
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
                problems.append(f"{path}: cell {i} defines {node.name!r}; move it to samd_common")
    return problems


def check_parameters(path: Path, nb: nbformat.NotebookNode) -> list[str]:
    """Exactly one ``parameters`` cell, papermill can parse every line, required names present."""
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(params) != 1 or params[0].cell_type != "code":
        return [f"{path}: needs exactly one code cell tagged 'parameters' (found {len(params)})"]
    tree = ast.parse(params[0].source)
    names = {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    inferred = {p.name for p in PythonTranslator.inspect(params[0])}
    problems = []
    if names - inferred:
        problems.append(
            f"{path}: papermill cannot parse {sorted(names - inferred)} "
            "(one `name: type = value  # help` per line, `Optional[...]` not `X | None`)"
        )
    long = [ln.split(":")[0] for ln in params[0].source.splitlines() if len(ln) > 100]
    if long:
        problems.append(f"{path}: parameter lines over 100 characters (ruff wraps them): {long}")
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        problems.append(f"{path}: parameters cell lacks {missing}")
    return problems


def check(spec: MethodSpec) -> list[str]:
    """Problems of one registry entry's committed notebook (empty list = valid)."""
    path = notebook_path(spec)
    if not path.is_file():
        return [f"{spec.name}: no notebook at {path.relative_to(ROOT)} (run with --write)"]
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001 - any parse/validation error is a finding
        return [f"{path}: invalid notebook ({err})"]
    problems = check_code_cells(path, nb) + check_parameters(path, nb)
    if _strip_ids(nb) != _strip_ids(build(spec)):
        problems.append(
            f"{path}: differs from the registry's template; edit scripts/validate_notebooks.py "
            "or the registry entry, then run `python scripts/validate_notebooks.py --write`"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    """Check (default) or write every notebook; one line per problem, exit 1 if any."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--write", action="store_true", help="regenerate every notebook")
    args = p.parse_args(argv)
    if args.write:
        for spec in METHODS.values():
            notebook_path(spec).parent.mkdir(exist_ok=True)
            nbformat.write(keep_cell_ids(build(spec), notebook_path(spec)), notebook_path(spec))
            print(f"wrote {notebook_path(spec).relative_to(ROOT)}")
    problems = [line for spec in METHODS.values() for line in check(spec)]
    expected = {notebook_path(spec) for spec in METHODS.values()}
    for path in sorted({*ROOT.glob("CTKD/*.ipynb"), *ROOT.glob("MRL/*.ipynb")} - expected):
        problems.append(f"{path.relative_to(ROOT)}: no registry entry in samd_common/methods.py")
    for line in problems:
        print(line)
    print(f"{len(expected)} notebooks checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
