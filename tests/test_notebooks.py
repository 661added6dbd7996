"""Notebook tier: every notebook runs headless through papermill with ``preset="smoke"``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from samd_common.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*REPO.glob("CTKD/*.ipynb"), *REPO.glob("MRL/*.ipynb")])


def test_validate_notebooks_script_passes():
    out = subprocess.run(
        [sys.executable, "scripts/validate_notebooks.py"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert {p.stem for p in NOTEBOOKS} == set(METHODS)


@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_smoke_run(notebook, tmp_path):
    papermill = pytest.importorskip("papermill")
    papermill.execute_notebook(
        str(notebook),
        str(tmp_path / "out.ipynb"),
        kernel_name="python3",
        parameters={"preset": "smoke", "output_dir": str(tmp_path)},
        cwd=str(REPO),
        progress_bar=False,
    )
    results = list(tmp_path.glob("*/results.json"))
    assert len(results) == 1
    payload = json.loads(results[0].read_text())
    assert payload["method"] == notebook.stem
    main = [v for k, v in payload["metrics"].items() if k.startswith("avg/all/")]
    assert main and all(math.isfinite(v) for v in main)
    assert payload["metrics_before"] and payload["env"]["torch"]
    plot = "skd.png" if notebook.stem == "SKD" else "matryoshka.png"  # SKD: per-task MTEB bars
    assert (results[0].parent / plot).is_file()


def test_readme_generated_sections_are_current():
    out = subprocess.run(
        [sys.executable, "scripts/update_readme.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.notebooks
def test_sweep_runner_continues_after_a_failure_and_resumes(tmp_path):
    """SAMD fails (no such teacher), MRL (teacher-free) still runs; a rerun skips MRL."""
    pytest.importorskip("papermill")
    cmd = [sys.executable, "scripts/run_experiments.py", "--methods", "SAMD", "MRL"]
    cmd += ["--preset", "smoke", "--teacher", str(tmp_path / "no-such-teacher"), "--tag", "t"]
    cmd += ["--output-dir", str(tmp_path)]
    kw = dict(capture_output=True, text=True)
    first = subprocess.run(cmd, cwd=REPO, **kw)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "FAILED SAMD seed 0" in first.stdout and "1/2 runs have results" in first.stdout
    done = tmp_path / "smoke" / "MRL+t" / "seed0" / "results.json"
    assert json.loads(done.read_text())["method"] == "MRL"
    stamp = done.stat().st_mtime_ns
    again = subprocess.run(cmd + ["--archive", str(tmp_path / "arch")], cwd=REPO, **kw)
    assert "skip MRL seed 0" in again.stderr and done.stat().st_mtime_ns == stamp
    archived = tmp_path / "arch" / "MRL+t" / "seed0" / "results.json"
    assert json.loads(archived.read_text()) == json.loads(done.read_text())
    # a fresh machine: outputs gone, the (committed) archive is there → nothing reruns, not even
    # the teacher reference (this teacher does not exist: evaluating it would fail the sweep)
    ref = {"method": "eval", "model": "no-such-teacher", "metrics": {"stsb/spearman@8": 1.0}}
    (tmp_path / "arch" / "_reference").mkdir()
    (tmp_path / "arch" / "_reference" / "teacher-no-such-teacher.json").write_text(json.dumps(ref))
    fresh = [c if c != str(tmp_path) else str(tmp_path / "fresh") for c in cmd]
    third = subprocess.run(
        [*fresh, "--methods", "MRL", "--archive", str(tmp_path / "arch"), "--reference"],
        cwd=REPO,
        **kw,
    )
    assert "results archived" in third.stderr and third.returncode == 0, third.stderr
    assert "skip the teacher reference" in third.stderr
    assert not (tmp_path / "fresh" / "smoke" / "MRL+t").exists()
