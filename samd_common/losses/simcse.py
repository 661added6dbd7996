"""SimCSE — the plain contrastive step every method is measured against.

Unsupervised SimCSE: encode the same batch twice with dropout on and treat the two views of a
sentence as positives, every other sentence as a negative (InfoNCE, τ = 0.07). It is the task
loss inside every CTKD method, and the reference step of ``scripts/bench.py``.

``L = InfoNCE(s1, s2)``
"""

from __future__ import annotations

import torch
from torch import nn

from samd_common.losses.common import info_nce
from samd_common.models import SentenceEncoder

CITATION = """@inproceedings{gao2021simcse,
  title     = {{SimCSE}: Simple Contrastive Learning of Sentence Embeddings},
  author    = {Gao, Tianyu and Yao, Xingcheng and Chen, Danqi},
  booktitle = {EMNLP},
  year      = {2021},
  note      = {arXiv:2104.08821}
}"""


class SimCSELoss(nn.Module):
    """Two dropout passes of the student, in-batch InfoNCE; no teacher, no parameters of its own."""

    def __init__(self, student: SentenceEncoder, temperature: float = 0.07) -> None:
        super().__init__()
        self.student, self.temperature = student, temperature

    def forward(
        self, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss on ``input_ids``/``attention_mask`` (B, T_s); ``step`` is unused."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        s1 = self.student(ids, mask)["sentence_embedding"]  # (B, D_s)
        s2 = self.student(ids, mask)["sentence_embedding"]  # (B, D_s), other dropout mask
        loss = info_nce(s1, s2, self.temperature)
        return loss, {"loss": loss.item()}
