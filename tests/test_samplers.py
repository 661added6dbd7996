"""Batch composition: teacher-neighbour pairs (known answers on constructed embeddings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samd_common.data.demo import synthetic_sentences
from samd_common.models import load_encoder
from samd_common.training.batching import DistillDataset
from samd_common.training.loop import TrainConfig, _sampler, train
from samd_common.training.samplers import (
    GlobalBatchSampler,
    NeighbourBatchSampler,
    teacher_neighbours,
)


def clustered(n_clusters: int = 5, per: int = 8, dim: int = 16, seed: int = 0) -> np.ndarray:
    """(n_clusters·per, dim) embeddings: tight clusters around random centres, plus a shared
    offset (an anisotropic 'teacher': every raw cosine is high)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)) * 3
    x = np.repeat(centres, per, axis=0) + rng.normal(size=(n_clusters * per, dim)) * 0.1
    return (x + 50.0).astype(np.float32)


def test_neighbours_are_the_other_members_of_the_own_cluster():
    x = clustered()
    nbrs = teacher_neighbours(x, k=7, chunk=6)  # chunk smaller than N: the self-mask per chunk
    cluster = np.arange(len(x)) // 8
    assert nbrs.shape == (40, 7)
    assert (nbrs != np.arange(40)[:, None]).all()  # never itself
    assert (cluster[nbrs] == cluster[:, None]).all()  # centred: the shared offset is ignored


def test_neighbours_reject_bad_k():
    with pytest.raises(ValueError, match="neighbours k=40"):
        teacher_neighbours(clustered(), k=40)


def test_neighbour_batches_pair_each_anchor_with_a_neighbour():
    x = clustered()
    nbrs = teacher_neighbours(x, k=3)
    sampler = NeighbourBatchSampler(nbrs, batch_size=8, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 40 // 8
    anchors = [a for b in batches for a in b[0::2]]
    assert len(set(anchors)) == len(anchors)  # each text an anchor at most once per epoch
    for b in batches:
        assert len(b) == 8
        for a, partner in zip(b[0::2], b[1::2], strict=True):
            assert partner in nbrs[a]
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new order per epoch


def test_neighbour_batches_are_the_same_for_every_world_size():
    nbrs = teacher_neighbours(clustered(), k=3)
    one = list(NeighbourBatchSampler(nbrs, batch_size=8, seed=3))
    halves = [list(NeighbourBatchSampler(nbrs, 8, 3, rank=r, world=2)) for r in range(2)]
    assert [a + b for a, b in zip(*halves, strict=True)] == one


def test_odd_batch_size_is_cut_to_size():
    nbrs = teacher_neighbours(clustered(), k=2)
    assert {len(b) for b in NeighbourBatchSampler(nbrs, batch_size=5)} == {5}


class _Cached(torch.utils.data.Dataset):
    def __init__(self, pooled: np.ndarray | None):
        self.cache = None if pooled is None else type("C", (), {"arrays": {"pooled": pooled}})()

    def __len__(self) -> int:
        return 40


def test_train_config_picks_the_sampler():
    cfg = TrainConfig(batch_size=8, neighbours=2)
    assert isinstance(_sampler(_Cached(clustered()), cfg, 0, 1), NeighbourBatchSampler)
    plain = _sampler(_Cached(clustered()), TrainConfig(batch_size=8), 0, 1)
    assert type(plain) is GlobalBatchSampler
    with pytest.raises(ValueError, match="no teacher cache"):
        _sampler(_Cached(None), cfg, 0, 1)
    with pytest.raises(ValueError, match="neighbours"):
        TrainConfig(neighbours=-1)


class _Spy(torch.utils.data.Dataset):
    """A corpus without teacher outputs but with cached pooled embeddings; records reads."""

    def __init__(self, ds, pooled: np.ndarray):
        self.ds, self.cache, self.seen = ds, _Cached(pooled).cache, []

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        self.seen.append(i)
        return self.ds.items[i]


def test_training_runs_on_neighbour_batches(tiny_dirs, shrink):
    """train() with neighbours ≥ 1 reads anchor/neighbour pairs of the cached embeddings."""
    student = load_encoder(str(tiny_dirs["student"]), device="cpu", max_length=24)
    ds = DistillDataset(synthetic_sentences(40, seed=3), student.tokenizer, 24)
    spy = _Spy(ds, clustered())
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, neighbours=3, show_progress=False)
    hist = train(shrink(student), spy, cfg, collate_fn=ds.collate)
    assert len(hist.steps) == 5 and len(spy.seen) == 40
    nbrs = teacher_neighbours(clustered(), k=3)
    assert all(p in nbrs[a] for a, p in zip(spy.seen[0::2], spy.seen[1::2], strict=True))
