"""θ₁ read back from a training checkpoint (training.checkpoints; evaluate.py --checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from readme_checks import load_script
from torch import nn

from samd_common.data.demo import synthetic_sentences
from samd_common.models import load_encoder
from samd_common.models.io import save_encoder
from samd_common.models.merge import interpolate_encoder
from samd_common.reporting.results import load_record
from samd_common.training.batching import DistillDataset
from samd_common.training.checkpoints import load_student_state, student_state
from samd_common.training.loop import TrainConfig, latest_checkpoint, save_checkpoint, train

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "evaluate.py"


class Spread(nn.Module):
    """A method with a student and a head of its own (left out of the student's weights)."""

    def __init__(self, student):
        super().__init__()
        self.student, self.head = student, nn.Linear(student.dim, 4)

    def forward(self, batch, step, total):
        emb = self.student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
        loss = (self.head(emb) @ self.head(emb).T).square().mean()
        return loss, {"loss": loss.item()}


@pytest.fixture
def trained(tiny_dirs, tmp_path):
    """A tiny run: its trained method, its last checkpoint, and the student saved at α = ½."""
    student = load_encoder(str(tiny_dirs["student"]), device="cpu", max_length=24)
    ds = DistillDataset(synthetic_sentences(32, seed=3), student.tokenizer, 24)
    method = Spread(student)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-2, show_progress=False, seed=1)
    cfg.checkpoint_dir = str(tmp_path / "checkpoints")
    train(method, ds, cfg, collate_fn=ds.collate)
    base = load_encoder(str(tiny_dirs["student"]), device="cpu", max_length=24)
    half = load_encoder(str(tiny_dirs["student"]), device="cpu", max_length=24)
    half.load_state_dict(method.student.state_dict())
    interpolate_encoder(half, base, 0.5)
    save_encoder(half, tmp_path / "student")
    return method, latest_checkpoint(tmp_path / "checkpoints"), tmp_path / "student"


def test_the_checkpoint_gives_back_the_trained_student_not_the_saved_one(trained):
    method, ckpt, folder = trained
    state = student_state(ckpt)
    assert set(state) == set(method.student.state_dict())  # the head's weights are left out
    encoder = load_encoder(str(folder), device="cpu")
    assert not all(torch.equal(v, state[k]) for k, v in encoder.state_dict().items())  # α = ½
    load_student_state(encoder, ckpt)
    for name, value in method.student.state_dict().items():
        assert torch.equal(encoder.state_dict()[name], value), name


def test_a_file_that_is_no_checkpoint_or_no_student_is_a_clear_error(trained, tmp_path, tiny_dirs):
    save_checkpoint(tmp_path / "plain.pt", {"weights": torch.zeros(2)})
    with pytest.raises(ValueError, match="not a training checkpoint"):
        student_state(tmp_path / "plain.pt")
    save_checkpoint(tmp_path / "head.pt", {"method": {"head.weight": torch.zeros(2)}})
    with pytest.raises(ValueError, match="no 'student.\\*' weights"):
        student_state(tmp_path / "head.pt")
    teacher = load_encoder(str(tiny_dirs["teacher"]), device="cpu")
    with pytest.raises(ValueError, match="pass the run's own student folder"):
        load_student_state(teacher, trained[1])


def test_evaluate_scores_the_checkpoint_weights(trained, tmp_path, demo_dir):
    evaluate = load_script(SCRIPT)
    method, ckpt, folder = trained
    save_encoder(method.student, tmp_path / "theta1")
    common = ["--eval-dir", str(demo_dir), "--tasks", "stsb", "--max-test", "20", "--device", "cpu"]
    scores = {}
    for name, model, extra in (
        ("theta1", tmp_path / "theta1", []),
        ("checkpoint", folder, ["--checkpoint", str(ckpt)]),
        ("saved", folder, []),
    ):
        out = tmp_path / f"{name}.json"
        assert evaluate.main([*common, "--model", str(model), *extra, "--output", str(out)]) == 0
        scores[name] = load_record(out)
    assert scores["checkpoint"].metrics == pytest.approx(scores["theta1"].metrics)
    assert scores["checkpoint"].metrics != pytest.approx(scores["saved"].metrics)
    assert scores["checkpoint"].config["checkpoint"] == str(ckpt)
    nope = [*common, "--model", str(folder), "--checkpoint", str(tmp_path / "nope.pt")]
    assert evaluate.main(nope) == 2  # one line, no traceback (test_boundaries checks the form)
