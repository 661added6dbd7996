from __future__ import annotations

import copy

import pytest
import torch

from samd_common.data.demo import synthetic_sentences
from samd_common.losses.dskd import PROJ_LR, DSKDLoss, DSKDParams
from samd_common.losses.dskd_functional import (
    cross_model_attention,
    dual_space_losses,
    orthogonality_penalty,
    sample_std,
    token_representation_loss,
)
from samd_common.methods import TeacherInfo, get_method
from samd_common.models import load_encoder
from samd_common.training.batching import DistillDataset
from samd_common.training.loop import TrainConfig, param_groups
from samd_common.training.teacher_cache import build_teacher_cache

TEXTS = synthetic_sentences(32, seed=3)
D_T = 48  # tiny teacher width (hidden = input embeddings)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny matmuls on a shared 2-core box run ~50× faster without intra-op thread barriers."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tiny_dirs, tmp_path_factory):
    """The tiny student and four collated DSKD batches of 8 texts from a real teacher cache."""
    student = load_encoder(str(tiny_dirs["student"]), device="cpu")
    teacher = load_encoder(str(tiny_dirs["teacher"]), device="cpu", attn_implementation="eager")
    cache = build_teacher_cache(
        teacher, TEXTS, 32, cache_dir=tmp_path_factory.mktemp("dskd-cache"), show_progress=False
    )
    ds = DistillDataset(TEXTS, student.tokenizer, 32, cache=cache)
    batches = [ds.collate([ds[j] for j in range(i, i + 8)]) for i in range(0, len(TEXTS), 8)]
    return student, batches


def make_method(tiny, **params) -> DSKDLoss:
    torch.manual_seed(0)
    return DSKDLoss(copy.deepcopy(tiny[0]), D_T, params=DSKDParams(**params))


def emptied(batch: dict) -> dict:
    """Sample 0 without valid teacher tokens, sample 1 without valid student tokens."""
    batch = {k: v.clone() for k, v in batch.items()}
    batch["t_real"][0] = False
    batch["s_real"][1] = False
    return batch


def spectrum(w: torch.Tensor) -> dict[str, float]:
    s = torch.linalg.svdvals(w.detach().float())
    share = s / s.sum()
    return {
        "norm": float(s.pow(2).sum().sqrt()),
        "top_share": float(share[0]),
        "erank": float(torch.exp(-(share * share.log()).sum())),  # effective rank
        "smin": float(s[-1]),
        "smax": float(s[0]),
        "k": len(s),
    }


def train_steps(method: DSKDLoss, batches, steps: int, proj_lr: float) -> list[dict]:
    cfg = TrainConfig(lr=5e-4, proj_lr=proj_lr)
    opt = torch.optim.AdamW(param_groups(method, cfg), weight_decay=cfg.weight_decay)
    logs = []
    for step in range(steps):
        loss, log = method(batches[step % len(batches)], step, steps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        logs.append(log)
    return logs


# ---------------------------------------------------------------- cross-model attention


def random_masks(b=3, t_s=5, t_t=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(b, t_s, 16, generator=g), torch.randn(b, t_t, 16, generator=g)
    s_valid = torch.ones(b, t_s, dtype=torch.bool)
    t_valid = torch.ones(b, t_t, dtype=torch.bool)
    s_valid[0, 0] = s_valid[0, -2:] = False  # a special and padding
    t_valid[0, 0] = t_valid[0, -3:] = False
    t_valid[1] = False  # sample 1: no valid teacher token
    s_valid[2] = False  # sample 2: no valid student token
    return q, k, t_valid, s_valid


def test_attention_rows_sum_to_one_over_valid_teacher_tokens():
    q, k, t_valid, s_valid = random_masks()
    t2s, s2t = cross_model_attention(q, k, t_valid, s_valid)
    assert t2s.shape == (3, 5, 7) and s2t.shape == (3, 7, 5)
    assert torch.isfinite(t2s).all() and torch.isfinite(s2t).all()
    has_t = t_valid.any(-1, keepdim=True)  # (B, 1)
    has_s = s_valid.any(-1, keepdim=True)
    rows = t2s.sum(-1)  # (B, T_s)
    torch.testing.assert_close(rows, (s_valid & has_t).float())
    assert (t2s * ~t_valid[:, None, :]).abs().max() == 0  # no weight on invalid teacher tokens
    assert (t2s * ~s_valid[:, :, None]).abs().max() == 0  # invalid student rows are all zero
    # Student→teacher: each valid teacher token's weights over valid student tokens sum to 1.
    torch.testing.assert_close(s2t.sum(-1), (t_valid & has_s).float())
    assert (s2t * ~s_valid[:, None, :]).abs().max() == 0
    # It is the column softmax of the same logits: s2t[b, i, j] ∝ exp(A[b, j, i]) over j.
    a = q[0] @ k[0].T / 4
    sub = a[s_valid[0]][:, t_valid[0]].softmax(0).T  # (n_t, n_s)
    torch.testing.assert_close(s2t[0][t_valid[0]][:, s_valid[0]], sub)


def test_attention_gradients_are_finite_with_fully_masked_samples():
    q, k, t_valid, s_valid = random_masks()
    q.requires_grad_(True)
    t2s, s2t = cross_model_attention(q, k, t_valid, s_valid)
    (t2s.pow(2).sum() + s2t.pow(2).sum()).backward()
    assert torch.isfinite(q.grad).all()
    assert q.grad[1].abs().max() == 0 and q.grad[2].abs().max() == 0  # nothing to align


def test_attention_checks_shapes():
    q, k, t_valid, s_valid = random_masks()
    with pytest.raises(ValueError, match="same B and D"):
        cross_model_attention(q, k[..., :8], t_valid, s_valid)
    with pytest.raises(ValueError, match="s_valid"):
        cross_model_attention(q, k, t_valid, s_valid[:, :3])


# ---------------------------------------------------------------- pure losses


def test_token_representation_loss_properties():
    g = torch.Generator().manual_seed(1)
    h, other = torch.randn(2, 4, 8, generator=g), torch.randn(2, 4, 8, generator=g)
    valid = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    for distance in ("cosine", "mse"):
        assert float(token_representation_loss(h, h, valid, distance)) == pytest.approx(0, abs=1e-6)
        assert float(token_representation_loss(h, other, valid, distance)) > 0
    # Cosine is scale-free and ignores invalid tokens, whatever they hold.
    junk = other.clone()
    junk[~valid] = 0.0
    assert float(token_representation_loss(h, 3 * h, valid)) == pytest.approx(0, abs=1e-6)
    torch.testing.assert_close(
        token_representation_loss(h, other, valid), token_representation_loss(h, junk, valid)
    )
    x = torch.zeros(2, 4, 8, requires_grad=True)
    none = token_representation_loss(x, torch.zeros(2, 4, 8), torch.zeros(2, 4, dtype=bool))
    none.backward()
    assert float(none.detach()) == 0 and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="distance"):
        token_representation_loss(h, h, valid, "kl")
    with pytest.raises(ValueError, match="one shape"):
        token_representation_loss(h, h[..., :4], valid)


def test_dual_space_losses_zero_for_one_to_one_aligned_states():
    g = torch.Generator().manual_seed(2)
    h_s, h_t = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 12, generator=g)
    eye = torch.eye(5).expand(2, 5, 5)
    l_t2s, l_s2t = dual_space_losses(h_s, h_t, h_s, h_t, eye, eye)
    assert float(l_t2s) == pytest.approx(0, abs=1e-6) and float(l_s2t) == pytest.approx(0, abs=1e-6)
    perm = eye[:, torch.randperm(5, generator=g)]
    assert float(dual_space_losses(h_s, h_t, h_s, h_t, perm, perm)[0]) > 0
    with pytest.raises(ValueError, match="values_t"):
        dual_space_losses(h_s, h_t, h_t, h_t, eye, eye)


def test_orthogonality_penalty_values_and_pull_back_to_isometry():
    q, _ = torch.linalg.qr(torch.randn(12, 12))
    for w in (q, q[:5], q[:, :5]):  # square, wide, tall
        assert float(orthogonality_penalty(w)) == pytest.approx(0, abs=1e-5)
    assert float(orthogonality_penalty(torch.zeros(4, 6))) == pytest.approx(1.0)
    rank_one = torch.outer(torch.ones(4) / 2, torch.ones(6) / 6**0.5)  # σ = (1, 0, 0, 0)
    assert float(orthogonality_penalty(rank_one)) == pytest.approx(3 / 4)
    # Gradient descent on the penalty alone turns a near-zero, near-rank-1 matrix back into an
    # isometry: all singular values go to 1.
    w = (0.01 * rank_one + 1e-3 * torch.randn(4, 6)).requires_grad_(True)
    opt = torch.optim.SGD([w], lr=0.5)
    for _ in range(300):
        opt.zero_grad()
        orthogonality_penalty(w).backward()
        opt.step()
    torch.testing.assert_close(torch.linalg.svdvals(w.detach()), torch.ones(4), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="matrix"):
        orthogonality_penalty(torch.ones(3))


def test_sample_std_ignores_padding_and_empty_samples():
    x = torch.randn(2, 6, 4)
    valid = torch.tensor([[1, 1, 1, 0, 0, 0], [0] * 6], dtype=torch.bool)
    x[0, 3:] = 1e3  # padding must not count
    std = sample_std(x, valid)
    assert std.shape == (2, 1, 1) and not std.requires_grad
    torch.testing.assert_close(std[0, 0, 0], x[0, :3].std(unbiased=False))
    assert float(std[1]) == pytest.approx(1e-6)  # clamped, finite


# ---------------------------------------------------------------- the module on tiny models


def test_params_validation_and_registry(tiny):
    with pytest.raises(ValueError, match="distance"):
        DSKDParams(distance="kl")
    with pytest.raises(ValueError, match="Did you mean 'w_orth'"):
        DSKDParams.from_dict({"w_ortho": 1.0})
    spec = get_method("dskd")
    assert spec.name == "DSKD" and spec.family == "ctkd" and spec.needs_teacher
    assert spec.train_defaults.get("proj_lr") == PROJ_LR == 1e-3
    method = spec.build(copy.deepcopy(tiny[0]), TeacherInfo("tiny", D_T, D_T, 1), spec.defaults)
    assert isinstance(method, DSKDLoss)
    with pytest.raises(ValueError, match="needs a teacher"):
        spec.build(copy.deepcopy(tiny[0]), None, {})


def test_projectors_are_owned_and_start_orthogonal(tiny):
    method = make_method(tiny)
    groups = param_groups(method, TrainConfig(lr=2e-5, proj_lr=PROJ_LR))
    own = {id(p) for p in groups[1]["params"]}
    assert groups[1]["lr"] == 1e-3 and own == {id(p) for p in method.parameters()} - {
        id(p) for p in method.student.parameters()
    }
    assert len(own) == 5  # W_q (no bias), W_t2s + b, W_s2t + b
    for proj in method.projectors():
        assert orthogonality_penalty(proj.weight).item() < 1e-5


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
def test_loss_is_finite_on_real_and_emptied_batches(tiny, autocast):
    method = make_method(tiny)
    for batch in (tiny[1][0], emptied(tiny[1][0])):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, logs = method(batch, 0, 10)
        loss.backward()
        assert torch.isfinite(loss) and loss.dtype == torch.float32
        assert set(logs) == {"loss", "task", "t2s", "s2t", "orth"}
        assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
        grads = [p.grad for p in method.parameters() if p.grad is not None]
        assert all(torch.isfinite(g).all() for g in grads)
        method.zero_grad()


def test_empty_samples_contribute_nothing(tiny):
    """A sample with no valid teacher tokens changes neither term beyond removing its tokens."""
    method = make_method(tiny).eval()  # no dropout: compare two forward passes
    batch = tiny[1][0]
    whole = {k: v[2:] for k, v in batch.items()}  # samples 2… alone
    _, logs_a = method(emptied(batch), 0, 10)
    _, logs_b = method(whole, 0, 10)
    for key in ("t2s", "s2t"):
        assert logs_a[key] == pytest.approx(logs_b[key], rel=1e-4, abs=1e-6)


def test_specials_mode_uses_attention_masks(tiny):
    method = make_method(tiny, specials=True)
    batch = {k: v for k, v in tiny[1][0].items() if k not in ("s_real", "t_real")}
    loss, _ = method(batch, 0, 10)
    assert torch.isfinite(loss)
    with pytest.raises(KeyError, match="t_real"):
        make_method(tiny)(batch, 0, 10)


def test_gradients_reach_student_and_one_step_moves_projectors(tiny):
    method = make_method(tiny, w_task=0.0)  # the distillation terms alone
    loss, _ = method(tiny[1][0], 0, 10)
    loss.backward()
    layer = method.student.backbone.encoder.layer[-1].output.dense.weight
    assert layer.grad is not None and layer.grad.abs().sum() > 0
    for proj in method.projectors():
        assert proj.weight.grad.abs().sum() > 0
    before = [p.weight.detach().clone() for p in method.projectors()]
    method.zero_grad()
    train_steps(method, tiny[1], 1, PROJ_LR)
    for old, proj in zip(before, method.projectors(), strict=True):
        assert not torch.equal(old, proj.weight)


def test_query_detach_switch_controls_embedding_gradient(tiny):
    grads = {}
    for detach in (True, False):
        method = make_method(tiny, w_task=0.0, w_t2s=0.0, w_orth=0.0, detach_query=detach)
        method.student.eval()
        # Only the teacher-space term through the attention: E_s feeds h_s and (maybe) queries.
        method(tiny[1][0], 0, 10)[0].backward()
        grads[detach] = method.student.backbone.get_input_embeddings().weight.grad.clone()
    assert not torch.allclose(grads[True], grads[False])


@pytest.mark.parametrize("proj_lr", [PROJ_LR, 10 * PROJ_LR], ids=["default-lr", "10x-lr"])
def test_projectors_neither_vanish_nor_collapse_over_50_steps(tiny, proj_lr):
    method = make_method(tiny)
    start = [spectrum(p.weight) for p in method.projectors()]
    logs = train_steps(method, tiny[1], 50, proj_lr)
    assert all(torch.isfinite(torch.tensor(log["loss"])) for log in logs)
    assert logs[-1]["s2t"] < logs[0]["s2t"] and logs[-1]["t2s"] < logs[0]["t2s"]  # it learns
    for init, proj in zip(start, method.projectors(), strict=True):
        now = spectrum(proj.weight)
        assert 0.8 < now["norm"] / init["norm"] < 1.25  # does not vanish (nor blow up)
        assert now["smin"] > 0.5 and now["smax"] < 1.75  # every direction kept
        assert now["top_share"] < 2 / now["k"]  # not one direction (1 = rank one)
        assert now["erank"] > 0.9 * now["k"]


def test_without_the_regulariser_projectors_drift_much_further(tiny):
    """The anti-collapse term is what holds the spectrum: same run with w_orth = 0."""
    penalties = {}
    for w_orth in (0.0, 1.0):
        method = make_method(tiny, w_orth=w_orth)
        train_steps(method, tiny[1], 50, 10 * PROJ_LR)
        penalties[w_orth] = max(orthogonality_penalty(p.weight).item() for p in method.projectors())
    assert penalties[0.0] > 5 * penalties[1.0]
