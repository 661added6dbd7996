"""Which texts share a batch: seeded global batches, random or paired with teacher neighbours.

In-batch losses (the relational similarity matrices, InfoNCE) only see the pairs a batch holds.
Random batches of a mixed corpus hold almost only *unrelated* pairs, so the similar-pair regime
that STS scores is barely constrained. ``NeighbourBatchSampler`` fills half of every batch with
random anchors and the other half with one of each anchor's ``k`` nearest neighbours under the
(frozen, cached) teacher, so every batch also holds related pairs — no labels, no tokenizer.

Both samplers yield the same global batches for every world size (each rank takes a contiguous
slice of each), and the order depends only on (seed, epoch), so DDP sees the data of one process.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def teacher_neighbours(pooled: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """Indices of each text's ``k`` nearest other texts by cosine of the centred embeddings.

    Args:
        pooled: (N, D) teacher sentence embeddings (the cache's ``pooled``).
        k: neighbours per text, 1 ≤ k < N.
        chunk: rows scored at a time (bounds memory to chunk × N floats).

    Returns:
        (N, k) int64, nearest first; a text is never its own neighbour. The corpus mean is
        subtracted first: an anisotropic teacher (all cosines high) ranks by its residual
        directions, the ones the student is asked to follow.
    """
    n = len(pooled)
    if not 1 <= k < n:
        raise ValueError(f"neighbours k={k} must be in [1, {n - 1}] for a corpus of {n} texts.")
    x = torch.from_numpy(np.array(pooled, dtype=np.float32))  # a copy: the cache is read-only
    x = torch.nn.functional.normalize(x - x.mean(0), dim=-1)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        sim = x[start : start + chunk] @ x.T  # (c, N)
        rows = torch.arange(sim.shape[0])
        sim[rows, rows + start] = -float("inf")  # not itself
        out[start : start + chunk] = sim.topk(k, dim=-1).indices.numpy()
    return out


class GlobalBatchSampler(Sampler[list[int]]):
    """Seeded global batches, each cut into one contiguous slice per rank.

    Per epoch it draws one permutation of the dataset from a generator seeded with
    ``seed + epoch``, cuts it into global batches of ``batch_size`` (the incomplete tail is
    dropped) and yields this rank's slice ``[rank·b, (rank+1)·b)`` of each, ``b = batch_size /
    world``. The global batches are therefore the same for every world size, so a DDP run sees
    exactly the data of a single-process run, and the order depends only on (seed, epoch).
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1):
        if batch_size <= 0 or world <= 0 or not 0 <= rank < world:
            raise ValueError(
                f"Need batch_size ≥ 1, world ≥ 1, 0 ≤ rank < world; got "
                f"{batch_size}, {world}, {rank}."
            )
        if batch_size % world:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by the world size {world}: each rank "
                f"takes batch_size / world texts of every global batch; pick a multiple of {world}."
            )
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size

    def global_batches(self, gen: torch.Generator) -> Iterator[list[int]]:
        """The epoch's global batches: consecutive slices of one permutation."""
        perm = torch.randperm(self.n, generator=gen)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield perm[start : start + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        local = self.batch_size // self.world
        for batch in self.global_batches(gen):
            yield batch[self.rank * local : (self.rank + 1) * local]


class NeighbourBatchSampler(GlobalBatchSampler):
    """Global batches of ``⌈B/2⌉`` random anchors, each followed by one of its neighbours.

    ``neighbours`` is (N, k) (``teacher_neighbours``); per anchor one of its k neighbours is
    drawn uniformly, so a batch is ``[a_0, n(a_0), a_1, n(a_1), …]`` cut to ``batch_size``.
    Anchors are a permutation's consecutive slices (each text is an anchor at most once per
    epoch); an epoch keeps the random sampler's length, N // batch_size steps.
    """

    def __init__(
        self, neighbours: np.ndarray, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1
    ):
        super().__init__(len(neighbours), batch_size, seed, rank, world)
        self.neighbours = torch.as_tensor(neighbours, dtype=torch.long)

    def global_batches(self, gen: torch.Generator) -> Iterator[list[int]]:
        """Anchor/neighbour pairs, interleaved."""
        half = -(-self.batch_size // 2)
        perm = torch.randperm(self.n, generator=gen)
        k = self.neighbours.shape[1]
        for start in range(0, len(self) * half, half):
            anchors = perm[start : start + half]
            pick = torch.randint(k, (len(anchors),), generator=gen)
            partners = self.neighbours[anchors, pick]
            yield torch.stack([anchors, partners], 1).flatten()[: self.batch_size].tolist()
