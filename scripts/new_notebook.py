"""Write the thin driver notebook of a registry method (no outputs, one `parameters` cell).

    python scripts/new_notebook.py SAMD            # → CTKD/SAMD.ipynb (family ctkd) or MRL/…
    python scripts/new_notebook.py --all --force   # regenerate every registry notebook

All notebooks share this one shape (DESIGN.md §2): title, imports, parameters, config, run,
results table, plot, results path; elastic-depth methods (ESE) add one layers × dims heat-map
cell. Edit the template here, not the notebooks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from samd_common.methods import METHODS, get_method

ROOT = Path(__file__).resolve().parents[1]
HAND_WRITTEN = {"SKD"}
FOLDER = {"ctkd": "CTKD", "mrl": "MRL"}

PARAMETERS = """method: str = "{name}"  # registry key, the name of this notebook
teacher: str = ""  # short name, HF id or local dir; empty means the preset choice (e5-small)
student: str = ""  # short name, HF id or local dir; empty means the preset choice (minilm-l6)
train_csv: str = ""  # corpus CSV (text, source); empty means $SAMD_TRAIN_CSV or a clean corpus
eval_dir: str = ""  # folder of task CSVs; empty means $SAMD_EVAL_DIR (smoke: generated demo data)
preset: str = "full"  # smoke (seconds), demo (minutes on CPU), cpu-bench or full (paper)
seed: int = 0  # seeds data order, dropout and evaluation subsampling
output_dir: str = ""  # empty means $SAMD_OUTPUT_DIR or outputs
epochs: int = 0  # 0 means preset value (full: 5)
lr: float = 0.0  # 0 means preset value (full: 2e-5)
batch_size: int = 0  # 0 means preset value (full: 32)
max_texts: int = 0  # corpus cap; 0 means preset value (full: all texts)
params: dict = {{}}  # method hyper-parameters, e.g. {example}"""


CONFIG_ARGS = (
    "teacher",
    "student",
    "train_csv",
    "eval_dir",
    "preset",
    "seed",
    "output_dir",
    "epochs",
    "lr",
    "batch_size",
    "max_texts",
    "params",
)  # parameters passed on to make_config by keyword


def _import_line(module: str, names: list[str]) -> str:
    """``from module import a, b`` as ``ruff format`` writes it (wrapped past 100 characters)."""
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= 100:
        return line
    return f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")"


def build(name: str) -> nbformat.NotebookNode:
    """The notebook for registry entry ``name``."""
    spec = get_method(name)
    depth = spec.elastic_depth  # ESE: also plot the layers × dims grid
    imports = ["make_config", *(["plot_depth_grid"] if depth else []), "plot_matryoshka"]
    imports += ["results_table", "run_experiment"]
    title = spec.paper if spec.paper.startswith(spec.name) else f"{spec.name}: {spec.paper}"
    example = "{" + ", ".join(f'"{k}": {v!r}' for k, v in list(spec.defaults.items())[:2]) + "}"
    cells = [
        nbformat.v4.new_markdown_cell(
            f"# {title}\n\n{spec.summary}\n\n"
            f"Runs headless with papermill, e.g. `papermill {FOLDER[spec.family]}/{name}.ipynb "
            f"out.ipynb -p preset smoke`. All logic lives in `samd_common`."
        ),
        nbformat.v4.new_code_cell(
            "from pathlib import Path\n\nfrom IPython.display import display\n\n"
            + _import_line("samd_common.experiment", imports)
        ),
        nbformat.v4.new_code_cell(
            PARAMETERS.format(name=name, example=example), metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell(
            "cfg = make_config(\n    method,\n"
            + "".join(f"    {arg}={arg},\n" for arg in CONFIG_ARGS)
            + ")\ncfg"
        ),
        nbformat.v4.new_code_cell("result = run_experiment(cfg)"),
        nbformat.v4.new_code_cell("display(results_table(result))"),
        nbformat.v4.new_code_cell(
            'plot_matryoshka(result, Path(result.results_path).with_name("matryoshka.png"));'
        ),
        *(
            [
                nbformat.v4.new_code_cell(
                    "plot_depth_grid(result, "
                    'Path(result.results_path).with_name("depth_grid.png"));'
                )
            ]
            if depth
            else []
        ),
        nbformat.v4.new_code_cell('print("results:", result.results_path)'),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main(argv: list[str] | None = None) -> int:
    """Write the requested notebooks."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("names", nargs="*", help="registry keys")
    p.add_argument("--all", action="store_true")
    p.add_argument("--force", action="store_true", help="overwrite existing notebooks")
    args = p.parse_args(argv)
    # SKD's notebook drives its own multi-step pipeline (skd.run); it is written by hand.
    names = [m for m in METHODS if m not in HAND_WRITTEN] if args.all else args.names
    for name in names:
        spec = get_method(name)
        path = ROOT / FOLDER[spec.family] / f"{spec.name}.ipynb"
        if path.exists() and not args.force:
            print(f"skip {path} (exists; --force to overwrite)")
            continue
        path.parent.mkdir(exist_ok=True)
        nbformat.write(build(spec.name), path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
