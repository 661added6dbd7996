"""Run method notebooks headlessly through papermill, resumably.

    python scripts/run_experiments.py --methods all --seeds 0 1 2 --preset demo \
        [--teacher e5-small] [--student minilm-l6] [--output-dir outputs/runs] \
        [--param eval_dir=../shared/data/eval] [--param max_texts=1800] \
        [--tag no-sam --param 'params={"use_sam": false}'] [--reference]

Each (method, seed) runs ``CTKD/<method>.ipynb`` or ``MRL/<method>.ipynb`` with injected
parameters; the executed notebook and its results JSON land under
``<output-dir>/<preset>/<method>[+<tag>]/seed<k>/`` (a tag names an ablation or variant). A run
whose ``results.json`` already exists (and reads as a results record) is skipped, so an
interrupted sweep continues where it stopped; ``--resume`` also continues an interrupted *run*
from its last per-epoch checkpoint instead of epoch 0 (the notebooks' ``resume`` parameter).
Every ``--param`` name is checked against the notebook's ``parameters`` cell and every value by
``make_config`` before anything runs (papermill itself only warns "Passed unknown parameter"
and runs with the default): a bad one ends the script at once with one line naming it (exit
code 2; ``--debug`` shows the traceback). A failing run never stops the others; the script
ends with a summary of failures, one line each (exit code 1 if any). ``--reference`` also
evaluates the teacher once with the preset's protocol (``<output-dir>/<preset>/_reference/``);
the undistilled student is in every run's results (``metrics_before``).
``scripts/collect_results.py`` builds the tables.

Each run's own progress shows in the terminal while its notebook runs (papermill's
``log_output``): the package's log lines (models, teacher cache, a training line about 20 times a
run with the loss, its terms and the lr, evaluation, results) and its tqdm bars, redrawn at most
every ``TQDM_MININTERVAL`` seconds (default here 60, so a long run prints tens of lines, not one
per step; set the variable to change it), each bar state on a line of its own.

``--archive DIR`` also copies every finished ``results.json`` (and the teacher reference) to
``DIR/<method>[+<tag>]/seed<k>/results.json``, a small tree that can be committed (e.g.
``results/cpu-bench/runs``): runs found there are skipped too, so a sweep resumes on a fresh
machine from the committed files, and ``collect_results.py DIR`` rebuilds the tables from them.

SKD (``CTKD/SKD.ipynb``) is evaluated with the MTEB classification protocol on its own task
files, so ``eval_dir``/``train_csv`` parameters are not passed to it; its own parameters go in
as ``--param mode=sep --param student=teacher:4 --param cluster=mcl --param jobs=2``. Its
teacher row under that protocol: ``scripts/evaluate.py --protocol mteb ... --output
DIR/_reference/teacher-<model>-mteb.json``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import logging
import os
import re
import sys
import textwrap
import time
from pathlib import Path

from tqdm.auto import tqdm

from samd_common.config import get_preset
from samd_common.experiment import make_config
from samd_common.files import write_json_atomic
from samd_common.methods import METHODS, get_method

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("run_experiments")
USER_ERRORS = (ValueError, KeyError, OSError)  # bad input: one line, no traceback
MTEB_DROPPED = ("eval_dir", "train_csv", "eval_tasks")  # suite-only parameters, not sent to SKD
BAR_SECONDS = "60"  # TQDM_MININTERVAL of the notebooks' bars unless the environment sets one
OWN_FLAGS = {  # notebook parameters the runner sets itself: not accepted as --param
    "method": "--methods",
    "preset": "--preset",
    "seed": "--seeds",
    "output_dir": "--output-dir",
}


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one line (no usage block) with exit code 2."""

    def error(self, message: str):
        """Print ``prog: error: message`` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class NotebookOutput(logging.Filter):
    """papermill's log of a notebook's output (``log_output``), made readable line by line.

    tqdm redraws its bar after carriage returns: only each line's last state is kept. Output
    that is empty then is dropped, and a bar (``n/total [``), which tqdm writes to stderr and
    papermill therefore logs as WARNING, is logged as INFO.
    """

    BAR = re.compile(r"\d+/\d+ \[")

    def filter(self, record: logging.LogRecord) -> bool:
        """Clean ``record`` in place; False (dropped) when nothing is left of it."""
        if not isinstance(record.msg, str) or record.args:
            return True
        lines = (line.rsplit("\r", 1)[-1].rstrip() for line in record.msg.split("\n"))
        text = "\n".join(line for line in lines if line)
        if not text:
            return False
        record.msg = text
        if record.levelno == logging.WARNING and self.BAR.search(text):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def message(err: BaseException) -> str:
    """The message of ``err`` (a KeyError's without quotes; papermill: the failing cell's)."""
    text = getattr(err, "evalue", None)
    if text is None:
        text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return str(text)


def one_line(err: BaseException, width: int = 300) -> str:
    """``Type: message`` of ``err`` on one line, cut at a word boundary."""
    name = getattr(err, "ename", None) or type(err).__name__
    return textwrap.shorten(f"{name}: {message(err)}", width, placeholder=" …")


def notebook_path(method: str) -> Path:
    """The notebook of a registry entry."""
    spec = get_method(method)
    return ROOT / {"ctkd": "CTKD", "mrl": "MRL"}[spec.family] / f"{spec.name}.ipynb"


def parse_param(text: str) -> tuple[str, object]:
    """``name=value`` with JSON values where they parse (numbers, dicts), else strings.

    Raises:
        ValueError: no ``=`` or no name.
    """
    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise ValueError(f"--param {text!r}: write name=value, e.g. --param epochs=2.")
    name = name.strip()
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def is_done(path: Path) -> bool:
    """Whether ``path`` is a finished run's results JSON (a truncated or foreign file is not)."""
    if not path.is_file():
        return False
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("%s is unreadable (%s): treated as not done, the run goes again", path, err)
        return False
    if not isinstance(record, dict) or "metrics" not in record:
        log.warning("%s holds no results record: treated as not done", path)
        return False
    return True


def notebook_parameters(method: str) -> set[str]:
    """Names in the ``parameters`` cell of a method's notebook (papermill's own reading)."""
    import papermill

    logging.getLogger("papermill").setLevel(logging.WARNING)  # no "Input Notebook" line per check
    try:
        return set(papermill.inspect_notebook(str(notebook_path(method))))
    finally:
        logging.getLogger("papermill").setLevel(logging.NOTSET)


def run_params(method: str, base: dict) -> dict:
    """The parameters sent to ``method``'s notebook (SKD: no suite folders or tasks)."""
    if get_method(method).hooks.protocol == "mteb":
        dropped = sorted(set(base) & set(MTEB_DROPPED))
        if dropped:
            log.warning("%s: %s not passed (it is scored on its MTEB task files)", method, dropped)
        return {k: v for k, v in base.items() if k not in MTEB_DROPPED}
    return dict(base)


def check_params(methods: list[str], base: dict, seeds: list[int]) -> None:
    """Every parameter name is one of each notebook's, every value passes ``make_config``.

    The values are checked as the notebook's ``make_config`` call will see them (``eval_tasks``
    is its ``tasks``), from the repository root where the notebooks run.

    Raises:
        ValueError / KeyError: one line naming the parameter (and the closest valid name).
    """
    for method in methods:
        params = run_params(method, base)
        known = notebook_parameters(method)
        for name in sorted(set(params) - known):
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"--param {name}: {notebook_path(method).relative_to(ROOT)} has no parameter "
                f"{name!r}{hint} (papermill would only warn and run with the default). Its "
                f"parameters: {', '.join(sorted(known))}."
            )
        kwargs = {k: v for k, v in params.items() if k != "method"}
        if "eval_tasks" in kwargs:  # the notebook passes it as make_config's tasks
            kwargs["tasks"] = kwargs.pop("eval_tasks")
        cwd = Path.cwd()
        os.chdir(ROOT)  # relative paths mean what they will mean in the notebook
        try:
            for seed in seeds:
                make_config(method, **{**kwargs, "seed": seed})
        except USER_ERRORS as err:
            raise ValueError(f"{method}: {message(err)}") from err
        finally:
            os.chdir(cwd)


def run_one(method: str, seed: int, run_dir: Path, params: dict) -> Path:
    """Execute one notebook; return its results JSON path (copied there atomically)."""
    import papermill

    run_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TQDM_MININTERVAL", BAR_SECONDS)  # read by the kernel's tqdm
    papermill.execute_notebook(
        str(notebook_path(method)),
        str(run_dir / f"{method}.ipynb"),
        kernel_name="python3",
        parameters={**params, "seed": seed, "output_dir": str(run_dir)},
        cwd=str(ROOT),
        progress_bar=False,
        log_output=True,  # the run's own progress, streamed to the papermill logger
    )
    found = sorted(run_dir.glob("*/results.json"))
    if not found:
        raise RuntimeError(f"{method} seed {seed}: the notebook wrote no results.json")
    record = json.loads(found[-1].read_text(encoding="utf-8"))
    return write_json_atomic(run_dir / "results.json", record)  # decides "skip" next time


def evaluate_script():
    """``scripts/evaluate.py`` as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location(
        "evaluate_script", ROOT / "scripts" / "evaluate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_file(preset: str, teacher: str) -> Path:
    """``_reference/teacher-<name>.json``: where a sweep (and its archive) keeps the teacher row."""
    return Path("_reference") / f"teacher-{Path(teacher or get_preset(preset).teacher).name}.json"


def reference_eval(preset: str, teacher: str, params: dict, out: Path) -> Path:
    """Evaluate the teacher once with the preset's suite protocol (skipped if done)."""
    p = get_preset(preset)
    teacher = teacher or p.teacher
    path = out / reference_file(preset, teacher)
    if is_done(path):
        return path
    seed = 0 if p.eval_seed is None else p.eval_seed
    argv = ["--model", teacher, "--output", str(path), "--seed", str(seed)]
    argv += ["--max-length", str(p.max_length)]
    argv += ["--eval-dir", str(params["eval_dir"])] if params.get("eval_dir") else []
    for flag, value in (("--max-train", p.max_train), ("--max-test", p.max_test)):
        argv += [flag, str(value)] if value else []
    if evaluate_script().main(argv) != 0:
        raise RuntimeError(f"teacher evaluation failed: {argv}")
    return path


def archive_copy(src: Path, archive: Path | None, rel: Path) -> None:
    """Copy a finished results JSON into the archive tree (atomically; no-op without one)."""
    if archive is None or not src.is_file():
        return
    write_json_atomic(archive / rel, json.loads(src.read_text(encoding="utf-8")))


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python scripts/run_experiments.py``."""
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["all"], help="registry keys or 'all'")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--preset", default="demo")
    p.add_argument("--teacher", default="")
    p.add_argument("--student", default="")
    p.add_argument("--output-dir", type=Path, default=Path("outputs/runs"))
    p.add_argument("--param", action="append", default=[], help="extra notebook parameter")
    p.add_argument("--tag", default="", help="variant name appended to the method's folder")
    p.add_argument("--reference", action="store_true", help="also evaluate the teacher once")
    p.add_argument(
        "--archive", type=Path, default=None, help="copy results JSONs here; skip runs found here"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue interrupted runs from their last per-epoch checkpoint (not epoch 0)",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of a bad input")
    return p


def plan(args) -> tuple[list[str], dict]:
    """The sweep's methods and shared notebook parameters, all checked before any run.

    Raises:
        ValueError / KeyError: an unknown preset, method or parameter, or a bad value.
    """
    get_preset(args.preset)
    methods = (
        list(METHODS) if args.methods == ["all"] else [get_method(m).name for m in args.methods]
    )
    given = dict(parse_param(x) for x in args.param)
    for name in sorted(set(given) & set(OWN_FLAGS)):
        raise ValueError(f"--param {name}: the runner sets it; use {OWN_FLAGS[name]} instead.")
    base = {"preset": args.preset, **given}
    base.update({k: v for k, v in (("teacher", args.teacher), ("student", args.student)) if v})
    if args.resume:
        base["resume"] = True
    check_params(methods, base, args.seeds)
    return methods, base


def sweep(args, methods: list[str], base: dict) -> tuple[int, list[tuple[str, int, str]]]:
    """Run every (method, seed) not done yet; return (runs with results, failures)."""
    runs = [(m, s) for s in args.seeds for m in methods]
    failures, done = [], 0
    label = "{}+" + args.tag if args.tag else "{}"
    ref_file = reference_file(args.preset, args.teacher)
    if args.reference and args.archive is not None and is_done(args.archive / ref_file):
        log.info("skip the teacher reference (archived in %s)", args.archive)
    elif args.reference:
        try:
            ref = reference_eval(args.preset, args.teacher, base, args.output_dir / args.preset)
            archive_copy(ref, args.archive, ref_file)
        except Exception as err:  # noqa: BLE001 - the runs go on without the teacher row
            failures.append(("teacher", -1, one_line(err)))
    for method, seed in tqdm(runs, desc="runs"):
        rel = Path(label.format(method)) / f"seed{seed}" / "results.json"
        run_dir = args.output_dir / args.preset / rel.parent
        if is_done(run_dir / "results.json"):
            log.info("skip %s seed %d (results exist)", method, seed)
            archive_copy(run_dir / "results.json", args.archive, rel)
            done += 1
            continue
        if args.archive is not None and is_done(args.archive / rel):
            log.info("skip %s seed %d (results archived in %s)", method, seed, args.archive)
            done += 1
            continue
        t0 = time.perf_counter()
        try:
            result = run_one(method, seed, run_dir, run_params(method, base))
            archive_copy(result, args.archive, rel)
            done += 1
            log.info("done %s seed %d in %.0f s", method, seed, time.perf_counter() - t0)
        except Exception as err:  # noqa: BLE001 - one failing run must not stop the sweep
            failures.append((method, seed, one_line(err)))
            log.error("FAILED %s seed %d: %s", method, seed, one_line(err))
    return done, failures


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; print a summary (exit 2: bad input, nothing ran; 1: a run failed)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    papermill_log = logging.getLogger("papermill")
    if not any(isinstance(f, NotebookOutput) for f in papermill_log.filters):
        papermill_log.addFilter(NotebookOutput())
    try:
        methods, base = plan(args)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"error: {' '.join(message(err).split())}", file=sys.stderr)
        return 2
    done, failures = sweep(args, methods, base)
    total = len(args.seeds) * len(methods)
    print(f"\n{done}/{total} runs have results under {args.output_dir / args.preset}")
    for method, seed, err in failures:
        print(f"FAILED {method} seed {seed}: {err}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
