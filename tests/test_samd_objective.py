"""SAMD's objective (``SAMDLoss``): its terms on constructed batches, heads, passes and errors."""

from __future__ import annotations

import math

import pytest
import torch

from samd_common.losses import (
    SAMDLoss,
    SAMDParams,
    info_nce,
    pointwise_loss,
    prefix_pointwise_loss,
    relational_loss,
    span_attention_cka_loss,
    span_group_hidden_loss,
)
from samd_common.models import load_encoder
from samd_common.training.loop import TrainConfig, param_groups

TEXTS = ["A man is playing a guitar.", "The dog likes the movie", "Two kids lost my wallet!", "Hi"]
D_T, T_T = 48, 9
MATRYOSHKA = (48, 16)  # a Matryoshka teacher the tiny student (width 32) fits inside
DIMS = [32, 16]  # the tiny student's prefixes (the default min_dim 32 would keep only 32)


def make_batch(encoder, n_layers: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """A hand-built SAMD batch: real student tokens map proportionally onto real teacher tokens.

    Each teacher token that receives student tokens is one span group with them.
    """
    g = torch.Generator().manual_seed(seed)
    tok = encoder.tokenize(TEXTS)
    ids, mask = tok["input_ids"], tok["attention_mask"]
    b, t_s = ids.shape
    s_real = mask.bool().clone()
    s_real[:, 0] = False  # [CLS]
    s_real[torch.arange(b), mask.sum(1) - 1] = False  # [SEP]
    t_real = torch.ones(b, T_T, dtype=torch.bool)
    t_real[:, 0] = t_real[:, -1] = False  # <s>, </s>
    t_real[-1, 4:] = False  # last sample: shorter teacher sequence (padding)
    overlap = torch.zeros(b, t_s, T_T)
    s_group = torch.full((b, t_s), -1)
    t_group = torch.full((b, T_T), -1)
    for i in range(b):
        s_idx, t_idx = s_real[i].nonzero().flatten(), t_real[i].nonzero().flatten()
        for rank, j in enumerate(s_idx.tolist()):
            t = t_idx[rank * len(t_idx) // len(s_idx)].item()
            overlap[i, j, t] = 1 + rank % 3
            s_group[i, j] = t_group[i, t] = t
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "s_real": s_real,
        "t_real": t_real,
        "t_pooled": torch.randn(b, D_T, generator=g),
        "t_hidden": torch.randn(b, T_T, D_T, generator=g),
        "t_attn": torch.randn(b, n_layers, T_T, T_T, generator=g).softmax(-1),
        "overlap": overlap,
        "s_group": s_group,
        "t_group": t_group,
    }


def samd(student, **params) -> SAMDLoss:
    """SAMD around ``student`` against a Matryoshka teacher of width D_T, prefixes 32 and 16."""
    p = SAMDParams(**{"dims": DIMS, **params})
    return SAMDLoss(student, D_T, params=p, teacher_matryoshka_dims=MATRYOSHKA)


def test_params_from_dict_and_validation():
    assert SAMDParams.from_dict({"lambda_span": 0.5}).lambda_span == 0.5
    assert (SAMDParams().w_task, SAMDParams().w_kd, SAMDParams().use_sam) == (0.0, 0.5, False)
    with pytest.raises(ValueError, match="[Dd]id you mean 'lambda_span'"):
        SAMDParams.from_dict({"lambda_spn": 0.5})
    with pytest.raises(ValueError, match="target"):
        SAMDParams(target="teacher")
    with pytest.raises(ValueError, match="lambda_point"):
        SAMDParams(lambda_point=-1)
    with pytest.raises(ValueError, match="sam_every"):
        SAMDParams(sam_every=0)
    with pytest.raises(ValueError, match="span_distance"):
        SAMDParams(span_distance="l1")
    with pytest.raises(ValueError, match="span_norm only with span_distance='mse'"):
        SAMDParams(span_norm=True, span_distance="cosine")
    assert SAMDParams().resolve_dims(384) == [384, 192, 96, 48]


def test_default_loss_is_the_sum_of_its_terms_in_one_pass(student, forward_calls):
    """Default: ½·L_span + ½·L_unif in one pass; L_point and L_rel add their halves when on."""
    student.eval()  # deterministic: the hand computation sees the same embeddings
    loss_fn = samd(student)
    assert loss_fn.target == "prefix" and loss_fn.proj is None and loss_fn.dims == DIMS
    batch = make_batch(student)
    with torch.no_grad():
        out = student(batch["input_ids"], batch["attention_mask"])
    calls = forward_calls(student)
    loss, logs = loss_fn(batch, step=3, total_steps=10)
    assert len(calls) == 1  # no SimCSE by default: one student pass
    assert set(logs) == {"loss", "span", "unif"}  # L_point and L_rel off by default
    s, t = out["sentence_embedding"], batch["t_pooled"]
    b = batch
    span = span_group_hidden_loss(
        *(out["token_embeddings"], b["t_hidden"], b["s_group"], b["t_group"]),
        *(loss_fn.span_head, "mse"),
    )  # mse: SAMD's default span distance (dev finding 13)
    unif = info_nce(s, s, 0.07)
    assert loss.item() == pytest.approx(0.5 * (span + unif).item(), rel=1e-5)
    t = t - t.mean(0)  # centred; without a corpus mean, the batch's
    point = prefix_pointwise_loss(s, t, DIMS)
    rel, parts = relational_loss(s, t, DIMS)  # rel = 3·sim + resim
    for extra, term, logged in (
        ({"lambda_point": 1.0}, point, {"point": point}),
        ({"lambda_sim": 3.0, "lambda_resim": 1.0}, rel, parts),
    ):
        on = samd(student, **extra)
        on.span_head.load_state_dict(loss_fn.span_head.state_dict())  # same Q
        loss_on, logs_on = on(batch, step=3, total_steps=10)
        for name, value in logged.items():
            assert logs_on[name] == pytest.approx(value.item(), rel=1e-5), name
        assert (loss_on - loss).item() == pytest.approx(0.5 * term.item(), rel=1e-4)


def test_span_prefixes_sum_the_span_term_over_the_student_prefixes(student):
    """``span_prefixes``: one head Q_m per prefix m on h_s[..., :m]; L_span = Σ_m L_span(m)."""
    student.eval()
    batch = make_batch(student)
    loss_fn = samd(student, lambda_sim=0.0, lambda_resim=0.0, span_prefixes=True)
    assert [(q.in_features, q.out_features) for q in loss_fn.span_heads] == [(32, D_T), (16, D_T)]
    assert loss_fn.span_head is loss_fn.span_heads[0]
    with torch.no_grad():
        h_s = student(batch["input_ids"], batch["attention_mask"])["token_embeddings"]
        _, logs = loss_fn(batch, step=0, total_steps=1)
    b = batch
    by_hand = sum(
        span_group_hidden_loss(h_s[..., :m], b["t_hidden"], b["s_group"], b["t_group"], q, "mse")
        for m, q in zip(DIMS, loss_fn.span_heads, strict=True)
    )
    assert logs["span"] == pytest.approx(float(by_hand), rel=1e-5)
    # the full-width term alone (same Q on all 32 dims) is the sum's first part only
    plain = samd(student, lambda_sim=0.0, lambda_resim=0.0)
    plain.span_head.load_state_dict(loss_fn.span_head.state_dict())
    with torch.no_grad():
        _, logs_full = plain(batch, step=0, total_steps=1)
    assert logs["span"] > logs_full["span"] > 0
    assert len(samd(student, lambda_span=0.0).span_heads) == 0


def test_span_space_embedding_maps_the_span_targets_through_the_teacher_head(student):
    """``span_space="embedding"``: targets W·h_t ÷ rms singular value of W; needs a head."""
    student.eval()
    batch = make_batch(student)
    w = torch.randn(24, D_T)  # a teacher whose linear Dense head maps H_t = 48 to D_t = 24
    params = SAMDParams(dims=DIMS, lambda_sim=0.0, lambda_resim=0.0, span_space="embedding")
    loss_fn = SAMDLoss(student, 24, params=params, teacher_hidden_dim=D_T, teacher_head=w)
    assert loss_fn.span_head.out_features == 24  # Q maps onto the embedding's space
    rms = torch.linalg.svdvals(w).square().mean().sqrt()
    torch.testing.assert_close(loss_fn.span_map, w / rms)
    b = batch
    with torch.no_grad():
        h_s = student(b["input_ids"], b["attention_mask"])["token_embeddings"]
        _, logs = loss_fn(dict(b, t_pooled=torch.randn(len(TEXTS), 24)), step=0, total_steps=1)
        mapped = b["t_hidden"] @ (w / rms).T  # (B, T_t, 24)
        by_hand = span_group_hidden_loss(
            h_s, mapped, b["s_group"], b["t_group"], loss_fn.span_head, "mse"
        )
    assert logs["span"] == pytest.approx(float(by_hand), rel=1e-5)
    with pytest.raises(ValueError, match="linear Dense head"):
        SAMDLoss(student, 24, params=params, teacher_hidden_dim=D_T)
    with pytest.raises(ValueError, match=r"teacher_head must be \(D_t, 48\)"):
        SAMDLoss(student, 24, params=params, teacher_hidden_dim=D_T, teacher_head=w.T)
    with pytest.raises(ValueError, match="span_space"):
        SAMDParams(span_space="output")


def test_lstsq_head_init_fits_a_linear_teacher_exactly_before_training(student):
    """``head_init="lstsq"``: a teacher whose group states are A·(student group means) + c is
    fit by the warm start (L_span ≈ 0 before any step); ``random`` leaves the head as built."""
    student.eval()
    batch = make_batch(student)
    with torch.no_grad():
        h_s = student(batch["input_ids"], batch["attention_mask"])["token_embeddings"]
    g = torch.Generator().manual_seed(1)
    a, c = torch.randn(D_T, h_s.shape[-1], generator=g), torch.randn(D_T, generator=g)
    t_hidden = torch.zeros(len(TEXTS), T_T, D_T)
    for i in range(len(TEXTS)):  # every teacher token is its own span group in make_batch
        for t in batch["t_group"][i][batch["t_group"][i] >= 0].tolist():
            t_hidden[i, t] = a @ h_s[i][batch["s_group"][i] == t].mean(0) + c
    batch["t_hidden"] = t_hidden
    items = list(range(len(TEXTS)))  # the warm start reads them as one chunk of ≤ 64

    def collate(_: list) -> dict[str, torch.Tensor]:
        return batch

    fit = samd(student, lambda_sim=0.0, lambda_resim=0.0, head_init="lstsq")
    kept = samd(student, lambda_sim=0.0, lambda_resim=0.0)
    before = kept.span_head.weight.detach().clone()
    with torch.no_grad():
        _, start = fit(batch, step=0, total_steps=1)
        fit.warm_start(items, collate)
        kept.warm_start(items, collate)
        _, fitted = fit(batch, step=0, total_steps=1)
    assert fitted["span"] < 1e-3 * start["span"]  # the head already maps onto the teacher
    assert torch.equal(kept.span_head.weight, before)  # the default does not touch it
    with pytest.raises(ValueError, match="head_init"):
        SAMDParams(head_init="zeros")


def test_span_norm_divides_the_mse_span_term_by_the_teacher_variance(student):
    """``span_norm``: L_span ÷ the given σ̄²_t; without one, ÷ the batch's teacher states'."""
    student.eval()
    batch = make_batch(student)
    batch["t_hidden"] = 5.0 * batch["t_hidden"] + 2.0  # a teacher of another scale and offset
    plain = samd(student, lambda_sim=0.0, lambda_resim=0.0)
    given = SAMDLoss(
        student,
        D_T,
        params=SAMDParams(dims=DIMS, lambda_sim=0.0, lambda_resim=0.0, span_norm=True),
        teacher_hidden_var=4.0,
    )
    given.span_head.load_state_dict(plain.span_head.state_dict())  # same Q
    with torch.no_grad():
        _, raw = plain(batch, step=0, total_steps=1)
        _, normed = given(batch, step=0, total_steps=1)
        given.teacher_hidden_var = 0.0  # no corpus statistic: the batch's grouped tokens
        _, from_batch = given(batch, step=0, total_steps=1)
    assert normed["span"] == pytest.approx(raw["span"] / 4.0, rel=1e-6)
    grouped = batch["t_hidden"][batch["t_group"] >= 0]  # (N, D_T)
    var = grouped.var(0).mean().item()
    assert var == pytest.approx(25.0, rel=0.3)  # 5² · a unit normal's variance
    assert from_batch["span"] == pytest.approx(raw["span"] / var, rel=1e-5)
    with pytest.raises(ValueError, match="teacher_hidden_var"):
        SAMDLoss(student, D_T, params=SAMDParams(dims=DIMS), teacher_hidden_var=-1.0)


def test_targets_equal_to_the_student_give_zero(student):
    """Teacher = the student itself (prefix and span targets): every term is 0 (margin 0)."""
    student.eval()
    on = {"lambda_point": 1.0, "lambda_sim": 3.0, "lambda_resim": 1.0, "lambda_unif": 0.0}
    loss_fn = samd(student, dims=[32], margin=0.0, center=False, **on)
    batch = make_batch(student)
    with torch.no_grad():
        out = student(batch["input_ids"], batch["attention_mask"])
        s, h = out["sentence_embedding"], out["token_embeddings"]
        extra = torch.zeros(len(s), D_T - s.shape[1])  # zeros: S(t) equals S(s)
        batch["t_pooled"] = torch.cat([s, extra], 1)
        t_hidden = torch.zeros(len(s), T_T, D_T)
        for i in range(len(s)):  # one teacher token per group: its state = head(student mean)
            for t in range(T_T):
                group = batch["s_group"][i] == t
                if batch["t_group"][i, t] >= 0 and group.any():
                    t_hidden[i, t] = loss_fn.span_head(h[i][group].mean(0))
        batch["t_hidden"] = t_hidden
    _, logs = loss_fn(batch, step=0, total_steps=1)
    for term in ("point", "sim", "resim", "span", "loss"):
        assert logs[term] == pytest.approx(0.0, abs=1e-5), term


def test_one_step_trains_the_student_and_its_heads_which_are_not_the_student(student):
    loss_fn = samd(student)
    groups = param_groups(loss_fn, TrainConfig(lr=1e-3, proj_lr=1e-3))
    assert [len(g["params"]) for g in groups] == [len(list(student.parameters())), 2]
    assert {id(q) for q in groups[1]["params"]} == {id(q) for q in loss_fn.span_head.parameters()}
    student_ids = {id(q) for q in student.parameters()}
    assert not student_ids & {id(q) for q in loss_fn.span_head.parameters()}  # never saved
    opt = torch.optim.AdamW(groups)
    head_before = loss_fn.span_head.weight.detach().clone()
    before = {k: v.detach().clone() for k, v in student.named_parameters()}
    loss, _ = loss_fn(make_batch(student), step=0, total_steps=10)
    loss.backward()
    opt.step()
    assert not torch.equal(loss_fn.span_head.weight, head_before)
    changed = [k for k, v in student.named_parameters() if not torch.equal(v, before[k])]
    assert any("attention" in k for k in changed) and any("embeddings" in k for k in changed)


def test_projection_target_for_a_teacher_that_is_not_matryoshka(student):
    student.eval()
    params = SAMDParams(dims=DIMS, lambda_point=1.0)
    loss_fn = SAMDLoss(student, D_T, params=params)  # no Matryoshka dims
    assert loss_fn.target == "projection" and loss_fn.proj.in_features == student.dim
    assert loss_fn.proj.out_features == D_T  # student-side: D_s → D_t
    batch = make_batch(student)
    s = student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
    _, logs = loss_fn(batch, step=0, total_steps=1)
    t = batch["t_pooled"]
    want = pointwise_loss(loss_fn.proj(s), t - t.mean(0))
    assert logs["point"] == pytest.approx(want.item(), rel=1e-5)


def test_targets_are_centred_with_the_corpus_mean(student):
    """``center``: t − μ_t with the given corpus mean (else the batch's); off: the raw t."""
    student.eval()
    batch = make_batch(student)
    t, mean = batch["t_pooled"], torch.randn(D_T)
    params = SAMDParams(dims=DIMS, lambda_point=1.0)
    given = SAMDLoss(
        student, D_T, params=params, teacher_matryoshka_dims=MATRYOSHKA, teacher_mean=mean.tolist()
    )
    assert torch.allclose(given.targets(t), t - mean)
    assert torch.allclose(samd(student).targets(t), t - t.mean(0))
    assert torch.equal(samd(student, center=False).targets(t), t)
    s = student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
    _, logs = given(batch, step=0, total_steps=1)
    want = prefix_pointwise_loss(s, t - mean, DIMS)  # a prefix of t − μ is centred as well
    assert given.target == "prefix" and logs["point"] == pytest.approx(want.item(), rel=1e-5)
    with pytest.raises(ValueError, match="teacher_mean has 3 values"):
        SAMDLoss(student, D_T, params=SAMDParams(dims=DIMS), teacher_mean=[0.0, 1.0, 2.0])


def test_switched_off_terms_are_neither_computed_nor_read(student):
    off = {"lambda_span": 0.0, "lambda_unif": 0.0, "w_kd": 1.0}
    loss_fn = samd(student, **off, lambda_sim=0.0, lambda_resim=0.0, lambda_point=1.0)
    assert loss_fn.span_head is None
    batch = {k: v for k, v in make_batch(student).items() if k not in ("t_hidden", "s_group")}
    _, logs = loss_fn(batch, step=0, total_steps=1)  # the span keys are not needed
    assert set(logs) == {"loss", "point"} and logs["loss"] == pytest.approx(logs["point"])


def test_simcse_and_attention_options(student, forward_calls):
    """``w_task > 0`` adds the second pass; ``use_sam`` asks for attention on its steps only."""
    student.eval()
    loss_fn = samd(student, w_task=0.5, use_sam=True, sam_every=2, min_conf=0.0)
    batch = make_batch(student)
    calls = forward_calls(student)
    for step, due in ((0, True), (1, False), (2, True)):
        calls.clear()
        _, logs = loss_fn(batch, step=step, total_steps=10)
        assert len(calls) == 2 and "task" in logs
        assert calls[0].get("output_attentions", False) is due and ("sam" in logs) is due
    with torch.no_grad():
        att = student(batch["input_ids"], batch["attention_mask"], output_attentions=True)
    b = batch
    want = span_attention_cka_loss(
        att["attentions"][-1].mean(1), b["t_attn"][:, -1], b["overlap"], b["s_real"], b["t_real"]
    )
    _, logs = loss_fn(batch, step=0, total_steps=10)
    assert logs["sam"] == pytest.approx(want.item(), rel=1e-4)


def test_unif_is_simcse_infonce_with_the_first_pass_as_its_positive(student, forward_calls):
    """``lambda_unif``: one pass; L_unif = InfoNCE(s, s); it pushes near-duplicates apart."""
    student.eval()
    loss_fn = samd(student, w_kd=1.0, lambda_unif=2.0, temperature=0.1)
    batch = make_batch(student)
    calls = forward_calls(student)
    loss, logs = loss_fn(batch, step=0, total_steps=1)
    assert len(calls) == 1 and set(logs) == {"loss", "span", "unif"}
    with torch.no_grad():
        s = student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
    s = s / s.norm(dim=-1, keepdim=True)
    want = (torch.logsumexp(s @ s.T / 0.1, dim=1) - 1 / 0.1).mean()  # the positive: cos = 1
    assert logs["unif"] == pytest.approx(want.item(), rel=1e-5)
    assert loss.item() == pytest.approx(logs["span"] + 2.0 * logs["unif"], rel=1e-5)
    eye = torch.eye(4)  # orthonormal rows: log(1 + (B − 1)·e^(−1/τ)), a known answer
    assert info_nce(eye, eye, 0.5).item() == pytest.approx(math.log(1 + 3 * math.exp(-2)))
    x = torch.tensor([[1.0, 0.1, 0.0], [1.0, 0.0, 0.1], [0.0, 0.0, 1.0]], requires_grad=True)
    info_nce(x, x, 0.1).backward()  # one gradient step moves the two near-duplicates apart
    with torch.no_grad():
        y = x - 0.05 * x.grad
        cos = torch.nn.functional.cosine_similarity
        assert cos(y[0], y[1], dim=0) < cos(x[0], x[1], dim=0)
    with pytest.raises(ValueError, match="lambda_unif"):
        SAMDParams(lambda_unif=-1.0)


def test_unif_prefixes_sum_l_unif_over_the_student_prefixes(student):
    """``unif_prefixes``: L_unif = Σ_m InfoNCE(s_{:m}, s_{:m}), each prefix renormalised."""
    student.eval()
    loss_fn = samd(student, unif_prefixes=True)  # L_unif on, L_rel off: SAMD's defaults
    batch = make_batch(student)
    with torch.no_grad():
        s = student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
        _, logs = loss_fn(batch, step=0, total_steps=1)
    by_hand = 0.0
    for m in DIMS:
        u = s[:, :m] / s[:, :m].norm(dim=-1, keepdim=True)
        by_hand += (torch.logsumexp(u @ u.T / 0.07, dim=1) - 1 / 0.07).mean().item()
    assert loss_fn.params.temperature == 0.07 and len(DIMS) == 2  # the default τ
    assert logs["unif"] == pytest.approx(by_hand, rel=1e-5)
    full_only = samd(student)
    with torch.no_grad():
        _, logs_full = full_only(batch, step=0, total_steps=1)
    assert logs["unif"] > logs_full["unif"]  # the smaller prefix adds its own term


def test_bf16_autocast_with_an_fp16_cache(student):
    loss_fn = samd(student, use_sam=True, layers=2, sam_every=1)
    loss_fn.teacher_layers = 3
    batch = make_batch(student, n_layers=3)
    batch = {k: v.half() if v.is_floating_point() else v for k, v in batch.items()}  # fp16 cache
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logs = loss_fn(batch, step=0, total_steps=10)
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in logs.values())
    loss.backward()
    assert all(torch.isfinite(q.grad).all() for q in loss_fn.parameters() if q.grad is not None)


def test_samd_loss_boundary_errors(student, tiny_dirs):
    sdpa = load_encoder(str(tiny_dirs["student"]), device="cpu")
    samd(sdpa)  # the default needs no attention maps
    with pytest.raises(ValueError, match="eager"):
        samd(sdpa, use_sam=True)
    with pytest.raises(ValueError, match="layers"):
        samd(student, use_sam=True, layers=5)
    with pytest.raises(ValueError, match="exceed"):
        samd(student, dims=[64, 32])
    with pytest.raises(ValueError, match="target='projection'"):
        SAMDLoss(student, 16, params=SAMDParams(target="prefix", dims=DIMS))
    loss_fn, batch = samd(student), make_batch(student)
    with pytest.raises(KeyError, match="s_group"):
        loss_fn({k: v for k, v in batch.items() if k != "s_group"}, step=0, total_steps=10)
    with pytest.raises(ValueError, match="teacher_dim"):
        loss_fn({**batch, "t_pooled": batch["t_pooled"][:, :40]}, step=0, total_steps=10)
    with pytest.raises(ValueError, match="total_steps"):
        loss_fn(batch, step=0, total_steps=0)
