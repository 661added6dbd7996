"""Distributed helpers shared by the training loop, the teacher cache and the losses.

Every function is a no-op (or the identity) without an initialised ``torch.distributed`` process
group, so single-process code calls them unconditionally. The collectives (``gather_across_ranks``,
``masked_mean_across_ranks``, ``broadcast_object``, ``barrier``) must be called by every rank in
the same order.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def dist_info() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> torch.device:
    """Join the ``torchrun``/``accelerate launch`` process group if there is one; return the device.

    With ``WORLD_SIZE > 1`` in the environment and no initialised group, this initialises one from
    the launcher's variables (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``): ``nccl`` when ``device``
    is a CUDA device, ``gloo`` otherwise. On CUDA the rank's device is ``cuda:LOCAL_RANK`` (it
    becomes the current device). Without a launcher nothing happens and ``device`` is returned.
    """
    device = torch.device(device)
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if device.type == "cuda" and (launched or dist_info()[1] > 1):
        local = os.environ.get("LOCAL_RANK")
        device = torch.device("cuda", int(local) if local is not None else device.index or 0)
        torch.cuda.set_device(device)
    if launched and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        log.info("rank %d of %d joined the process group (%s)", *dist_info(), device)
    return device


def broadcast_object(obj):
    """Rank 0's ``obj`` (picklable) on every rank; identity without a process group."""
    if dist_info()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every rank; no-op without a process group."""
    if dist_info()[1] > 1:
        dist.barrier()


def gather_across_ranks(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` of every rank along dim 0, in rank order, keeping the autograd graph.

    The backward pass sums, for this rank's rows, the gradients every rank's loss sends to them
    (reduce-scatter); identity without a process group or with one rank.

    Args:
        x: (B, ...) tensor; the same shape on every rank.

    Returns:
        (W·B, ...) tensor; rows ``[r·B, (r+1)·B)`` come from rank ``r``.
    """
    _, world = dist_info()
    if world == 1:
        return x
    from torch.distributed.nn.functional import all_gather  # autograd-aware collective

    return torch.cat(all_gather(x.contiguous()), dim=0)


def masked_mean_across_ranks(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the ``mask``-ed entries of the *global* batch, DDP-ready.

    ``L_r = W · Σ_local values·mask / max(1, Σ_all ranks mask)``: its mean over the ``W`` ranks
    (what DDP's gradient averaging takes) is the single-process masked mean over the global
    batch, even when ranks keep different numbers of entries. Without a process group this is
    the plain masked mean ``Σ values·mask / max(1, Σ mask)``. The count carries no gradient.

    Args:
        values: (...) per-entry losses.
        mask: (...) bool or 0/1 weights, same shape.

    Returns:
        0-d tensor.
    """
    _, world = dist_info()
    mask = mask.to(values.dtype)
    count = mask.detach().sum()
    if world > 1:
        torch.distributed.all_reduce(count)
    return world * (values * mask).sum() / count.clamp_min(1)
