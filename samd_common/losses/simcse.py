"""SimCSE — the plain contrastive step every method is measured against.

Unsupervised SimCSE: encode the same batch twice with dropout on and treat the two views of a
sentence as positives, every other sentence as a negative (InfoNCE, τ = 0.07). It is the task
loss inside every CTKD method, and the reference step of ``scripts/bench.py``.

``L = InfoNCE(s1, s2)``
"""

from __future__ import annotations

from dataclasses import dataclass

from samd_common.losses.base import Objective
from samd_common.losses.params import Params
from samd_common.models import SentenceEncoder

CITATION = """@inproceedings{gao2021simcse,
  title     = {{SimCSE}: Simple Contrastive Learning of Sentence Embeddings},
  author    = {Gao, Tianyu and Yao, Xingcheng and Chen, Danqi},
  booktitle = {EMNLP},
  year      = {2021},
  note      = {arXiv:2104.08821}
}"""


@dataclass
class SimCSEParams(Params):
    """SimCSE hyper-parameters."""

    method = "SimCSE"
    temperature: float = 0.07  # InfoNCE τ (SimCSE: 0.05; 0.07 as every method here)

    def rules(self) -> dict[str, bool]:
        """A positive temperature."""
        return {"temperature > 0": self.temperature > 0}


class SimCSELoss(Objective):
    """Two dropout passes of the student, in-batch InfoNCE; no teacher, no parameters of its own.

    ``L = −mean_i log softmax_j(cos(s1_i, s2_j) / τ)[i]``

    Args:
        student: the encoder being trained.
        params: ``SimCSEParams`` (τ); default τ = 0.07.

    References:
        Gao et al., "SimCSE: Simple Contrastive Learning of Sentence Embeddings", EMNLP 2021,
        https://arxiv.org/abs/2104.08821

    Example:
        >>> objective = SimCSELoss(load_encoder("tiny-student"))
        >>> batch = objective.student.tokenize(["a cat", "a dog", "two birds"])
        >>> loss, logs = objective(batch, step=0, total_steps=1)  # logs: {"loss": …}
    """

    name = "SimCSE"
    log_task = False  # the loss is the task loss

    def __init__(self, student: SentenceEncoder, params: SimCSEParams | None = None) -> None:
        super().__init__(student, params or SimCSEParams())
