from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from samd_common.config import halving_dims
from samd_common.losses import (
    coverage_confidence,
    info_nce,
    inverse_sqrt_weights,
    linear_cka,
    linear_ramp,
    matryoshka_distillation_loss,
    matryoshka_info_nce,
    mrd_dims,
    row_normalize,
    span_attention_cka_loss,
    span_group_hidden_loss,
)

TEXTS = ["A man is playing a guitar.", "The dog likes the movie", "Two kids lost my wallet!", "Hi"]
D_T, T_T = 48, 9


# ---------------------------------------------------------------- fixtures and helpers


def reference_sam(att_s, att_t, overlap, s_real, t_real, top_frac=0.25, min_tokens=2, min_conf=0.3):
    """Straightforward per-sample loop version of L_SAM (the spec, written plainly)."""
    losses = []
    for b in range(att_s.shape[0]):
        sr, tr = s_real[b], t_real[b]
        o = overlap[b] * sr[:, None] * tr[None, :]
        a = o / o.sum(-1, keepdim=True).clamp_min(1e-12)
        p = a @ att_t[b] @ a.T
        c_s = ((o.sum(1) > 0) & sr).sum() / max(int(sr.sum()), 1)
        c_t = ((o.sum(0) > 0) & tr).sum() / max(int(tr.sum()), 1)
        conf, n = min(float(c_s), float(c_t)), int(sr.sum())
        if conf < min_conf or n < min_tokens:
            continue
        real = sr.nonzero().flatten()
        imp = p[real][:, real].sum(0)
        k = min(n, max(min_tokens, math.ceil(top_frac * n)))
        sel = real[imp.argsort(descending=True, stable=True)[:k]]
        cka = linear_cka(att_s[b][sel][:, sel], p[sel][:, sel])
        losses.append((1 - cka) * conf)
    return torch.stack(losses).mean() if losses else torch.tensor(0.0)


def random_sam_inputs(b=5, t_s=8, t_t=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    att_s = torch.randn(b, t_s, t_s, generator=g).softmax(-1).requires_grad_()
    att_t = torch.randn(b, t_t, t_t, generator=g).softmax(-1)
    overlap = (torch.rand(b, t_s, t_t, generator=g) > 0.6).float() * 3
    s_real = torch.rand(b, t_s, generator=g) > 0.2
    t_real = torch.rand(b, t_t, generator=g) > 0.2
    return att_s, att_t, overlap, s_real, t_real


# ---------------------------------------------------------------- common.py


def test_info_nce_known_values_and_checks():
    x = torch.eye(4, 8)
    assert info_nce(x, x, temperature=0.01).item() == pytest.approx(0.0, abs=1e-6)
    assert info_nce(x, x.roll(1, 0), temperature=0.01).item() > 50  # positives orthogonal
    a, b = torch.randn(6, 16), torch.randn(6, 16)
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.07
    expected = -(logits.diag() - logits.logsumexp(-1)).mean()
    assert info_nce(a, b).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        info_nce(a, b[:, :8])
    with pytest.raises(ValueError, match="temperature"):
        info_nce(a, b, temperature=0)


def test_matryoshka_info_nce_is_weighted_sum():
    a, b = torch.randn(6, 32), torch.randn(6, 32)
    got = matryoshka_info_nce(a, b, [8, 32], weights=[0.5, 2.0])
    want = 0.5 * info_nce(a[:, :8], b[:, :8]) + 2 * info_nce(a, b)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert matryoshka_info_nce(a, b, [16]).item() == pytest.approx(
        info_nce(a[:, :16], b[:, :16]).item()
    )
    with pytest.raises(ValueError, match="exceed"):
        matryoshka_info_nce(a, b, [64])


def test_dims_helpers():
    assert halving_dims(768) == [768, 384, 192, 96, 48, 24]
    assert halving_dims(768, minimum=32) == [768, 384, 192, 96, 48]
    assert halving_dims(312) == [312, 156, 78, 39, 19]
    assert halving_dims(20) == [20]
    assert mrd_dims(768) == [64, 128, 256, 384, 512, 768]
    assert mrd_dims(312) == [64, 128, 256, 312]
    assert mrd_dims(32) == [32]
    w = inverse_sqrt_weights([64, 256])
    assert sum(w) == pytest.approx(1.0) and w[0] == pytest.approx(2 * w[1])
    with pytest.raises(ValueError):
        halving_dims(0)
    with pytest.raises(ValueError):
        inverse_sqrt_weights([])


def test_matryoshka_distillation_loss_zero_positive_symmetric_and_checks():
    s, t = torch.randn(4, 32), torch.randn(4, 48)
    dims, w = [8, 16, 32], inverse_sqrt_weights([8, 16, 32])
    assert matryoshka_distillation_loss(s, s, dims, w).item() == pytest.approx(0.0, abs=1e-6)
    assert matryoshka_distillation_loss(s, torch.cat([s, t[:, 32:]], 1), dims, w).item() == (
        pytest.approx(0.0, abs=1e-6)
    )
    loss = matryoshka_distillation_loss(s, t[:, :32], dims, w)
    assert loss.item() > 0
    assert loss.item() == pytest.approx(matryoshka_distillation_loss(t[:, :32], s, dims, w).item())
    assert matryoshka_distillation_loss(s, t, [32, 8], [1.0, 0.0]).shape == ()  # any order
    with pytest.raises(ValueError, match="exceed"):
        matryoshka_distillation_loss(s, t, [8, 40], [0.5, 0.5])
    with pytest.raises(ValueError, match="one weight per"):
        matryoshka_distillation_loss(s, t, [8, 16], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        matryoshka_distillation_loss(s, t, [8, 16], [1.0, -0.5])
    with pytest.raises(ValueError, match="same B"):
        matryoshka_distillation_loss(s, t[:3], [8], [1.0])


@pytest.mark.parametrize("n,p", [(10, 4), (4, 10)])  # feature form and Gram form
def test_linear_cka_properties(n, p):
    torch.manual_seed(0)
    x, y = torch.randn(n, p), torch.randn(n, p + 3)
    q, _ = torch.linalg.qr(torch.randn(p, p))
    for other in (x, 1e-3 * x, 1e3 * x, x @ q, x + 5.0):
        assert linear_cka(x, other).item() == pytest.approx(1.0, abs=1e-5)
    xc, yc = x - x.mean(0), y - y.mean(0)
    want = (yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
    assert linear_cka(x, y).item() == pytest.approx(want.item(), rel=1e-4)
    for _ in range(5):
        v = linear_cka(torch.randn(n, p), torch.randn(n, 2 * p)).item()
        assert -1e-6 <= v <= 1 + 1e-6


def test_linear_cka_dtype_batch_mask_and_degenerate():
    x = torch.randn(3, 6, 5)
    out = linear_cka(x.bfloat16(), x.bfloat16())
    assert out.dtype == torch.float32 and out.shape == (3,)
    assert torch.allclose(out, torch.ones(3), atol=1e-5)
    mask = torch.tensor([True, True, False, True, False, True])
    y = torch.randn(6, 5)
    got = linear_cka(x[0] * 1.0, y, row_mask=mask)
    assert got.item() == pytest.approx(linear_cka(x[0][mask], y[mask]).item(), rel=1e-5)
    const = torch.ones(6, 5, requires_grad=True)
    v = linear_cka(const, y)
    v.backward()
    assert v.item() == 0.0 and torch.isfinite(const.grad).all()
    with pytest.raises(ValueError, match="same n"):
        linear_cka(torch.randn(5, 3), torch.randn(6, 3))


def test_row_normalize_and_coverage_confidence():
    o = torch.tensor([[[2.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]])
    a = row_normalize(o)
    assert torch.allclose(a.sum(-1), torch.tensor([[1.0, 0.0, 1.0]]))
    assert a[0, 0, 0].item() == 0.5
    s_real = torch.tensor([[True, True, True]])
    t_real = torch.tensor([[True, True, True]])
    # student: 2/3 covered; teacher: 3/3 covered
    assert coverage_confidence(o, s_real, t_real).tolist() == pytest.approx([2 / 3])
    s_real = torch.tensor([[True, False, True]])  # the uncovered token is not real
    assert coverage_confidence(o, s_real, t_real).tolist() == pytest.approx([1.0])
    empty = coverage_confidence(o, torch.zeros(1, 3, dtype=torch.bool), t_real)
    assert empty.tolist() == [0.0]
    with pytest.raises(ValueError, match="T_s, T_t"):
        coverage_confidence(o, s_real[:, :2], t_real)


def test_linear_ramp():
    assert linear_ramp(0.05, 0.1, 0.2) == 0.0
    assert linear_ramp(0.2, 0.1, 0.2) == pytest.approx(0.5)
    assert linear_ramp(0.9, 0.1, 0.2, end_value=0.02) == pytest.approx(0.02)
    assert linear_ramp(0.1, 0.1, 0.0) == 1.0 and linear_ramp(0.099, 0.1, 0.0) == 0.0
    with pytest.raises(ValueError):
        linear_ramp(0.5, 0.0, -1.0)


# ---------------------------------------------------------------- span terms


def test_span_cka_zero_for_identical_attention_and_identity_overlap():
    att = torch.randn(3, 7, 7).softmax(-1)
    s_real = torch.ones(3, 7, dtype=torch.bool)
    s_real[:, 0] = s_real[:, -1] = False
    s_real[2, 4:] = False  # padded sample
    overlap = torch.eye(7).expand(3, 7, 7) * 4
    loss = span_attention_cka_loss(att, att, overlap, s_real, s_real)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)


def test_span_cka_matches_reference_loop():
    for seed in range(4):
        args = random_sam_inputs(seed=seed)
        got = span_attention_cka_loss(*args)
        want = reference_sam(args[0].detach(), *args[1:])
        assert got.item() == pytest.approx(want.item(), abs=1e-5)
        got = span_attention_cka_loss(*args, top_frac=0.6, min_tokens=3, min_conf=0.1)
        want = reference_sam(args[0].detach(), *args[1:], 0.6, 3, 0.1)
        assert got.item() == pytest.approx(want.item(), abs=1e-5)


def test_span_cka_skips_low_confidence_exactly():
    att_s, att_t, overlap, s_real, t_real = random_sam_inputs(b=3)
    sparse = torch.zeros_like(overlap)
    sparse[:, 1, 1] = 1.0  # one aligned token: conf ≤ 1/6 < 0.3 everywhere
    loss = span_attention_cka_loss(att_s, att_t, sparse, s_real, s_real[:, :7] | True)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.isfinite(att_s.grad).all() and att_s.grad.abs().sum() == 0
    # mixing a skipped sample into a batch does not change the mean over kept samples
    dense = torch.ones_like(overlap)
    mixed = torch.stack([dense[0], sparse[1]])
    both = span_attention_cka_loss(att_s[:2], att_t[:2], mixed, s_real[:2], t_real[:2])
    alone = span_attention_cka_loss(att_s[:1], att_t[:1], dense[:1], s_real[:1], t_real[:1])
    assert both.item() == pytest.approx(alone.item(), abs=1e-6) and alone.item() > 0


def test_span_cka_min_tokens_padding_and_empty_rows_are_finite():
    att_s, att_t, overlap, s_real, t_real = random_sam_inputs(b=4)
    overlap = torch.ones_like(overlap)
    overlap[0, 3] = 0  # a real student token without any overlap (empty alignment row)
    s_real[1] = False
    s_real[1, 2] = True  # one real token: fewer than min_tokens → skipped
    s_real[2] = False  # all padding
    overlap[3] = 0  # no alignment at all
    loss = span_attention_cka_loss(att_s, att_t, overlap, s_real, t_real, min_conf=0.0)
    want = reference_sam(att_s.detach(), att_t, overlap, s_real, t_real, min_conf=0.0)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(want.item(), abs=1e-5)
    loss.backward()
    assert torch.isfinite(att_s.grad).all()
    assert att_s.grad[1:3].abs().sum() == 0  # skipped samples get no gradient
    # top-25 % of 3 real tokens still keeps min_tokens=2 (a 1-token CKA would be degenerate)
    s3 = torch.zeros(1, 8, dtype=torch.bool)
    s3[0, 1:4] = True
    one = span_attention_cka_loss(att_s[:1], att_t[:1], torch.ones(1, 8, 7), s3, t_real[:1])
    ref = reference_sam(att_s[:1].detach(), att_t[:1], torch.ones(1, 8, 7), s3, t_real[:1])
    assert one.item() == pytest.approx(ref.item(), abs=1e-6) and one.item() > 0


def test_span_cka_gradients_and_checks():
    att_s, att_t, overlap, s_real, t_real = random_sam_inputs(seed=3)
    span_attention_cka_loss(att_s, att_t, overlap, s_real, t_real, min_conf=0.0).backward()
    assert torch.isfinite(att_s.grad).all() and att_s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="head-average"):
        span_attention_cka_loss(att_s[:, None], att_t, overlap, s_real, t_real)
    with pytest.raises(ValueError, match="top_frac"):
        span_attention_cka_loss(att_s, att_t, overlap, s_real, t_real, top_frac=0)


def test_span_group_hidden_loss():
    h_s = torch.randn(2, 5, 8, requires_grad=True)
    s_group = torch.tensor([[-1, 0, 0, 1, -1], [-1, 0, 1, 2, -1]])
    t_group = torch.tensor([[-1, 0, 1, -1], [0, 1, 2, -1]])
    h_t = torch.zeros(2, 4, 8)  # teacher states equal to the student group means
    for b in range(2):
        for i in range(4):
            if t_group[b, i] >= 0:
                h_t[b, i] = h_s[b][s_group[b] == t_group[b, i]].mean(0).detach()
    assert span_group_hidden_loss(h_s, h_t, s_group, t_group).item() == pytest.approx(0, abs=1e-6)
    h_t2 = torch.randn(2, 4, 8)
    loss = span_group_hidden_loss(h_s, h_t2, s_group, t_group)
    want = [
        1
        - F.cosine_similarity(h_s[b][s_group[b] == g].mean(0), h_t2[b][t_group[b] == g].mean(0), 0)
        for b, n in ((0, 2), (1, 3))
        for g in range(n)
    ]
    assert loss.item() == pytest.approx(torch.stack(want).mean().item(), abs=1e-5)
    loss.backward()
    assert torch.isfinite(h_s.grad).all()
    none = span_group_hidden_loss(h_s, h_t2, torch.full((2, 5), -1), torch.full((2, 4), -1))
    assert none.item() == 0.0 and none.requires_grad
    with pytest.raises(ValueError, match="pass a head"):
        span_group_hidden_loss(h_s, torch.randn(2, 4, 3), s_group, t_group)
    with pytest.raises(ValueError, match="Expected h_s"):
        span_group_hidden_loss(h_s[:1], h_t2, s_group, t_group)


def test_span_group_hidden_loss_mse_distance():
    """``distance="mse"``: mean over groups of the squared gap of the group means, per dim."""
    g = torch.Generator().manual_seed(7)
    h_s = torch.randn(2, 5, 8, generator=g).requires_grad_()
    s_group = torch.tensor([[-1, 0, 0, 1, -1], [-1, 0, 1, 2, -1]])
    t_group = torch.tensor([[-1, 0, 1, -1], [0, 1, 2, -1]])
    h_t = torch.randn(2, 4, 8, generator=g)
    loss = span_group_hidden_loss(h_s, h_t, s_group, t_group, distance="mse")
    want = [
        (h_s[b][s_group[b] == gr].mean(0) - h_t[b][t_group[b] == gr].mean(0)).pow(2).mean()
        for b, n in ((0, 2), (1, 3))
        for gr in range(n)
    ]
    assert loss.item() == pytest.approx(torch.stack(want).mean().item(), abs=1e-5)
    # unlike the cosine, the squared gap sees the scale: teacher states 3× the student's group
    # means are a perfect cosine match but an MSE of mean((2·mean)²)
    h_t3 = torch.zeros(2, 4, 8)
    for b in range(2):
        for i in range(4):
            if t_group[b, i] >= 0:
                h_t3[b, i] = 3 * h_s[b][s_group[b] == t_group[b, i]].mean(0).detach()
    cos = span_group_hidden_loss(h_s, h_t3, s_group, t_group)
    mse = span_group_hidden_loss(h_s, h_t3, s_group, t_group, distance="mse")
    want3 = torch.stack(
        [
            (2 * h_t3[b][t_group[b] == gr].mean(0) / 3).pow(2).mean()
            for b, n in ((0, 2), (1, 3))
            for gr in range(n)
        ]
    ).mean()
    assert cos.item() == pytest.approx(0, abs=1e-6)
    assert mse.item() == pytest.approx(want3.item(), rel=1e-5)
    loss.backward()
    assert h_s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="distance"):
        span_group_hidden_loss(h_s, h_t, s_group, t_group, distance="l1")


def test_span_group_hidden_loss_through_a_student_side_head():
    g = torch.Generator().manual_seed(5)
    h_s = torch.randn(2, 5, 8, generator=g).requires_grad_()
    s_group = torch.tensor([[-1, 0, 0, 1, -1], [-1, 0, 1, 2, -1]])
    t_group = torch.tensor([[-1, 0, 1, -1], [0, 1, 2, -1]])
    head = torch.nn.Linear(8, 12)
    h_t = torch.randn(2, 4, 12, generator=g)
    loss = span_group_hidden_loss(h_s, h_t, s_group, t_group, head)
    want = [
        1
        - F.cosine_similarity(
            head(h_s[b][s_group[b] == gr].mean(0)), h_t[b][t_group[b] == gr].mean(0), 0
        )
        for b, n in ((0, 2), (1, 3))
        for gr in range(n)
    ]
    assert loss.item() == pytest.approx(torch.stack(want).mean().item(), abs=1e-5)
    loss.backward()  # the gradient reaches the student states and the head, not the teacher
    assert h_s.grad.abs().sum() > 0 and head.weight.grad.abs().sum() > 0
