"""Training curves: the loop's history, thinned into the results JSON, read back and plotted."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samd_common.data.demo import synthetic_sentences
from samd_common.models import load_encoder
from samd_common.reporting.curves import epoch_frame, has_history, history_frame, plot_history
from samd_common.reporting.results import RunRecord, load_record
from samd_common.training.batching import DistillDataset
from samd_common.training.history import (
    History,
    progress_every,
    progress_line,
    significant,
    thin_history,
)
from samd_common.training.loop import TrainConfig, train

matplotlib.use("Agg")
REPO = Path(__file__).resolve().parents[1]
OLD = REPO / "results" / "cpu-bench" / "runs" / "SAMD" / "seed0" / "results.json"


def _steps(n: int) -> list[dict]:
    """``n`` steps of a method logging ``task`` always and ``sam`` on even steps only."""
    steps = []
    for i in range(n):
        entry = {"step": i, "lr": 2e-5 * (i + 1) / n, "loss": 1 / (i + 1) + 1e-9, "task": 0.5}
        steps.append(entry | ({"sam": 0.25 + i} if i % 2 == 0 else {}))
    return steps


def test_thin_history_keeps_the_interval_the_last_step_and_every_term():
    curve = thin_history(_steps(24), 10)
    cols = curve["steps"]
    assert curve["log_every"] == 10 and list(cols) == ["step", "lr", "loss", "task", "sam"]
    assert cols["step"] == [0, 10, 20, 23]  # the interval, then the last step
    assert cols["loss"] == [1.0, 0.09091, 0.04762, 0.04167]  # 4 significant digits
    assert cols["sam"] == [0.25, 10.25, 20.25, None]  # step 23 did not log it
    assert all(len(v) == 4 for v in cols.values())
    assert thin_history(_steps(10), 10)["steps"]["step"] == [0, 9]
    assert thin_history([], 10) == {}


def test_significant_rounds_keeps_ints_and_drops_non_finite():
    assert significant(0.083631351) == 0.08363 and significant(2.0043534e-06) == 2.004e-06
    assert significant(7) == 7 and isinstance(significant(7), int)
    assert significant(float("nan")) is None and significant(float("inf")) is None
    assert significant("x") is None and significant(True) is None


def test_bad_log_every_is_an_error():
    with pytest.raises(ValueError, match="log_every"):
        thin_history(_steps(3), 0)
    with pytest.raises(ValueError, match="log_every"):
        TrainConfig(log_every=0)


def test_progress_lines_are_tens_per_run_and_say_step_loss_terms_lr():
    assert progress_every(1000, 10) == 50  # 20 lines + the last
    assert progress_every(20, 10) == 10 and progress_every(5, 10) == 10
    line = progress_line({"step": 119, "lr": 2e-5, "loss": 0.12345, "task": 0.05}, 1000)
    assert line == "step 120/1000 loss 0.1235 (task 0.05) lr 2e-05"


class TwoTerms(nn.Module):
    """A method of two logged terms, ``spread`` on even steps only (like SAMD's skipped L_SAM)."""

    def __init__(self, student):
        super().__init__()
        self.student, self.head = student, nn.Linear(student.dim, 8)

    def forward(self, batch, step, total):
        a = self.head(
            self.student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
        )
        align = F.mse_loss(a, torch.zeros_like(a))
        spread = a.var(0).mean() if step % 2 == 0 else a.new_zeros(())
        logs = {"loss": (align + spread).item(), "align": align.item()}
        return align + spread, logs | ({"spread": spread.item()} if step % 2 == 0 else {})


def test_train_records_the_history_and_logs_progress(tiny_dirs, caplog):
    student = load_encoder(str(tiny_dirs["student"]), device="cpu", max_length=24)
    ds = DistillDataset(synthetic_sentences(64, seed=3), student.tokenizer, 24)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, log_every=3, show_progress=False)
    with caplog.at_level(logging.INFO, logger="samd_common.training.loop"):
        hist = train(TwoTerms(student), ds, cfg, collate_fn=ds.collate)
    assert len(hist.steps) == 16  # 8 steps per epoch
    cols = hist.curve(cfg.log_every)["steps"]
    assert cols["step"] == [0, 3, 6, 9, 12, 15]  # the interval and the last step
    assert list(cols) == ["step", "lr", "loss", "align", "spread"]  # every logged term
    assert cols["spread"] == [significant(hist.steps[i].get("spread")) for i in cols["step"]]
    assert cols["spread"][1] is None and cols["spread"][2] is not None  # odd steps lack it
    assert cols["loss"][-1] == significant(hist.steps[-1]["loss"])
    assert cols["lr"][0] == significant(hist.steps[0]["lr"]) > 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(lines) == 6  # every progress_every(16, 3) = 3 steps, and the last
    assert lines[0].startswith("step 1/16 loss ") and "(align " in lines[0]
    assert lines[-1].startswith("step 16/16 loss ") and " lr " in lines[-1]


def _record(history: dict) -> RunRecord:
    return RunRecord("SAMD", "minilm-l6", metrics={"stsb/spearman@384": 80.0}, history=history)


def test_results_json_round_trips_the_history(tmp_path):
    curve = thin_history(_steps(24), 10)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_record(curve).to_json()))
    again = load_record(path)
    assert again.history == curve and json.loads(path.read_text())["history"] == curve
    assert has_history(again) and list(history_frame(again).step) == [0, 10, 20, 23]


def test_old_results_without_history_load_and_are_written_back_unchanged():
    payload = json.loads(OLD.read_text())
    assert "history" not in payload  # committed before runs kept their curve
    record = load_record(OLD)
    assert record.history == {} and not has_history(record) and record.train["last"]
    assert record.to_json() == payload
    with pytest.raises(ValueError, match="no training history.*log_every"):
        plot_history(record)


def test_plot_history_draws_a_panel_per_logged_value(tmp_path):
    fig = plot_history(_record(thin_history(_steps(24), 10)), tmp_path / "curve.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["loss (total)", "task", "sam", "lr"]
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_run_experiment_writes_the_history_into_results_json(tmp_path):
    from samd_common.experiment import make_config, run_experiment

    cfg = make_config("MinED", preset="smoke", output_dir=str(tmp_path), log_every=2)
    record = run_experiment(cfg)
    payload = json.loads(Path(record.results_path).read_text())
    cols = payload["history"]["steps"]
    last = payload["train"]["last"][0]
    n = payload["train"]["steps"]
    assert payload["history"]["log_every"] == 2 and "history" not in payload["train"]
    assert cols["step"] == [*range(0, n - 1, 2), n - 1]
    assert set(cols) == set(last) and len(cols) > 3  # every logged term (MinED: task, kd, …)
    assert all(math.isclose(cols[k][-1], last[k], rel_tol=1e-3) for k in last)


# ------------------------------------------------------------ per-epoch evaluation (every_epoch)
def test_on_epoch_scores_after_every_epoch_and_training_resumes_in_train_mode(tiny_dirs):
    student = load_encoder(str(tiny_dirs["student"]), device="cpu", max_length=24)
    ds = DistillDataset(synthetic_sentences(64, seed=3), student.tokenizer, 24)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, show_progress=False)
    method, modes = TwoTerms(student), []
    original = method.forward
    method.forward = lambda *a: (modes.append(student.training), original(*a))[1]

    def score(epoch: int) -> dict:
        student.encode(["a text"])  # what the suite does: eval mode, no gradients
        return {"avg/all/id@32": 50.0 + epoch}

    hist = train(method, ds, cfg, collate_fn=ds.collate, on_epoch=score)
    assert hist.epoch_evals == [
        {"epoch": 1, "step": 8, "avg/all/id@32": 51.0},
        {"epoch": 2, "step": 16, "avg/all/id@32": 52.0},
    ]
    assert len(modes) == 16 and all(modes)  # every step trained in train mode (dropout on)
    assert hist.curve(10)["epochs"] == hist.epoch_evals
    assert "epochs" not in History(steps=hist.steps).curve(10)  # not asked: no key


def test_run_experiment_every_epoch_records_scores_and_plots_them(tmp_path):
    from samd_common.experiment import make_config, run_experiment

    cfg = make_config("MinED", preset="smoke", output_dir=str(tmp_path), epochs=2, every_epoch=True)
    record = run_experiment(cfg)
    epochs = json.loads(Path(record.results_path).read_text())["history"]["epochs"]
    full = max(record.dims)
    assert [e["epoch"] for e in epochs] == [1, 2] and epochs[1]["step"] == record.train["steps"]
    assert {k.rpartition("@")[2] for k in epochs[0] if "@" in k} == {str(full)}  # full dim only
    final = record.metrics[f"avg/all/id@{full}"]
    assert epochs[1][f"avg/all/id@{full}"] == pytest.approx(final, rel=1e-3)  # 4 digits kept
    fig = plot_history(record)
    assert "score after each epoch (full dim)" in [ax.get_title() for ax in fig.axes]
    assert list(epoch_frame(record).columns) == ["epoch", "step", "avg ID", "avg OOD"]
    with pytest.raises(ValueError, match="every_epoch"):
        make_config("SKD", preset="smoke", every_epoch=True)  # MTEB protocol: no such setting
