"""JupyterLab in the set-up: the venv's `python3` kernel is the project's Python (`make lab`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"


@pytest.fixture
def project_venv() -> Path:
    """The project venv, when these tests run from it (else skip: nothing to check)."""
    if Path(sys.prefix).resolve() != VENV.resolve():
        pytest.skip(f"not run from the project venv ({VENV}); run `make setup` and use it")
    return VENV


def test_python3_kernel_spec_runs_the_project_python(project_venv):
    kernelspec = pytest.importorskip("jupyter_client.kernelspec")
    spec = kernelspec.KernelSpecManager().get_kernel_spec("python3")
    python = Path(spec.argv[0])
    python = python if python.is_absolute() else Path(shutil.which(str(python)) or python)
    assert python.resolve() == Path(sys.executable).resolve(), (
        f"the python3 kernel runs {spec.argv[0]} (spec in {spec.resource_dir}), not "
        f"{sys.executable}: reinstall it with `{sys.executable} -m ipykernel install "
        f"--sys-prefix --name python3`, or remove the user-level kernel that shadows it"
    )
    assert spec.argv[1:] and "ipykernel_launcher" in spec.argv


def test_jupyter_lab_is_installed_in_the_venv_and_make_lab_uses_it(project_venv):
    jupyter = project_venv / "bin" / "jupyter"
    assert (project_venv / "bin" / "jupyter-lab").is_file(), "pip install -r requirements.txt"
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    plan = subprocess.run(
        ["make", "-n", "lab"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{jupyter.relative_to(REPO)} lab" in plan
