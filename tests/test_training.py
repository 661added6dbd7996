from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from samd_common.data.demo import synthetic_sentences
from samd_common.models import load_encoder
from samd_common.training.batching import DistillDataset
from samd_common.training.loop import (
    TrainConfig,
    get_lr,
    latest_checkpoint,
    param_groups,
    train,
)


class DropoutContrastive(nn.Module):
    """Minimal method: SimCSE-style loss plus a trainable head (like a projection)."""

    def __init__(self, student, nan_calls=(), interrupt_at=None):
        super().__init__()
        self.student, self.head = student, nn.Linear(student.dim, 8)
        self.nan_calls, self.calls, self.interrupt_at = set(nan_calls), 0, interrupt_at

    def forward(self, batch, step, total):
        a = self.student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
        b = self.student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
        sim = F.normalize(self.head(a), dim=-1) @ F.normalize(self.head(b), dim=-1).T / 0.05
        loss = F.cross_entropy(sim, torch.arange(len(a)))
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt  # simulates a killed run
        if self.calls in self.nan_calls:
            loss = loss * float("nan")
        return loss, {"loss": loss.item()}


def _setup(tiny_dirs, n=48, **kw):
    student = load_encoder(str(tiny_dirs["student"]), device="cpu", max_length=24)
    ds = DistillDataset(synthetic_sentences(n, seed=3), student.tokenizer, 24)
    torch.manual_seed(0)  # the head's initialisation
    return DropoutContrastive(student, **kw), ds


def _params(method):
    return torch.cat([p.detach().flatten() for p in method.parameters()])


def test_lr_schedule_warmup_then_cosine_to_floor():
    cfg = TrainConfig(warmup_frac=0.1, min_lr_frac=0.1)
    lrs = [get_lr(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3) and min(lrs) >= 0.1 - 1e-9


def test_training_updates_student_and_head(tiny_dirs):
    method, ds = _setup(tiny_dirs)
    before = _params(method).clone()
    hist = train(
        method,
        ds,
        TrainConfig(epochs=1, batch_size=8, lr=1e-3, show_progress=False),
        collate_fn=ds.collate,
    )
    assert len(hist.steps) == 6 and all(math.isfinite(s["loss"]) for s in hist.steps)
    n_head = method.head.weight.numel() + method.head.bias.numel()  # the head's params come last
    after = _params(method)
    assert not torch.equal(before[-n_head:], after[-n_head:])
    assert not torch.equal(before[:-n_head], after[:-n_head])  # the student moved too


def test_accumulated_steps_follow_the_schedule_with_each_group_at_its_rate(tiny_dirs):
    method, ds = _setup(tiny_dirs)
    cfg = TrainConfig(
        epochs=2, batch_size=4, grad_accum=3, lr=1e-3, proj_lr=1e-2, show_progress=False
    )
    hist = train(method, ds, cfg, collate_fn=ds.collate)
    total = 48 // (4 * 3) * 2  # 4 optimizer steps per epoch
    assert [s["step"] for s in hist.steps] == list(range(total)) and method.calls == 3 * total
    assert [s["lr"] for s in hist.steps] == pytest.approx(
        [1e-3 * get_lr(k, total, cfg) for k in range(total)]
    )
    assert len(hist.step_times) == total and hist.epochs_done == 2
    groups = param_groups(method, cfg)
    assert [g["lr"] for g in groups] == [1e-3, 1e-2]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in method.head.parameters()}


def test_too_few_texts_for_one_step_is_an_error(tiny_dirs):
    method, ds = _setup(tiny_dirs, n=10)
    with pytest.raises(ValueError, match="make no optimizer step"):
        train(method, ds, TrainConfig(batch_size=4, grad_accum=3, show_progress=False))


def test_resume_gives_identical_weights(tiny_dirs, tmp_path):
    cfg = dict(batch_size=8, lr=1e-3, show_progress=False, seed=1)
    full, ds = _setup(tiny_dirs)
    train(
        full,
        ds,
        TrainConfig(epochs=2, checkpoint_dir=str(tmp_path / "a"), **cfg),
        collate_fn=ds.collate,
    )
    part, ds2 = _setup(tiny_dirs, interrupt_at=9)  # killed in epoch 2 (6 steps per epoch)
    with pytest.raises(KeyboardInterrupt):
        train(
            part,
            ds2,
            TrainConfig(epochs=2, checkpoint_dir=str(tmp_path / "b"), **cfg),
            collate_fn=ds2.collate,
        )
    assert latest_checkpoint(tmp_path / "b").name == "epoch-1.pt"
    resumed, ds3 = _setup(tiny_dirs)  # fresh process state: reload from the checkpoint
    hist = train(
        resumed,
        ds3,
        TrainConfig(epochs=2, checkpoint_dir=str(tmp_path / "b"), resume=True, **cfg),
        collate_fn=ds3.collate,
    )
    assert hist.epochs_done == 2
    assert torch.equal(_params(full), _params(resumed))


def test_nonfinite_steps_are_skipped_then_stop(tiny_dirs):
    method, ds = _setup(tiny_dirs, nan_calls={1, 3})
    hist = train(
        method, ds, TrainConfig(epochs=1, batch_size=8, show_progress=False), collate_fn=ds.collate
    )
    assert hist.skipped_nonfinite == 2 and len(hist.steps) == 4
    assert all(math.isfinite(s["loss"]) for s in hist.steps)
    method, ds = _setup(tiny_dirs, nan_calls=set(range(100)))
    with pytest.raises(RuntimeError, match="non-finite losses"):
        train(
            method,
            ds,
            TrainConfig(epochs=1, batch_size=8, max_nonfinite=2, show_progress=False),
            collate_fn=ds.collate,
        )


def test_same_seed_same_result(tiny_dirs):
    results = []
    for _ in range(2):
        method, ds = _setup(tiny_dirs)
        train(
            method,
            ds,
            TrainConfig(epochs=1, batch_size=8, lr=1e-3, show_progress=False, seed=5),
            collate_fn=ds.collate,
        )
        results.append(_params(method))
    assert torch.equal(results[0], results[1])
