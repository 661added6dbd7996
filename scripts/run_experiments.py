"""Run method notebooks headlessly through papermill, resumably.

    python scripts/run_experiments.py --methods all --seeds 0 1 2 --preset demo \
        [--teacher e5-small] [--student minilm-l6] [--output-dir outputs/runs] \
        [--param eval_dir=../shared/data/eval] [--param max_texts=1800] \
        [--tag no-sam --param 'params={"use_sam": false}'] [--reference]

Each (method, seed) runs ``CTKD/<method>.ipynb`` or ``MRL/<method>.ipynb`` with injected
parameters; the executed notebook and its results JSON land under
``<output-dir>/<preset>/<method>[+<tag>]/seed<k>/`` (a tag names an ablation or variant). A run
whose ``results.json`` already exists is skipped, so an
interrupted sweep continues where it stopped. A failing run never stops the others; the script
ends with a summary of failures (exit code 1 if any). ``--reference`` also evaluates the teacher
once with the preset's protocol (``<output-dir>/<preset>/_reference/``); the undistilled student
is in every run's results (``metrics_before``). ``scripts/collect_results.py`` builds the tables.

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
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from samd_common.config import get_preset
from samd_common.files import write_json_atomic
from samd_common.methods import METHODS, get_method

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("run_experiments")


def notebook_path(method: str) -> Path:
    """The notebook of a registry entry."""
    spec = get_method(method)
    return ROOT / {"ctkd": "CTKD", "mrl": "MRL"}[spec.family] / f"{spec.name}.ipynb"


def parse_param(text: str) -> tuple[str, object]:
    """``name=value`` with JSON values where they parse (numbers, dicts), else strings."""
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def run_one(method: str, seed: int, run_dir: Path, params: dict) -> Path:
    """Execute one notebook; return its results JSON path."""
    import papermill

    run_dir.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(notebook_path(method)),
        str(run_dir / f"{method}.ipynb"),
        kernel_name="python3",
        parameters={**params, "seed": seed, "output_dir": str(run_dir)},
        cwd=str(ROOT),
        progress_bar=False,
    )
    found = sorted(run_dir.glob("*/results.json"))
    if not found:
        raise RuntimeError(f"{method} seed {seed}: the notebook wrote no results.json")
    (run_dir / "results.json").write_text(found[-1].read_text())
    return run_dir / "results.json"


def evaluate_script():
    """``scripts/evaluate.py`` as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location(
        "evaluate_script", ROOT / "scripts" / "evaluate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_eval(preset: str, teacher: str, params: dict, out: Path) -> Path:
    """Evaluate the teacher once with the preset's suite protocol (skipped if done)."""
    p = get_preset(preset)
    teacher = teacher or p.teacher
    path = out / "_reference" / f"teacher-{Path(teacher).name}.json"
    if path.is_file():
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


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; print a summary."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    methods = (
        list(METHODS) if args.methods == ["all"] else [get_method(m).name for m in args.methods]
    )
    base = {"preset": args.preset, **dict(parse_param(x) for x in args.param)}
    base.update({k: v for k, v in (("teacher", args.teacher), ("student", args.student)) if v})
    runs = [(m, s) for s in args.seeds for m in methods]
    failures, done = [], 0
    label = "{}+" + args.tag if args.tag else "{}"
    if args.reference:
        try:
            ref = reference_eval(args.preset, args.teacher, base, args.output_dir / args.preset)
            archive_copy(ref, args.archive, Path("_reference") / ref.name)
        except Exception as err:  # noqa: BLE001 - the runs go on without the teacher row
            failures.append(("teacher", -1, f"{type(err).__name__}: {str(err)[:300]}"))
    for method, seed in tqdm(runs, desc="runs"):
        rel = Path(label.format(method)) / f"seed{seed}" / "results.json"
        run_dir = args.output_dir / args.preset / rel.parent
        if (run_dir / "results.json").is_file():
            log.info("skip %s seed %d (results exist)", method, seed)
            archive_copy(run_dir / "results.json", args.archive, rel)
            done += 1
            continue
        if args.archive is not None and (args.archive / rel).is_file():
            log.info("skip %s seed %d (results archived in %s)", method, seed, args.archive)
            done += 1
            continue
        t0 = time.perf_counter()
        try:
            params = dict(base)
            if get_method(method).hooks.protocol == "mteb":  # SKD: MTEB task files, not the suite
                params = {k: v for k, v in params.items() if k not in ("eval_dir", "train_csv")}
            archive_copy(run_one(method, seed, run_dir, params), args.archive, rel)
            done += 1
            log.info("done %s seed %d in %.0f s", method, seed, time.perf_counter() - t0)
        except Exception as err:  # noqa: BLE001 - one failing run must not stop the sweep
            failures.append((method, seed, f"{type(err).__name__}: {str(err)[:300]}"))
            log.error("FAILED %s seed %d: %s", method, seed, err)
    print(f"\n{done}/{len(runs)} runs have results under {args.output_dir / args.preset}")
    for method, seed, err in failures:
        print(f"FAILED {method} seed {seed}: {err}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
