"""The one training step every method shares; a method's own file holds only its KD terms.

``Objective.forward(batch, step, total_steps) -> (loss, logs)`` is what the training loop calls
(``training.loop.train``). It

1. checks that the batch holds the keys the method reads (``KeyError`` saying what builds it);
2. runs the student: twice with dropout (two views) when the task loss needs them, with
   attention maps or hidden states when the method asks for them (``pass_options``);
3. computes the task loss (``task_terms``; SimCSE's InfoNCE unless overridden) and the
   distillation terms (``kd_terms``, from the first pass);
4. mixes ``L = w_task·L_task + w_kd·L_kd`` (``L = L_task`` for teacher-free methods);
5. returns the logs as floats, copied to the host in one sync (``host_logs``).

A method subclasses :class:`Objective`, creates its projections in ``__init__`` (after
``super().__init__``, so the student's parameters come first) and overrides the hooks it needs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from samd_common.losses.contrastive import info_nce
from samd_common.losses.params import Params
from samd_common.models import SentenceEncoder

Outputs = dict[str, Any]  # one student pass: sentence_embedding, token_embeddings, attentions, …
Logged = dict[str, torch.Tensor | float]  # log values before the host copy, in log order


def host_logs(logged: Logged) -> dict[str, float]:
    """Log values as Python floats with one host sync: the 0-d tensors are stacked and copied once.

    Args:
        logged: name → 0-d tensor (detached here) or float, in the order the logs keep.

    Returns:
        name → float, same order.

    Example:
        >>> host_logs({"loss": torch.tensor(0.5), "beta": 1.0})
        {'loss': 0.5, 'beta': 1.0}
    """
    names = [k for k, v in logged.items() if torch.is_tensor(v)]
    values = torch.stack([logged[k].detach().float() for k in names]).tolist() if names else []
    copied = dict(zip(names, values, strict=True))
    return {k: copied[k] if k in copied else float(v) for k, v in logged.items()}


def require_eager_attention(student: SentenceEncoder, method: str, switch: str = "") -> None:
    """Raise a clear error when the student does not return attention maps (non-eager).

    Args:
        student: the encoder being trained.
        method: method name for the message.
        switch: a parameter setting that avoids attention maps, suggested in the message.
    """
    impl = getattr(student.backbone.config, "_attn_implementation", "eager")
    if impl != "eager":
        hint = f" or set {switch}" if switch else ""
        raise ValueError(
            f"{method} needs the student's attention maps, but it uses {impl!r} attention: load "
            f"it with load_encoder(..., attn_implementation='eager'){hint}."
        )


class Objective(nn.Module):
    """A training objective around a student: the shared step, with hooks for each method.

    ``L = w_task·L_task + w_kd·L_kd``; ``L = L_task`` when ``kd_terms`` gives None (teacher-free
    methods) and ``L = w_kd·L_kd`` when ``uses_task`` is False (then the student runs once).

    Args:
        student: the encoder being trained (the objective owns it, and any projections).
        params: the method's hyper-parameters (``temperature`` is read by the default task
            loss; ``w_task``/``w_kd`` by the mix when there are distillation terms).

    Example:
        >>> class Plain(Objective):  # SimCSE alone: the default task loss, no KD terms
        ...     name = "plain"
        >>> objective = Plain(student, DistillParams())  # student: a SentenceEncoder
        >>> loss, logs = objective(student.tokenize(["a cat", "a dog"]), step=0, total_steps=1)
        >>> logs  # {'loss': …, 'task': …}
    """

    name: ClassVar[str] = "objective"  # method name in error messages
    batch_keys: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask")  # keys always read
    batch_hint: ClassVar[str] = "build it with DistillDataset.collate."  # what builds the batch
    log_task: ClassVar[bool] = True  # log the task loss as "task"

    def __init__(self, student: SentenceEncoder, params: Params) -> None:
        super().__init__()
        self.student, self.params = student, params

    # ------------------------------------------------------------------ hooks
    def required_keys(self, step: int, total_steps: int) -> tuple[str, ...]:
        """Batch keys this step reads (``batch_keys`` unless a step needs more)."""
        return self.batch_keys

    def check_batch(self, batch: dict[str, torch.Tensor], step: int, total_steps: int) -> None:
        """Raise ``KeyError`` naming the missing keys and what builds them."""
        missing = [key for key in self.required_keys(step, total_steps) if key not in batch]
        if missing:
            raise KeyError(f"{self.name} batch lacks {missing}; {self.batch_hint}")

    def warm_start(self, dataset, collate_fn) -> None:
        """Before the first step of a fresh run (not on resume): fit what needs data. No-op here.

        ``dataset[i]`` items, batched by ``collate_fn``, are the training data; an objective
        that overrides this (SAMD's ``head_init="lstsq"``) reads them without gradients and
        without touching the random state, so the training run itself is unchanged.
        """

    def pass_options(self, step: int, total_steps: int) -> tuple[dict, dict]:
        """Keyword arguments of the two student passes (``output_attentions=True`` …)."""
        return {}, {}

    @property
    def uses_task(self) -> bool:
        """Whether the step has a task loss (and so a second, differently masked pass)."""
        return True

    def task_loss(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """L_task from the two views' (B, D_s) embeddings: SimCSE's InfoNCE by default."""
        return info_nce(s1, s2, self.params.temperature)

    def task_terms(
        self, out1: Outputs, out2: Outputs, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, Logged]:
        """``(L_task, values to log)`` from the two passes."""
        task = self.task_loss(out1["sentence_embedding"], out2["sentence_embedding"])
        return task, {"task": task} if self.log_task else {}

    def kd_terms(
        self, out: Outputs, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor | None, Logged]:
        """``(L_kd, values to log)`` from the first pass; None for a teacher-free method."""
        return None, {}

    # ------------------------------------------------------------------ the step
    def mix(self, task: torch.Tensor | None, kd: torch.Tensor | None) -> torch.Tensor:
        """``w_task·L_task + w_kd·L_kd``, or the one term there is."""
        if kd is None:
            return task
        if task is None:
            return self.params.w_kd * kd
        return self.params.w_task * task + self.params.w_kd * kd

    def forward(
        self, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One training loss.

        Args:
            batch: padded tensors on the student's device (``DistillDataset.collate`` with the
                method's maps); ``input_ids``/``attention_mask`` (B, T_s) plus ``batch_keys``.
            step: 0-based optimizer step (schedules are fractions of ``total_steps``).
            total_steps: number of steps of the run, ≥ 1.

        Returns:
            ``(loss, logs)``; logs hold floats ``loss`` and the method's terms.
        """
        if total_steps <= 0:
            raise ValueError(f"total_steps must be ≥ 1, got {total_steps}.")
        self.check_batch(batch, step, total_steps)
        ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, T_s)
        first, second = self.pass_options(step, total_steps)
        out1 = self.student(ids, mask, **first)
        task, logged = None, {}
        if self.uses_task:
            out2 = self.student(ids, mask, **second)  # same texts, another dropout mask
            task, logged = self.task_terms(out1, out2, batch)
        kd, kd_logged = self.kd_terms(out1, batch, step, total_steps)
        loss = self.mix(task, kd)
        return loss, host_logs({"loss": loss, **logged, **kd_logged})
