from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

from samd_common.data.demo import write_demo_data
from samd_common.models import load_encoder
from samd_common.models.tiny import build_tiny_pair

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread_for_tiny_models(request):
    """Tiny-model tests run fastest on one thread; real-model tests keep every core."""
    if request.node.get_closest_marker("realmodels"):
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny WordPiece student and Unigram teacher model directories (built once)."""
    return build_tiny_pair(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """Synthetic 9-task data in the canonical layout."""
    out = tmp_path_factory.mktemp("demo")
    write_demo_data(out)
    return out


def _shared(sub: str, env: str | None = None) -> Path | None:
    if env and os.environ.get(env):
        return Path(os.environ[env])
    path = REPO.parent / "shared" / "data" / sub
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def real_eval_dir() -> Path:
    """Canonical real data (SAMD_EVAL_DIR or ../shared/data/eval)."""
    path = _shared("eval", "SAMD_EVAL_DIR")
    if path is None:
        pytest.skip("real evaluation data not found: set SAMD_EVAL_DIR=../shared/data/eval")
    return path


@pytest.fixture(scope="session")
def paper_eval_dir() -> Path:
    """The reference repository's own evaluation files (paper layout)."""
    path = _shared("samd/multi-data")
    if path is None:
        pytest.skip("paper-layout data not found at ../shared/data/samd/multi-data")
    return path


@pytest.fixture(scope="session")
def _student(tiny_dirs):
    """The tiny WordPiece student with eager attention (loaded once; copy it before training)."""
    return load_encoder(str(tiny_dirs["student"]), device="cpu", attn_implementation="eager")


@pytest.fixture
def student(_student):
    """A fresh copy of the tiny eager student, torch seeded."""
    torch.manual_seed(0)
    return copy.deepcopy(_student)


@pytest.fixture
def forward_calls(monkeypatch):
    """``attach(student)`` → the list of keyword arguments of every later student forward call."""

    def attach(student) -> list[dict]:
        calls: list[dict] = []
        forward = student.forward

        def spy(*args, **kwargs):
            calls.append(kwargs)
            return forward(*args, **kwargs)

        monkeypatch.setattr(student, "forward", spy)
        return calls

    return attach


class _Shrink(torch.nn.Module):
    """A one-term method: pull the student's embeddings to zero (``train`` needs no teacher)."""

    def __init__(self, student):
        super().__init__()
        self.student = student

    def forward(self, batch, step, total):
        emb = self.student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
        loss = emb.pow(2).mean()
        return loss, {"loss": loss.item()}


@pytest.fixture
def shrink():
    """``shrink(student)`` → a minimal training method (loss = mean squared embedding)."""
    return _Shrink
