"""One training loop for every method (nanoGPT-plain).

``train(method, dataset, cfg)`` runs AdamW with warmup + cosine decay to a floor, gradient
accumulation and clipping, bf16 autocast on GPUs, seeded data order, tqdm progress, per-epoch
atomic checkpoints with exact resume, and non-finite-loss skipping. ``method`` is the method's
loss module: it owns the student and any projections, and ``method(batch, step, total_steps)``
returns ``(loss, logs)``. Under ``torchrun``/``accelerate launch`` the same loop runs with DDP.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings; defaults are the paper setting (5 epochs, lr 2e-5, batch 32)."""

    epochs: int = 5  # passes over the corpus
    lr: float = 2e-5  # peak learning rate of the student (and of projections unless set)
    proj_lr: float | None = None  # learning rate of method-owned projections (DSKD: 1e-3)
    batch_size: int = 32  # texts per optimizer step (before accumulation)
    grad_accum: int = 1  # micro-batches per optimizer step
    warmup_frac: float = 0.1  # share of steps with linear warmup
    min_lr_frac: float = 0.1  # cosine decays to this share of the peak lr
    weight_decay: float = 0.01  # AdamW weight decay
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    seed: int = 0  # seeds python, numpy, torch and the data order
    max_nonfinite: int = 10  # stop after this many skipped non-finite steps
    bf16: bool = True  # bf16 autocast on CUDA devices that support it
    num_workers: int = 0  # DataLoader workers
    checkpoint_dir: str | None = None  # per-epoch checkpoints (None = no checkpoints)
    resume: bool = False  # continue from the newest checkpoint in checkpoint_dir
    show_progress: bool = True  # tqdm bar


@dataclass
class History:
    """Per-step logs and run statistics."""

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs_done: int = 0
    skipped_nonfinite: int = 0
    step_times: list[float] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_lr(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier at ``step`` of ``total``.

    1) linear warmup over ``warmup_frac`` of the steps; 2) cosine decay from 1 to
    ``min_lr_frac`` over the rest; 3) never below the floor.
    """
    warm = max(1, round(cfg.warmup_frac * total))
    if step < warm:  # 1) warmup
        return (step + 1) / warm
    ratio = min(1.0, (step - warm) / max(1, total - warm))  # 2) cosine
    return cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * ratio))


def _rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict) -> None:
    """``torch.save`` to a temp file, then rename (an interrupted save leaves no broken file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def latest_checkpoint(folder: Path) -> Path | None:
    """Newest ``epoch-N.pt`` in ``folder``."""
    found = sorted(folder.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    return found[-1] if found else None


def _to(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


def param_groups(method: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Student params at ``lr``; everything else the method owns (projections) at ``proj_lr``."""
    student_ids = {id(p) for p in method.student.parameters()}
    own = [p for p in method.parameters() if p.requires_grad and id(p) not in student_ids]
    groups = [
        {
            "params": [p for p in method.student.parameters() if p.requires_grad],
            "lr": cfg.lr,
            "base_lr": cfg.lr,
        }
    ]
    if own:
        lr = cfg.proj_lr or cfg.lr
        groups.append({"params": own, "lr": lr, "base_lr": lr})
    return groups


def train(
    method: nn.Module, dataset: Dataset, cfg: TrainConfig, collate_fn: Callable | None = None
) -> History:
    """Train ``method`` (its student and projections) on ``dataset``; return the history.

    Raises:
        RuntimeError: after ``cfg.max_nonfinite`` non-finite losses.
    """
    seed_everything(cfg.seed)
    device = method.student.device
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    model = nn.parallel.DistributedDataParallel(method) if distributed else method
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    optimizer = torch.optim.AdamW(param_groups(method, cfg), weight_decay=cfg.weight_decay)
    gen = torch.Generator()
    sampler = None
    if distributed:
        sampler = torch.utils.data.DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed
        )
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size // world,
        shuffle=sampler is None,
        sampler=sampler,
        generator=gen,
        collate_fn=collate_fn,
        drop_last=True,
        num_workers=cfg.num_workers,
    )
    steps_per_epoch = len(loader) // cfg.grad_accum
    total = max(1, steps_per_epoch * cfg.epochs)
    hist, start_epoch = History(), 0
    ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    if cfg.resume and ckpt_dir and (ckpt := latest_checkpoint(ckpt_dir)) is not None:
        state = torch.load(ckpt, map_location=device, weights_only=False)
        method.load_state_dict(state["method"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        hist = History(**state["history"])
        start_epoch = hist.epochs_done
        log.info("resumed from %s (epoch %d done)", ckpt, start_epoch)
    use_bf16 = cfg.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported()
    step = start_epoch * steps_per_epoch
    bar = tqdm(total=total, initial=step, desc="train", disable=not cfg.show_progress or rank)
    method.train()
    for epoch in range(start_epoch, cfg.epochs):
        gen.manual_seed(cfg.seed + epoch)  # data order depends only on (seed, epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        micro = 0
        for batch in loader:
            tick = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss, logs = model(_to(batch, device), step, total)
            if not torch.isfinite(loss):
                hist.skipped_nonfinite += 1
                optimizer.zero_grad(set_to_none=True)
                log.warning("non-finite loss at step %d (%d skipped)", step, hist.skipped_nonfinite)
                if hist.skipped_nonfinite > cfg.max_nonfinite:
                    raise RuntimeError(
                        f"{hist.skipped_nonfinite} non-finite losses (limit {cfg.max_nonfinite});"
                        " lower the learning rate, disable bf16 or check the inputs."
                    )
                continue
            (loss / cfg.grad_accum).backward()
            micro += 1
            if micro % cfg.grad_accum:
                continue
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * get_lr(step, total, cfg)
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(method.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            hist.step_times.append(time.perf_counter() - tick)
            hist.steps.append({"step": step, "lr": optimizer.param_groups[0]["lr"], **logs})
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{logs.get('loss', float(loss)):.4f}")
        hist.epochs_done = epoch + 1
        if ckpt_dir is not None and rank == 0:
            save_checkpoint(
                ckpt_dir / f"epoch-{epoch + 1}.pt",
                {
                    "method": method.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": _rng_state(),
                    "history": asdict(hist),
                    "config": asdict(cfg),
                },
            )
    bar.close()
    method.eval()
    return hist
