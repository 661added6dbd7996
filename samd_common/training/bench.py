"""Benchmark helpers: step costs measured side by side in one process, and alignment speed.

Every variant runs the same batches, interleaved step by step (A B C A B C …) so that machine
noise hits all of them alike; ratios are taken against the plain SimCSE step of the same run.
A step includes building its batch (collate / live teacher + alignment), forward, backward and
the optimizer update.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from samd_common.alignment import (
    SpanBatch,
    batch_overlap,
    batch_span_groups,
    naive_overlap,
    token_spans,
)
from samd_common.models import SentenceEncoder
from samd_common.training.batching import DistillDataset

StepFn = Callable[[int], None]


def training_step(
    method: nn.Module, make_batch: Callable[[int], dict], total: int, lr: float = 2e-5
) -> StepFn:
    """A closure running one full optimizer step of ``method`` on batch ``i``."""
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=lr)
    method.train()

    def step(i: int) -> None:
        batch = make_batch(i)
        loss, _ = method(batch, total // 2 + i, total)  # mid-run: every term is switched on
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def cached_batches(dataset: DistillDataset, batch_size: int) -> Callable[[int], dict]:
    """Batch ``i`` = items ``[i·B, (i+1)·B)`` (mod len) collated, alignment included."""

    def make(i: int) -> dict:
        start = (i * batch_size) % (len(dataset) - batch_size + 1)
        return dataset.collate([dataset[j] for j in range(start, start + batch_size)])

    return make


def live_teacher_batches(
    dataset: DistillDataset,
    teacher: SentenceEncoder,
    batch_size: int,
    max_length: int,
    layers: int = 1,
) -> Callable[[int], dict]:
    """Like ``cached_batches`` but runs the teacher now and aligns per sample in Python."""
    student_only = copy.copy(dataset)
    student_only.cache = None

    @torch.inference_mode()
    def teacher_items(texts: list[str]) -> list[dict]:
        t = token_spans(teacher.tokenizer, texts, max_length, teacher.spec.prompt)
        ids = torch.as_tensor(t.input_ids, device=teacher.device)
        mask = torch.as_tensor(t.attention_mask, device=teacher.device)
        out = teacher(input_ids=ids, attention_mask=mask, output_attentions=True)
        att = torch.stack(out["attentions"][-layers:], 1).mean(2).float().cpu().numpy()
        hidden = out["token_embeddings"].float().cpu().numpy()
        pooled = out["sentence_embedding"].float().cpu().numpy()
        embed = teacher.backbone.get_input_embeddings()(ids).float().cpu().numpy()
        items = []
        for r in range(len(texts)):
            n = int(t.attention_mask[r].sum())
            items.append(
                {
                    "t_input_ids": t.input_ids[r, :n],
                    "t_spans": t.spans[r, :n],
                    "t_real": t.real[r, :n],
                    "t_hidden": hidden[r, :n],
                    "t_embed": embed[r, :n],
                    "t_attn": att[r, :, :n, :n],
                    "t_pooled": pooled[r],
                }
            )
        return items

    def make(i: int) -> dict:
        start = (i * batch_size) % (len(dataset) - batch_size + 1)
        idx = range(start, start + batch_size)
        items = [
            {**student_only[j], **t}
            for j, t in zip(idx, teacher_items([dataset.texts[j] for j in idx]), strict=True)
        ]
        batch = dataset.collate(items)
        overlap = np.zeros(tuple(batch["overlap"].shape), dtype=np.float32)
        for b, it in enumerate(items):  # the per-sample Python alignment being replaced
            o = naive_overlap(*(it[k][None] for k in ("spans", "t_spans", "real", "t_real")))[0]
            overlap[b, : o.shape[0], : o.shape[1]] = o
        batch["overlap"] = torch.from_numpy(overlap)
        return batch

    return make


def interleaved_times(steps: dict[str, StepFn], n: int, warmup: int = 2) -> dict[str, list[float]]:
    """Run every variant ``warmup + n`` times, round-robin; return the measured wall times."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(warmup + n):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn(i)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def summarize_times(times: dict[str, list[float]], reference: str) -> dict[str, dict[str, float]]:
    """Median and mean per variant, and both as ratios to ``reference``."""
    ref_med, ref_mean = np.median(times[reference]), np.mean(times[reference])
    return {
        name: {
            "median_s": float(np.median(t)),
            "mean_s": float(np.mean(t)),
            "ratio_median": float(np.median(t) / ref_med),
            "ratio_mean": float(np.mean(t) / ref_mean),
            "steps": len(t),
        }
        for name, t in times.items()
    }


def alignment_speed(s: SpanBatch, t: SpanBatch, repeats: int = 5) -> dict[str, float]:
    """Vectorised batch overlap + span groups vs the naive per-token Python loops."""

    def vectorised() -> None:
        o = batch_overlap(s, t)
        batch_span_groups(o, s.real, t.real)

    def naive() -> None:
        naive_overlap(s.spans, t.spans, s.real, t.real)  # per-token Python loops

    out = {}
    for name, fn in (("vectorised_s", vectorised), ("naive_s", naive)):
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        out[name] = float(np.median(runs))
    out["speedup"] = out["naive_s"] / out["vectorised_s"]
    out["shape"] = [int(len(s.input_ids)), int(s.input_ids.shape[1]), int(t.input_ids.shape[1])]
    return out


def paired_ratio(times: dict[str, list[float]], name: str, reference: str) -> dict[str, float]:
    """Step-by-step ratios ``times[name][i] / times[reference][i]`` of interleaved runs.

    The two variants ran the same step ``i`` back to back (``interleaved_times``), so a slow
    moment of the machine hits both; the median of the per-step ratios is the robust summary.

    Returns:
        ``{"median": …, "mean": …, "se": standard error of the mean ratio, "steps": n}``.
    """
    a, b = np.asarray(times[name]), np.asarray(times[reference])
    if len(a) != len(b) or len(a) == 0:
        raise ValueError(f"{name!r} and {reference!r} need the same, non-zero number of steps.")
    r = a / b
    se = float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else float("nan")
    return {"median": float(np.median(r)), "mean": float(r.mean()), "se": se, "steps": len(r)}
