"""Batch runs show the run's own progress: papermill streams the notebook's output, readably."""

from __future__ import annotations

import importlib.util
import json
import logging
from functools import partial
from pathlib import Path

import nbformat
import pytest
from tqdm.auto import tqdm

from samd_common.data.demo import synthetic_sentences
from samd_common.models import load_encoder
from samd_common.training import loop
from samd_common.training.batching import DistillDataset
from samd_common.training.loop import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUNNER = _script("run_experiments")
TEMPLATE = _script("validate_notebooks")

# A stand-in for a method notebook: the template's logging set-up, a package log line, a tqdm
# bar of ~1.5 s (15 redraws at tqdm's default 0.1 s), and a results JSON where run_one looks.
PARAMETERS = 'preset = "smoke"\nseed = 0\noutput_dir = "."'
BODY = """import time
from tqdm.auto import tqdm

logging.getLogger("samd_common.training.loop").info("step 1/2 loss 0.5 lr 2e-05")
for _ in tqdm(range(300), desc="train"):
    time.sleep(0.005)
out = Path(output_dir) / "run"
out.mkdir(parents=True, exist_ok=True)
(out / "results.json").write_text(json.dumps({"method": "MRL", "metrics": {"x@8": 1.0}}))"""


def _notebook(path: Path) -> Path:
    imports = (
        f"import json\nimport logging\nimport sys\nfrom pathlib import Path\n\n{TEMPLATE.LOGGING}"
    )
    cells = [
        nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(imports),
        nbformat.v4.new_code_cell(BODY),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def test_runner_streams_the_notebooks_log_lines_and_few_bar_states(tmp_path, monkeypatch, caplog):
    pytest.importorskip("papermill")
    notebook = _notebook(tmp_path / "MRL.ipynb")
    monkeypatch.setattr(RUNNER, "notebook_path", lambda method: notebook)
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)  # the runner's default applies
    argv = ["--methods", "MRL", "--preset", "smoke", "--output-dir", str(tmp_path / "runs")]
    with caplog.at_level(logging.INFO):
        assert RUNNER.main(argv) == 0
    streamed = [r for r in caplog.records if r.name == "papermill"]
    text = [r.getMessage() for r in streamed]
    assert "INFO samd_common.training.loop: step 1/2 loss 0.5 lr 2e-05" in text  # log_output
    bars = [r for r in streamed if "/300 [" in r.getMessage()]
    assert 1 <= len(bars) <= 3, [r.getMessage() for r in bars]  # 0% and 100%, not 15 redraws
    assert bars[-1].getMessage().startswith("train: 100%|") and "300/300" in bars[-1].getMessage()
    assert all(r.levelno == logging.INFO for r in bars)  # a bar is progress, not a warning
    assert not any("\r" in m for m in text) and all(m.strip() for m in text)
    results = tmp_path / "runs" / "smoke" / "MRL" / "seed0" / "results.json"
    assert json.loads(results.read_text())["metrics"] == {"x@8": 1.0}


def _record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("papermill", level, __file__, 1, msg, None, None)


def test_notebook_output_filter_keeps_each_lines_last_state():
    keep = RUNNER.NotebookOutput()
    bar = _record("\rtrain:  10%|█ | 1/10 [00:01<00:09]\rtrain:  20%|██ | 2/10 [00:02<00:08]\n")
    assert keep.filter(bar) and bar.msg == "train:  20%|██ | 2/10 [00:02<00:08]"
    assert bar.levelno == logging.INFO and bar.levelname == "INFO"
    warning = _record("UserWarning: the cache is stale\n")
    assert keep.filter(warning) and warning.levelno == logging.WARNING
    assert warning.msg == "UserWarning: the cache is stale"
    lines = _record("INFO a: one\nINFO a: two\n", logging.INFO)
    assert keep.filter(lines) and lines.msg == "INFO a: one\nINFO a: two"
    assert not keep.filter(_record("\r\n  \n"))  # nothing left: dropped


def test_training_bar_redraws_only_at_its_mininterval(tiny_dirs, monkeypatch, capsys, shrink):
    """The loss on the bar must not force a redraw per step (in a log: a line per step)."""
    student = load_encoder(str(tiny_dirs["student"]), device="cpu", max_length=24)
    ds = DistillDataset(synthetic_sentences(64, seed=3), student.tokenizer, 24)
    monkeypatch.setattr(loop, "tqdm", partial(tqdm, mininterval=3600))  # TQDM_MININTERVAL=3600
    cfg = TrainConfig(epochs=2, batch_size=8, show_progress=True)
    assert len(train(shrink(student), ds, cfg, collate_fn=ds.collate).steps) == 16
    states = [s for s in capsys.readouterr().err.split("\r") if "/16 [" in s]
    assert 2 <= len(states) <= 3, states  # drawn at the start and the end, not per step
    assert "16/16" in states[-1] and "loss=" in states[-1]
