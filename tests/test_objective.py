"""The shared training step (losses.base.Objective) and the parameter bases (losses.params)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch

from samd_common.losses import (
    DistillParams,
    MRLLoss,
    Objective,
    Params,
    SimCSELoss,
    host_logs,
    info_nce,
)
from samd_common.models import load_encoder

TEXTS = ["A man is playing a guitar.", "The dog likes the movie", "Two kids lost my wallet!"]


@dataclass
class ToyParams(DistillParams):
    """w_task, w_kd, temperature and one rule of its own."""

    method = "Toy"
    scale: float = 1.0  # multiplies the KD term

    def rules(self) -> dict[str, bool]:
        """The shared rules and a positive scale."""
        return {**super().rules(), "scale > 0": self.scale > 0}


class Toy(Objective):
    """SimCSE plus a squared distance to a target embedding in the batch."""

    name = "Toy"
    batch_keys = ("input_ids", "attention_mask", "target")
    batch_hint = "add 'target' (B, D_s)."
    single_pass = False

    @property
    def uses_task(self) -> bool:
        return not self.single_pass

    def kd_terms(self, out, batch, step, total_steps):
        kd = self.params.scale * (out["sentence_embedding"] - batch["target"]).pow(2).mean()
        return kd, {"kd": kd, "progress": step / total_steps}


@pytest.fixture(scope="module")
def _student(tiny_dirs):
    return load_encoder(str(tiny_dirs["student"]), device="cpu")


@pytest.fixture
def student(_student):
    torch.manual_seed(0)
    return copy.deepcopy(_student).train()


@pytest.fixture
def batch(_student):
    tok = _student.tokenize(TEXTS)
    g = torch.Generator().manual_seed(0)
    return {**tok, "target": torch.randn(len(TEXTS), _student.dim, generator=g)}


def test_step_mixes_task_and_kd_with_the_weights(student, batch):
    toy = Toy(student, ToyParams(w_task=0.3, w_kd=2.0, scale=0.5))
    torch.manual_seed(1)
    loss, logs = toy(batch, step=5, total_steps=10)
    torch.manual_seed(1)  # the same two dropout masks, by hand
    s1 = student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
    s2 = student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
    task, kd = info_nce(s1, s2, 0.07), 0.5 * (s1 - batch["target"]).pow(2).mean()
    assert torch.equal(loss, 0.3 * task + 2.0 * kd)
    assert list(logs) == ["loss", "task", "kd", "progress"] and logs["progress"] == 0.5
    assert logs["task"] == pytest.approx(task.item()) and logs["kd"] == pytest.approx(kd.item())


def test_without_a_task_the_student_runs_once(student, batch, forward_calls):
    calls = forward_calls(student)
    toy = Toy(student, ToyParams(w_kd=2.0))
    toy.single_pass = True
    loss, logs = toy(batch, step=0, total_steps=1)
    assert len(calls) == 1 and "task" not in logs
    assert logs["loss"] == pytest.approx(2.0 * logs["kd"])


def test_teacher_free_loss_is_the_task_loss_and_logs_only_it(student, batch, forward_calls):
    calls = forward_calls(student)
    loss, logs = SimCSELoss(student)(batch, step=0, total_steps=1)
    assert len(calls) == 2 and calls == [{}, {}]  # two plain dropout passes
    assert logs == {"loss": pytest.approx(loss.item())}
    assert set(MRLLoss(student)(batch, step=0, total_steps=1)[1]) == {"loss"}


def test_logs_are_copied_to_the_host_once(student, batch, monkeypatch):
    toy = Toy(student, ToyParams())
    calls = {"tolist": 0}
    tolist = torch.Tensor.tolist

    def counting(self):
        calls["tolist"] += 1
        return tolist(self)

    def refuse(*_):
        raise AssertionError("a log value was synchronised on its own")

    monkeypatch.setattr(torch.Tensor, "tolist", counting)
    monkeypatch.setattr(torch.Tensor, "item", refuse)
    _, logs = toy(batch, step=0, total_steps=1)
    assert calls["tolist"] == 1 and all(isinstance(v, float) for v in logs.values())


def test_host_logs_keep_order_and_floats():
    logged = {"loss": torch.tensor(0.25), "beta": 1, "kd": torch.tensor(2.0, dtype=torch.bfloat16)}
    assert list(host_logs(logged).items()) == [("loss", 0.25), ("beta", 1.0), ("kd", 2.0)]
    assert host_logs({"alpha": 0.5}) == {"alpha": 0.5}


def test_missing_keys_and_bad_step_counts_fail_clearly(student, batch):
    toy = Toy(student, ToyParams())
    with pytest.raises(KeyError, match=r"Toy batch lacks \['target'\]; add 'target'"):
        toy({k: v for k, v in batch.items() if k != "target"}, step=0, total_steps=1)
    with pytest.raises(ValueError, match="total_steps must be ≥ 1"):
        toy(batch, step=0, total_steps=0)


def test_params_name_every_broken_rule_and_the_closest_field():
    with pytest.raises(ValueError, match="need w_task, w_kd ≥ 0; scale > 0"):
        ToyParams(w_kd=-1.0, scale=0.0)
    with pytest.raises(ValueError, match="Unknown Toy parameter 'scal'. Did you mean 'scale'"):
        ToyParams.from_dict({"scal": 2.0})
    assert ToyParams.from_dict({"scale": 2.0}) == ToyParams(scale=2.0)
    assert Params.from_dict({}) == Params()
