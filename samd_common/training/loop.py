"""One training loop for every method (nanoGPT-plain).

``train(method, dataset, cfg)`` runs AdamW with warmup + cosine decay to a floor, gradient
accumulation and clipping, bf16 autocast on GPUs, seeded data order, tqdm progress and a
progress log line about 20 times a run, per-epoch atomic checkpoints with exact resume, and
non-finite-loss skipping; its :class:`~samd_common.training.history.History` holds every step's
logs. ``method`` is the method's loss module: it owns the student and any projections, and
``method(batch, step, total_steps)`` returns ``(loss, logs)``.

Under ``torchrun``/``accelerate launch`` the same loop runs with DDP (gloo on CPU, nccl on CUDA):
the global batches are those of one process (``GlobalBatchSampler``), each rank takes a
contiguous slice, and the losses are written so that DDP's gradient average equals the
single-process gradient (``samd_common.losses.contrastive``). ``tests/test_distributed.py`` checks
that two CPU processes end with the weights of one.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import numbers
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from samd_common.config import check_bool, check_count, check_number
from samd_common.distributed import barrier, broadcast_object, dist_info, init_distributed
from samd_common.training.history import History, progress_every, progress_line
from samd_common.training.samplers import (
    GlobalBatchSampler,
    NeighbourBatchSampler,
    teacher_neighbours,
)

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings; defaults are the paper setting (5 epochs, lr 2e-5, batch 32)."""

    epochs: int = 5  # passes over the corpus
    # Optimizer steps of the run; when set it replaces ``epochs``: the corpus is passed over as
    # often as needed (new order each pass), the last pass cut short, and the warmup/cosine
    # schedule spans these steps. None = epochs × steps per epoch.
    max_steps: int | None = None
    lr: float = 2e-5  # peak learning rate of the student (and of projections unless set)
    # Learning rate of method-owned projections. Not the student's 2e-5: a randomly initialised
    # projection would barely move in a short run, leaving e.g. SAMD's MRD target a random image
    # of the teacher. 1e-3 is the DSKD scripts' projector rate, used for every method alike.
    proj_lr: float | None = 1e-3
    batch_size: int = 32  # texts per micro-batch, all DDP ranks together (× grad_accum per step)
    grad_accum: int = 1  # micro-batches per optimizer step
    warmup_frac: float = 0.1  # share of steps with linear warmup
    min_lr_frac: float = 0.1  # cosine decays to this share of the peak lr
    weight_decay: float = 0.01  # AdamW weight decay
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    seed: int = 0  # seeds python, numpy, torch and the data order
    max_nonfinite: int = 10  # stop after this many skipped non-finite steps
    bf16: bool = True  # bf16 autocast on CUDA devices that support it
    num_workers: int = 0  # DataLoader workers
    # Batch composition: 0 = random batches; k ≥ 1 = half of each batch random anchors, each
    # paired with one of its k nearest texts under the cached teacher (``training.samplers``), so
    # in-batch losses also see related pairs. Needs a dataset with a teacher cache.
    neighbours: int = 0
    # WiSE-FT (``models.merge``): after training the student keeps this share of its update,
    # θ₀ + α·(θ − θ₀), θ₀ its weights before training; 1 = the trained weights as they are.
    # Applied by the experiment's train stage (``experiment.train_method``), not by ``train``.
    interpolate: float = 1.0
    checkpoint_dir: str | None = None  # per-epoch checkpoints (None = no checkpoints)
    resume: bool = False  # continue from the newest checkpoint in checkpoint_dir
    show_progress: bool = True  # tqdm bar
    # Interval in optimizer steps of the history a results JSON keeps (the last step always) and
    # of the progress log lines (a multiple of it: about 20 lines per run, ``training.history``).
    log_every: int = 10
    # DDP only: search the graph for parameters without a gradient each step. Needed whenever
    # some trainable parameter gets no gradient (a BERT backbone's pooler under mean/CLS
    # pooling, a switched-off projection); SAMD's skipped L_SAM steps alone would not need it,
    # since the attention weights always feed the output. Turn off for a small speed-up only
    # when every parameter is used on every step.
    find_unused_parameters: bool = True

    def __post_init__(self) -> None:
        """Range checks: one ``ValueError`` naming the first bad field and its valid range."""
        check_count("epochs", self.epochs, 1)
        steps = self.max_steps
        whole = isinstance(steps, numbers.Real) and not isinstance(steps, bool) and steps % 1 == 0
        if steps is not None and (not whole or steps < 1):
            raise ValueError(  # the wording of ``train``'s own check
                f"max_steps must be a positive number of optimizer steps, or None to train for "
                f"`epochs` passes; got {steps!r}."
            )
        check_number("lr", self.lr, 0, open_low=True)
        if self.proj_lr is not None:
            check_number("proj_lr", self.proj_lr, 0, open_low=True)
        # The contrastive terms take their negatives from the rest of the batch: one text has
        # none, and InfoNCE is then exactly 0 (no error, no learning).
        if isinstance(self.batch_size, numbers.Integral) and self.batch_size == 1:
            raise ValueError(
                "batch_size must be ≥ 2, got 1: the contrastive losses take their negatives "
                "from the rest of the batch, so with one text they are exactly 0. Use ≥ 2 "
                "(the paper: 32); to save memory, lower batch_size and raise grad_accum."
            )
        check_count("batch_size", self.batch_size, 2)
        check_count("grad_accum", self.grad_accum, 1)
        check_number("warmup_frac", self.warmup_frac, 0, 1)
        check_number("min_lr_frac", self.min_lr_frac, 0, 1)
        check_number("weight_decay", self.weight_decay, 0)
        check_number("grad_clip", self.grad_clip, 0)
        check_count("seed", self.seed, 0)
        check_count("max_nonfinite", self.max_nonfinite, 0)
        check_count("num_workers", self.num_workers, 0)
        check_count("neighbours", self.neighbours, 0)
        check_number("interpolate", self.interpolate, 0, 1)
        check_count("log_every", self.log_every, 1)
        for name in ("bf16", "resume", "show_progress", "find_unused_parameters"):
            check_bool(name, getattr(self, name))


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


def _all_finite(loss: torch.Tensor, world: int) -> tuple[bool, float]:
    """Whether the loss is finite on every rank, and its mean over ranks (one collective).

    All ranks must agree to skip a step: under DDP a rank that skipped its backward while the
    others ran theirs would wait forever in the gradient all-reduce.
    """
    value = loss.detach().float()
    if world == 1:
        return bool(torch.isfinite(value)), float(value)
    stats = torch.stack([(~torch.isfinite(value)).float(), value.nan_to_num(0.0, 0.0, 0.0)])
    dist.all_reduce(stats)
    return bool(stats[0] == 0), float(stats[1]) / world


# Settings that do not change what is computed: a run may resume with other values of these.
_RESUME_FREE = frozenset(
    {
        "resume",
        "checkpoint_dir",
        "show_progress",
        "num_workers",
        "find_unused_parameters",
        "log_every",
        "interpolate",  # applied after training
    }
)


def check_resumable(saved: dict, cfg: TrainConfig, ckpt: Path) -> None:
    """``ckpt`` was written by a run with ``cfg``'s settings (else resuming mixes two runs).

    Raises:
        ValueError: naming the settings that differ, e.g. ``epochs=2`` then, ``epochs=3`` now.
    """
    now = asdict(cfg)
    diff = [k for k in saved if k in now and k not in _RESUME_FREE and saved[k] != now[k]]
    if diff:
        then = ", ".join(f"{k}={saved[k]!r}" for k in diff)
        here = ", ".join(f"{k}={now[k]!r}" for k in diff)
        raise ValueError(
            f"cannot resume from {ckpt}: it was written with {then}, this run has {here}. "
            "Resume with the checkpoint's settings, or start afresh (resume=False or another "
            "output_dir)."
        )


def _resume(
    cfg: TrainConfig, method: nn.Module, optimizer: torch.optim.Optimizer, rank: int, world: int
) -> History | None:
    """Load rank 0's newest checkpoint on every rank; return its history (None: none found).

    Raises:
        ValueError: the checkpoint was written with other settings (:func:`check_resumable`).
    """
    folder = Path(cfg.checkpoint_dir)
    ckpt = broadcast_object(latest_checkpoint(folder) if rank == 0 else None)
    if ckpt is None:
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=False)  # copied onto the device
    check_resumable(state.get("config", {}), cfg, ckpt)
    method.load_state_dict(state["method"])
    optimizer.load_state_dict(state["optimizer"])
    rngs = state.get("rng_ranks") or [state["rng"]]
    if len(rngs) != world:
        log.warning("checkpoint has RNG states of %d ranks, running %d", len(rngs), world)
    _set_rng_state(rngs[rank % len(rngs)])
    log.info("resumed from %s (epoch %d done)", ckpt, state["history"]["epochs_done"])
    return History(**state["history"])


def _save(path: Path, method: nn.Module, optimizer, hist: History, cfg: TrainConfig) -> None:
    """Rank 0 writes the checkpoint (with every rank's RNG state); the others wait for it."""
    rank, world = dist_info()
    rngs = [_rng_state()]
    if world > 1:
        rngs = [None] * world
        dist.all_gather_object(rngs, _rng_state())
    if rank == 0:
        payload = {
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rngs[0],
            "history": asdict(hist),
            "config": asdict(cfg),
        }
        save_checkpoint(path, payload | ({"rng_ranks": rngs} if world > 1 else {}))
    barrier()


def _fail_nonfinite(hist: History, step: int, cfg: TrainConfig) -> None:
    log.warning("non-finite loss at step %d (%d skipped)", step, hist.skipped_nonfinite)
    if hist.skipped_nonfinite > cfg.max_nonfinite:
        raise RuntimeError(
            f"{hist.skipped_nonfinite} non-finite losses (limit {cfg.max_nonfinite});"
            " lower the learning rate, disable bf16 or check the inputs."
        )


def _sampler(dataset: Dataset, cfg: TrainConfig, rank: int, world: int) -> GlobalBatchSampler:
    """Random global batches, or anchor/teacher-neighbour pairs when ``cfg.neighbours`` ≥ 1."""
    if not cfg.neighbours:
        return GlobalBatchSampler(len(dataset), cfg.batch_size, cfg.seed, rank, world)
    cache = getattr(dataset, "cache", None)
    if cache is None:
        raise ValueError(
            f"neighbours={cfg.neighbours} pairs texts by the teacher's cached embeddings, but the "
            f"dataset has no teacher cache; pass one (DistillDataset(..., cache=...)) or set "
            f"neighbours=0."
        )
    t0 = time.perf_counter()
    nbrs = teacher_neighbours(cache.arrays["pooled"], cfg.neighbours)
    log.info(
        "teacher neighbours (k=%d) of %d texts in %.1f s",
        cfg.neighbours,
        len(nbrs),
        time.perf_counter() - t0,
    )
    return NeighbourBatchSampler(nbrs, cfg.batch_size, cfg.seed, rank=rank, world=world)


def _make_loader(
    dataset: Dataset, cfg: TrainConfig, collate_fn: Callable | None, rank: int, world: int
) -> tuple[DataLoader, GlobalBatchSampler, torch.Generator]:
    """This rank's loader over seeded global batches, its sampler and its worker-seed generator."""
    sampler = _sampler(dataset, cfg, rank, world)
    loader_gen = torch.Generator()  # worker seeds; keeps the global RNG for the model alone
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_fn,
        num_workers=cfg.num_workers,
        generator=loader_gen,
    )
    if len(loader) // cfg.grad_accum == 0:
        raise ValueError(
            f"{len(dataset)} texts make no optimizer step of batch_size={cfg.batch_size} × "
            f"grad_accum={cfg.grad_accum}; lower the batch size or add texts."
        )
    return loader, sampler, loader_gen


def _wrap_ddp(method: nn.Module, device: torch.device, cfg: TrainConfig) -> nn.Module:
    """DDP around ``method`` (construction broadcasts rank 0's weights once more)."""
    return nn.parallel.DistributedDataParallel(
        method,
        device_ids=[device] if device.type == "cuda" else None,
        find_unused_parameters=cfg.find_unused_parameters,
    )


@dataclass
class _Run:
    """What every micro-step of one ``train`` call needs."""

    method: nn.Module  # the loss module (student + projections)
    model: nn.Module  # ``method``, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    device: torch.device
    world: int
    use_bf16: bool
    total: int  # optimizer steps of the whole run
    progress: int = 0  # a progress log line every this many steps (0 = none: ranks > 0)


def _forward_backward(
    run: _Run, batch: dict, step: int, last: bool
) -> tuple[bool, float, dict[str, float]]:
    """One micro-batch: the loss under autocast, then its backward if finite on every rank.

    DDP syncs gradients only on the ``last`` micro-batch of an optimizer step. Returns
    ``(finite, loss averaged over ranks, the method's logs)``.
    """
    sync = contextlib.nullcontext() if last or run.world == 1 else run.model.no_sync()
    with sync:
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.use_bf16):
            loss, logs = run.model(_to(batch, run.device), step, run.total)
        finite, mean_loss = _all_finite(loss, run.world)
        if finite:
            (loss / run.cfg.grad_accum).backward()
    return finite, mean_loss, logs


def _optimizer_step(run: _Run, step: int) -> None:
    """Schedule the lr of ``step``, clip the gradient norm, step and clear the gradients."""
    for group in run.optimizer.param_groups:
        group["lr"] = group["base_lr"] * get_lr(step, run.total, run.cfg)
    if run.cfg.grad_clip:
        nn.utils.clip_grad_norm_(run.method.parameters(), run.cfg.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)


def _train_epoch(run: _Run, batches: Iterable[dict], step: int, hist: History, bar: tqdm) -> int:
    """One pass over ``batches`` with gradient accumulation; returns the next step number."""
    cfg, micro = run.cfg, 0
    for batch in batches:
        tick = time.perf_counter()
        last = (micro + 1) % cfg.grad_accum == 0  # DDP syncs gradients on the last only
        finite, mean_loss, logs = _forward_backward(run, batch, step, last)
        if not finite:
            hist.skipped_nonfinite += 1
            run.optimizer.zero_grad(set_to_none=True)
            _fail_nonfinite(hist, step, cfg)
            continue
        micro += 1
        if not last:
            continue
        _optimizer_step(run, step)
        logs = {**logs, "loss": mean_loss} if run.world > 1 else logs
        hist.step_times.append(time.perf_counter() - tick)
        entry = {"step": step, "lr": run.optimizer.param_groups[0]["lr"], "loss": mean_loss}
        hist.steps.append(entry | logs)  # the method's own "loss" (its logged value) wins
        if run.progress and (step % run.progress == 0 or step == run.total - 1):
            log.info("%s", progress_line(hist.steps[-1], run.total))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{hist.steps[-1]['loss']:.4f}", refresh=False)  # at mininterval
    return step


def _check_max_steps(steps) -> None:
    """``max_steps`` is None or a positive whole number (else ``ValueError``)."""
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise ValueError(
            f"max_steps must be a positive number of optimizer steps, or None to train for "
            f"`epochs` passes; got {steps!r}."
        )


def _end_epoch(
    run: _Run, hist: History, epoch: int, step: int, ckpt_dir: Path | None, on_epoch
) -> None:
    """After ``epoch`` (from 1): its evaluation (``on_epoch``, rank 0), then its checkpoint."""
    hist.epochs_done = epoch
    if on_epoch is not None:
        hist.epoch_evals.append({"epoch": epoch, "step": step, **on_epoch(epoch)})
        run.method.train()  # the callback may have put the student in eval mode
    if ckpt_dir is not None:
        _save(ckpt_dir / f"epoch-{epoch}.pt", run.method, run.optimizer, hist, run.cfg)


def _resume_or_warm_start(
    cfg: TrainConfig,
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple[Dataset, Callable | None],
    ckpt_dir: Path | None,
) -> History:
    """The newest checkpoint's history (``cfg.resume``), else a fresh one after ``warm_start``.

    ``method.warm_start(dataset, collate_fn)`` (``data``) fits what the objective needs before
    its first step; a resumed run has those weights in its checkpoint already.
    """
    rank, world = dist_info()
    if cfg.resume and ckpt_dir and (resumed := _resume(cfg, method, optimizer, rank, world)):
        return resumed
    if hasattr(method, "warm_start"):
        method.warm_start(*data)
    return History()


def train(
    method: nn.Module,
    dataset: Dataset,
    cfg: TrainConfig,
    collate_fn: Callable | None = None,
    on_epoch: Callable[[int], dict[str, float]] | None = None,
) -> History:
    """Train ``method`` (its student and projections) on ``dataset``; return the history.

    ``on_epoch(epoch)`` (epoch counted from 1), when given, runs on rank 0 after every epoch,
    before its checkpoint: the scores it returns go into ``History.epoch_evals`` with the epoch
    and the step count (the per-epoch evaluation of ``EvalConfig.every_epoch``). The other
    ranks wait for it at their next gradient sync.

    Under ``torchrun``/``accelerate launch`` (``WORLD_SIZE > 1``) the process group is joined
    here if needed, the method is moved to the rank's device and wrapped in DDP, every rank
    takes its slice of the same global batches (``GlobalBatchSampler``) and contrastive losses
    gather their candidates across ranks, so the result matches one process on the whole
    ``cfg.batch_size`` batch. Only rank 0 writes checkpoints and shows progress; the returned
    history holds this rank's logs except ``loss``, the mean over ranks.

    Raises:
        ValueError: ``cfg.batch_size`` not divisible by the world size, fewer texts than
            one optimizer step needs, or ``cfg.max_steps`` not a positive integer.
        RuntimeError: after ``cfg.max_nonfinite`` non-finite losses.
    """
    _check_max_steps(cfg.max_steps)
    # 1) device, per-rank seeds (dropout masks; rank 0 = single process), optimizer, data
    device = init_distributed(method.student.device)
    rank, world = dist_info()
    method.to(device)
    seed_everything(cfg.seed + rank)
    optimizer = torch.optim.AdamW(param_groups(method, cfg), weight_decay=cfg.weight_decay)
    loader, sampler, loader_gen = _make_loader(dataset, cfg, collate_fn, rank, world)
    steps_per_epoch = len(loader) // cfg.grad_accum
    total = cfg.max_steps or steps_per_epoch * cfg.epochs
    n_epochs = math.ceil(total / steps_per_epoch)  # = cfg.epochs without max_steps
    # 2) resume from the newest checkpoint, then (after loading) wrap in DDP
    ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    hist = _resume_or_warm_start(cfg, method, optimizer, (dataset, collate_fn), ckpt_dir)
    start_epoch = hist.epochs_done
    model = _wrap_ddp(method, device, cfg) if world > 1 else method
    use_bf16 = cfg.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported()
    progress = progress_every(total, cfg.log_every) if rank == 0 else 0
    run = _Run(method, model, optimizer, cfg, device, world, use_bf16, total, progress)
    # 3) epochs: the data order depends only on (seed, epoch); a checkpoint after each
    step = start_epoch * steps_per_epoch
    bar = tqdm(total=total, initial=step, desc="train", disable=not cfg.show_progress or rank > 0)
    method.train()
    for epoch in range(start_epoch, n_epochs):
        sampler.set_epoch(epoch)
        loader_gen.manual_seed(cfg.seed + epoch)
        todo = min(steps_per_epoch, total - epoch * steps_per_epoch)  # max_steps: last pass short
        batches = itertools.islice(loader, todo * cfg.grad_accum)
        step = _train_epoch(run, batches, step, hist, bar)
        _end_epoch(run, hist, epoch + 1, step, ckpt_dir, on_epoch if rank == 0 else None)
    bar.close()
    method.eval()
    return hist
