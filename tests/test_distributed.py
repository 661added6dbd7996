"""DDP on CPU: two gloo processes must reproduce one process on the same global batch.

One module fixture runs everything once: the parent builds the teacher cache and trains SAMD in
a single process; two spawned ranks then train the same setup (interrupted in epoch 2 and
resumed from rank 0's checkpoint), check the distributed loss helpers' gradients against the
single-process ones, and build the teacher cache sharded. Dropout is switched off (p = 0 on
every dropout module; ``train`` calls ``.train()``, so eval mode is no option) because the two
runs cannot share dropout masks.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from samd_common.data.demo import synthetic_sentences
from samd_common.distributed import dist_info, masked_mean_across_ranks
from samd_common.losses.contrastive import info_nce, matryoshka_info_nce
from samd_common.losses.samd import SAMDLoss, SAMDParams
from samd_common.models import load_encoder
from samd_common.training.batching import DistillDataset
from samd_common.training.loop import GlobalBatchSampler, TrainConfig, train
from samd_common.training.teacher_cache import ARRAYS, TeacherCache, build_teacher_cache

WORLD, N_TEXTS, BATCH, MAX_LEN, EPOCHS = 2, 48, 8, 24, 2  # 6 steps per epoch
STOP_AT = 9  # forward call (epoch 2) at which the distributed run is "killed"
# Every SAMD term, SimCSE and L_SAM on (every 2nd step; min_conf=0 keeps every sample).
PARAMS = dict(w_task=0.5, use_sam=True, lambda_sam=0.5, sam_every=2, min_conf=0.0)


class _Killed(Exception):
    pass


class _FaultySAMD(SAMDLoss):
    """SAMD that raises at forward call ``stop_at`` (a killed run), NaN at call ``nan_at``."""

    def __init__(self, *args, stop_at: int | None = None, nan_at: int | None = None, **kw):
        super().__init__(*args, **kw)
        self.calls, self.stop_at, self.nan_at = 0, stop_at, nan_at

    def forward(self, batch, step, total_steps):
        loss, logs = super().forward(batch, step, total_steps)
        self.calls += 1
        if self.calls == self.stop_at:
            raise _Killed
        return loss * (float("nan") if self.calls == self.nan_at else 1.0), logs


def _texts() -> list[str]:
    return synthetic_sentences(N_TEXTS, seed=11)


def _teacher(dirs):
    return load_encoder(str(dirs["teacher"]), device="cpu", attn_implementation="eager")


def _samd(dirs, cache: TeacherCache, **faults):
    student = load_encoder(
        str(dirs["student"]), device="cpu", max_length=MAX_LEN, attn_implementation="eager"
    )
    cfg = student.backbone.config
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    for module in student.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    # A key bias adds the same q·b to every score of a query, which the softmax ignores: its
    # gradient is 0 up to rounding noise, and Adam rescales that noise into lr-sized steps that
    # no two runs share. Freeze it so that the comparison measures the training, not the noise.
    for name, param in student.named_parameters():
        if name.endswith("attention.self.key.bias"):
            param.requires_grad_(False)
    ds = DistillDataset(_texts(), student.tokenizer, MAX_LEN, cache=cache)
    torch.manual_seed(0)  # the projection's initialisation
    method = _FaultySAMD(
        student, cache.dim, teacher_layers=1, params=SAMDParams(**PARAMS), **faults
    )
    return method, ds


def _cfg(**kw) -> TrainConfig:
    kw = {"epochs": EPOCHS, "batch_size": BATCH, "lr": 3e-4, "proj_lr": 3e-4, "seed": 4, **kw}
    return TrainConfig(show_progress=False, **kw)


def _loss_checks() -> dict[str, tuple[float, torch.Tensor]]:
    """(loss, grad of a shared weight) of each helper; under DDP averaged over ranks like DDP."""
    rank, world = dist_info()
    gen = torch.Generator().manual_seed(0)
    a, b, w0 = (torch.randn(n, 16, generator=gen) for n in (8, 8, 16))
    mask = torch.tensor([1, 1, 1, 0, 0, 0, 1, 0], dtype=torch.bool)  # 3 kept on rank 0, 1 on 1
    rows = slice(rank * 8 // world, (rank + 1) * 8 // world)
    losses = {
        "info_nce": lambda w: info_nce(a[rows] @ w, b[rows] @ w, 0.1),
        "matryoshka": lambda w: matryoshka_info_nce(a[rows] @ w, b[rows] @ w, [4, 16], [2, 1]),
        "masked_mean": lambda w: masked_mean_across_ranks((a[rows] @ w).pow(2).sum(-1), mask[rows]),
        # the per-rank form SAMD's L_SAM uses: a mean of per-rank means, not the global mean
        "per_rank_mean": lambda w: (a[rows] @ w).pow(2).sum(-1)[mask[rows]].mean(),
    }
    out = {}
    for name, fn in losses.items():
        w = w0.clone().requires_grad_()
        loss = fn(w)
        loss.backward()
        both = torch.cat([loss.detach().reshape(1), w.grad.flatten()])
        if world > 1:
            torch.distributed.all_reduce(both)
            both /= world  # DDP averages the ranks' gradients
        out[name] = (float(both[0]), both[1:].reshape(w0.shape))
    return out


def _worker(rank: int, port: int, dirs: dict, cache_root: str, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(WORLD),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    out, cache = Path(out), TeacherCache.open(Path(cache_root))
    t0 = time.perf_counter()
    method, ds = _samd(dirs, cache, stop_at=STOP_AT)  # train() joins the process group
    try:
        train(method, ds, _cfg(checkpoint_dir=str(out / "ckpt")), collate_fn=ds.collate)
        raise AssertionError("the run should have been killed in epoch 2")
    except _Killed:
        pass
    method, ds = _samd(dirs, cache)  # a fresh process state, resumed from rank 0's checkpoint
    hist = train(method, ds, _cfg(checkpoint_dir=str(out / "ckpt"), resume=True), ds.collate)
    t1 = time.perf_counter()
    faulty, ds = _samd(dirs, cache, nan_at=3 if rank == 1 else None)  # NaN on one rank only
    nan_hist = train(faulty, ds, _cfg(epochs=1), collate_fn=ds.collate)
    checks = _loss_checks()
    build_teacher_cache(
        _teacher(dirs), _texts(), MAX_LEN, layers=1, cache_dir=out / "sharded", show_progress=False
    )
    if rank == 0:
        result = {
            "state": method.state_dict(),
            "losses": [s["loss"] for s in hist.steps],
            "nan_run": (nan_hist.skipped_nonfinite, len(nan_hist.steps)),
            "checks": checks,
            "train_s": t1 - t0,
            "cache_s": time.perf_counter() - t1,
        }
        torch.save(result, out / "rank0.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(args: tuple, timeout: float = 300) -> None:
    ctx = mp.start_processes(_worker, args=args, nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=5):  # raises if a rank failed (and stops the other)
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail(f"distributed workers did not finish in {timeout} s")


@pytest.fixture(scope="module")
def runs(tiny_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the ranks: same kernels, same rounding
    try:
        return _run_both(tiny_dirs, root)
    finally:
        torch.set_num_threads(threads)


def _run_both(tiny_dirs, root: Path):
    t0 = time.perf_counter()
    cache = build_teacher_cache(
        _teacher(tiny_dirs),
        _texts(),
        MAX_LEN,
        layers=1,
        cache_dir=root / "single",
        show_progress=False,
    )
    method, ds = _samd(tiny_dirs, cache)
    start = {k: v.clone() for k, v in method.state_dict().items()}
    hist = train(method, ds, _cfg(), collate_fn=ds.collate)
    single = {
        "state": method.state_dict(),
        "start": start,
        "steps": hist.steps,
        "checks": _loss_checks(),
        "cache": cache,
        "s": time.perf_counter() - t0,
    }
    t1 = time.perf_counter()
    _spawn((_free_port(), tiny_dirs, str(cache.root), str(root)))
    multi = torch.load(root / "rank0.pt", weights_only=False)
    multi["s"] = time.perf_counter() - t1
    multi["cache"] = TeacherCache.open(next((root / "sharded").iterdir()))
    print(
        f"\nsingle process {single['s']:.1f} s; two ranks {multi['s']:.1f} s (train "
        f"{multi['train_s']:.1f} s, sharded cache {multi['cache_s']:.1f} s, rest start-up)"
    )
    return single, multi


def test_sampler_gives_the_same_global_batches_for_any_world_size():
    for epoch in range(3):
        one = GlobalBatchSampler(50, 8, seed=3)
        halves = [GlobalBatchSampler(50, 8, seed=3, rank=r, world=2) for r in range(2)]
        quarters = [GlobalBatchSampler(50, 8, seed=3, rank=r, world=4) for r in range(4)]
        for s in [one, *halves, *quarters]:
            s.set_epoch(epoch)
        batches = list(one)
        assert len(batches) == len(one) == 6 and all(len(b) == 8 for b in batches)
        assert len({i for b in batches for i in b}) == 48  # a permutation, tail of 2 dropped
        for shards in (halves, quarters):
            assert [sum(parts, []) for parts in zip(*shards, strict=True)] == batches
    other = GlobalBatchSampler(50, 8, seed=3)
    other.set_epoch(1)
    assert list(other) != batches  # a new order every epoch
    with pytest.raises(ValueError, match="not divisible by the world size 3"):
        GlobalBatchSampler(50, 8, rank=0, world=3)


def test_distributed_loss_gradients_equal_single_process(runs):
    single, multi = runs
    for name, (loss, grad) in single["checks"].items():
        got_loss, got_grad = multi["checks"][name]
        if name == "per_rank_mean":  # ranks keep 3 and 1 entries: (m_0 + m_1)/2 ≠ global mean
            assert got_loss != pytest.approx(loss, rel=1e-3)
            continue
        assert got_loss == pytest.approx(loss, rel=1e-5), name
        assert torch.allclose(got_grad, grad, atol=1e-6, rtol=1e-5), name
        assert grad.abs().max() > 1e-3, name  # a real gradient, not two zeros


def test_two_ranks_train_like_one_process(runs):
    """SAMD (L_task with gathered negatives, L_MRD, L_SAM), interrupted and resumed under DDP.

    Exact up to float rounding: every rank's loss is a mean over its local samples with the same
    number of samples per rank, so DDP's average is the global mean. The one exception is
    L_SAM's mean over the *kept* samples (``keep.sum()`` per rank): with ranks keeping different
    numbers it is a mean of per-rank means, not the global mean; ``min_conf=0`` keeps every
    sample here (``masked_mean_across_ranks`` is the exact form, checked above).

    What is left is float rounding (other padding widths and matmul shapes per rank), which
    Adam's m/√v turns into update differences that grow with the learning rate: max |Δ| was
    2e-7 to 1.3e-6 at lr 3e-4 over eight tiny-model instances (up to 9.5e-6 at lr 1e-3).
    """
    single, multi = runs
    assert sum("sam" in s for s in single["steps"]) >= 5  # L_SAM took part
    assert len(multi["losses"]) == len(single["steps"]) == EPOCHS * N_TEXTS // BATCH
    np.testing.assert_allclose(multi["losses"], [s["loss"] for s in single["steps"]], rtol=1e-5)
    moved, diff = 0.0, 0.0
    for name, value in single["state"].items():
        moved = max(moved, float((value - single["start"][name]).abs().max()))
        diff = max(diff, float((multi["state"][name] - value).abs().max()))
        assert torch.allclose(multi["state"][name], value, atol=1e-5, rtol=0), name
    print(f"\nmax |Δ| single vs 2 ranks {diff:.2e}; max change from init {moved:.2e}")
    assert moved > 100 * 1e-5  # the weights moved far more than the tolerance


def test_sharded_cache_equals_single_process_cache(runs):
    single, multi = runs
    a, b = single["cache"], multi["cache"]
    assert a.root.name == b.root.name and a.meta == b.meta
    for name in ARRAYS:
        x, y = a.arrays[name], b.arrays[name]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if name in ("input_ids", "spans", "real", "index"):
            assert np.array_equal(x, y), name  # byte for byte
        else:  # teacher outputs from other batch compositions: rounding may differ (≈1e-7)
            atol = 1e-5 if x.dtype == np.float32 else 2e-3  # fp16 states: one fp16 step
            np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), atol=atol)
    assert not list(b.root.parent.glob("*.partial"))


def test_a_nonfinite_loss_on_one_rank_skips_the_step_on_all(runs):
    _, multi = runs
    assert multi["nan_run"] == (1, N_TEXTS // BATCH - 1)  # rank 0's loss was finite
