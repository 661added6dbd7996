"""Token-level CTKD baselines: MinED (FuseLLM), CDM (contextual DTW) and EMO (CKA + OT).

Covers the string maps the dataset computes once per text, the batched DTW and its merged
steps, the POT transport plans and their gradient path, and the three loss modules on tiny
models with two different tokenizers (WordPiece student, Unigram teacher).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from samd_common import alignment
from samd_common.alignment import (
    batch_dtw_groups,
    dtw_path,
    min_edit_distance_alignment,
    normalize_token,
    path_groups,
    surface_strings,
    text_pair_maps,
)
from samd_common.data.demo import synthetic_sentences
from samd_common.losses.cdm import (
    CDMLoss,
    CDMParams,
    attention_entropy_weights,
    contextual_dtw_groups,
    merged_step_loss,
)
from samd_common.losses.emo import (
    EMOLoss,
    EMOParams,
    attention_importance,
    importance_ot_loss,
    mapped_attention_cka_loss,
    ot_cost_matrix,
    sinkhorn_plans,
)
from samd_common.losses.mined import MinEDLoss, MinEDParams, mined_hidden_loss
from samd_common.models import load_encoder
from samd_common.training.batching import DistillDataset
from samd_common.training.loop import TrainConfig, param_groups
from samd_common.training.teacher_cache import build_teacher_cache

TEXTS = synthetic_sentences(12, seed=5)
MAPS = ("mined", "mined_reciprocal", "ned")
LOSSES = {"MinED": MinEDLoss, "CDM": CDMLoss, "EMO": EMOLoss}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data(tiny_dirs, tmp_path_factory, _student):
    teacher = load_encoder(str(tiny_dirs["teacher"]), device="cpu", attn_implementation="eager")
    cache = build_teacher_cache(
        teacher, TEXTS, 32, cache_dir=tmp_path_factory.mktemp("cache"), show_progress=False
    )
    ds = DistillDataset(TEXTS, _student.tokenizer, 32, cache=cache, maps=MAPS)
    return ds, cache


@pytest.fixture
def batch(data):
    ds, _ = data
    return ds.collate([ds[i] for i in range(6)])


def without_alignments(batch: dict, rows: list[int]) -> dict:
    """A copy of ``batch`` in which the given texts have nothing aligned (empty maps)."""
    out = {k: v.clone() for k, v in batch.items()}
    for key in ("mined_pairs", "mined_reciprocal_pairs"):
        out[key][rows] = -1
    out["s_lexical"][rows] = False
    out["t_lexical"][rows] = False
    return out


# ---------------------------------------------------------------- string maps (MinED)


def test_min_ed_keeps_only_one_to_one_equal_strings():
    s = ["[CLS]", "the", "play", "##ing", "dog", "ran", "[SEP]"]
    t = ["<s>", "▁The", "▁playing", "▁dog", "▁runs", "</s>"]
    s = ["" if x.startswith("[") else x for x in s]  # non-real positions are ""
    t = ["" if x.startswith("<") else x for x in t]
    # "play"+"##ing" both meet "▁playing" (many-to-one: dropped); "ran"/"▁runs" differ.
    assert min_edit_distance_alignment(s, t) == [(1, 1), (4, 3)]
    assert text_pair_maps(s, t, ("mined",))["mined"].tolist() == [[1, 1], [4, 3]]
    # reciprocal: mutual best matches with equal strings only
    assert min_edit_distance_alignment(["ab", "c", "ab"], ["ab", "x"], reciprocal=True) == [(0, 0)]
    assert text_pair_maps(["a"], [""], ("mined", "mined_reciprocal"))["mined"].shape == (0, 2)
    with pytest.raises(ValueError, match="unknown string map"):
        text_pair_maps(s, t, ("minde",))


def test_surface_strings_and_ned_map():
    text = "Café au lait"
    spans = np.array([[0, 0], [0, 4], [5, 7], [8, 12], [0, 0]])
    real = np.array([False, True, True, True, False])
    assert surface_strings(text, spans, real) == ["", "Café", "au", "lait", ""]
    maps = text_pair_maps(["", "café", "au"], ["▁Caf", "é", ""], ("ned",))
    assert maps["s_lexical"].tolist() == [False, True, True]
    assert maps["t_lexical"].tolist() == [True, True, False]
    assert maps["ned"].shape == (3, 3) and maps["ned"].dtype == np.float16
    assert maps["ned"][1, 0] == pytest.approx(0.25, abs=1e-3)  # café vs caf: 1 edit / 4
    assert maps["ned"][0].tolist() == [0, 0, 0] and maps["ned"][:, 2].tolist() == [0, 0, 0]


def test_dataset_maps_once_per_text_and_padded(data, student, monkeypatch):
    _, cache = data
    ds = DistillDataset(TEXTS, student.tokenizer, 32, cache=cache, maps=MAPS)
    calls = []
    real = alignment.text_pair_maps

    def spy(s, t, maps):
        calls.append(1)
        return real(s, t, maps)

    monkeypatch.setattr("samd_common.training.batching.text_pair_maps", spy)
    for _epoch in range(3):
        b = ds.collate([ds[i] for i in range(len(TEXTS))])
    assert len(calls) == len(TEXTS)  # memoised per dataset index
    n, t_s, t_t = len(TEXTS), b["input_ids"].shape[1], b["t_input_ids"].shape[1]
    assert b["ned"].shape == (n, t_s, t_t) and b["s_lexical"].shape == (n, t_s)
    for key in ("mined_pairs", "mined_reciprocal_pairs"):
        pairs = b[key]
        assert pairs.dtype == torch.long and pairs.shape[0] == n and pairs.shape[2] == 2
        for row in range(n):
            item = ds[row]
            s_str = surface_strings(TEXTS[row], item["spans"], item["real"])
            t_str = surface_strings(TEXTS[row], item["t_spans"], item["t_real"])
            valid = pairs[row, :, 0] >= 0
            assert (pairs[row][~valid] == -1).all()
            js, is_ = pairs[row][valid, 0].tolist(), pairs[row][valid, 1].tolist()
            assert len(set(js)) == len(js) and len(set(is_)) == len(is_)  # one-to-one
            for j, i in zip(js, is_, strict=True):
                assert b["s_real"][row, j] and b["t_real"][row, i]
                assert normalize_token(s_str[j]) == normalize_token(t_str[i]) != ""
    assert (b["mined_pairs"][..., 0] >= 0).any()  # the tiny texts do share words
    with pytest.raises(ValueError, match="choose names"):
        DistillDataset(TEXTS, student.tokenizer, 32, cache=cache, maps=("cdm",))
    with pytest.raises(ValueError, match="teacher cache"):
        DistillDataset(TEXTS, student.tokenizer, 32, maps=("mined",))


# ---------------------------------------------------------------- DTW and CDM


@pytest.mark.parametrize("integer", [False, True])  # integer costs exercise the tie rule
def test_batch_dtw_groups_match_per_sample_reference(integer):
    rng = np.random.default_rng(int(integer))
    for _ in range(40):
        b, t_s, t_t = 3, int(rng.integers(1, 8)), int(rng.integers(1, 8))
        cost = rng.integers(0, 3, (b, t_s, t_t)) if integer else rng.random((b, t_s, t_t))
        s_mask, t_mask = rng.random((b, t_s)) > 0.3, rng.random((b, t_t)) > 0.3
        s_gid, t_gid = batch_dtw_groups(cost, s_mask, t_mask)
        for k in range(b):
            si, ti = np.nonzero(s_mask[k])[0], np.nonzero(t_mask[k])[0]
            want_s, want_t = np.full(t_s, -1), np.full(t_t, -1)
            if len(si) and len(ti):
                path = dtw_path(cost[k][np.ix_(si, ti)])
                want_s[si], want_t[ti] = path_groups(path, len(si), len(ti))
            assert s_gid[k].tolist() == want_s.tolist() and t_gid[k].tolist() == want_t.tolist()


def test_cdm_merges_many_to_one_runs():
    s, t = ["play", "ing", "dog"], ["▁playing", "▁dog"]
    ned = torch.from_numpy(text_pair_maps(s, t, ("ned",))["ned"].astype(np.float32))[None]
    on_s, on_t = torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool)
    s_group, t_group = contextual_dtw_groups(ned, on_s, on_t)
    assert s_group.tolist() == [[0, 0, 1]] and t_group.tolist() == [[0, 1]]
    h_s, h_t = torch.randn(1, 3, 4, requires_grad=True), torch.randn(1, 2, 4)
    loss = merged_step_loss(h_s, h_t, s_group, t_group)
    want = ((h_s[0, :2].mean(0) - h_t[0, 0]) ** 2).mean() + ((h_s[0, 2] - h_t[0, 1]) ** 2).mean()
    assert loss.item() == pytest.approx(want.item() / 2, rel=1e-5)
    cos = merged_step_loss(h_s, h_t, s_group, t_group, distance="cosine")
    assert 0 <= cos.item() <= 2
    loss.backward()
    assert h_s.grad.abs().sum() > 0


def test_cdm_contextual_weights_change_the_path():
    # "q" must join "x" or "y": equal plain costs, so the weights decide.
    ned = torch.tensor([[[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]])  # students x, y; teachers x, q, y
    on_s, on_t = torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool)
    plain = contextual_dtw_groups(ned, on_s, on_t)
    y_sure = contextual_dtw_groups(ned, on_s, on_t, w_s=torch.tensor([[1.0, 0.1]]))
    x_sure = contextual_dtw_groups(ned, on_s, on_t, w_s=torch.tensor([[0.1, 1.0]]))
    assert plain[1].tolist() == [[0, 0, 1]]  # tie → diagonal first: q joins x
    assert y_sure[1].tolist() == [[0, 1, 1]]  # a cheap y makes q join y
    assert x_sure[1].tolist() == [[0, 0, 1]]
    t_weights = contextual_dtw_groups(ned, on_s, on_t, w_t=torch.tensor([[1.0, 0.1, 1.0]]))
    assert t_weights[1].tolist() in ([[0, 0, 1]], [[0, 1, 1]])


def test_attention_entropy_weights():
    att = torch.tensor([[[0.25] * 4, [1.0, 0, 0, 0], [0.5, 0.5, 0, 0], [0.25] * 4]])
    mask = torch.tensor([[1, 1, 1, 0]])
    w = attention_entropy_weights(att, mask)
    # row 0 over 3 keys: 0.25·3 of mass on keys → entropy / log 3; row 1 one-hot → 0; pad → 0
    assert w[0, 1].item() == pytest.approx(0.0, abs=1e-6) and w[0, 3].item() == 0
    assert w[0, 2].item() == pytest.approx(np.log(2) / np.log(3), rel=1e-5)
    uniform = torch.full((1, 3, 3), 1 / 3)
    assert torch.allclose(attention_entropy_weights(uniform, torch.ones(1, 3)), torch.ones(1, 3))


# ---------------------------------------------------------------- EMO


def _ot_problem(seed=0, b=4, t_s=7, t_t=9):
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(b, t_s, t_t, generator=g)
    s_real, t_real = torch.rand(b, t_s, generator=g) > 0.2, torch.rand(b, t_t, generator=g) > 0.2
    s_real[:, 0] = t_real[:, 0] = True
    a = torch.rand(b, t_s, generator=g) * s_real
    c = torch.rand(b, t_t, generator=g) * t_real
    return cost, a / a.sum(1, keepdim=True), c / c.sum(1, keepdim=True)


def test_emo_plans_have_the_marginals_and_solvers_agree():
    cost, a, b = _ot_problem()
    plans = {s: sinkhorn_plans(cost, a, b, 0.1, 100, solver=s) for s in ("batch", "sinkhorn")}
    for plan in plans.values():
        assert plan.shape == cost.shape and (plan >= 0).all()
        assert torch.allclose(plan.sum(2), a, atol=1e-4)
        assert torch.allclose(plan.sum(1), b, atol=1e-4)
        assert (plan[a == 0] == 0).all()  # zero-mass (padding) rows carry nothing
    assert torch.allclose(plans["batch"], plans["sinkhorn"], atol=1e-5)
    with pytest.raises(ValueError, match="solver"):
        sinkhorn_plans(cost, a, b, solver="emd")


@pytest.mark.parametrize("grad", ["envelope", "unroll"])
@pytest.mark.parametrize("solver", ["batch", "sinkhorn"])
def test_emo_ot_gradient_flows_through_the_cost(grad, solver):
    cost, a, b = _ot_problem(seed=1)
    cost.requires_grad_()
    s_real, t_real = a > 0, b > 0
    loss = importance_ot_loss(cost, a, b, s_real, t_real, solver=solver, grad=grad)
    loss.backward()
    assert torch.isfinite(cost.grad).all() and cost.grad.abs().sum() > 0
    if grad == "envelope":  # ∂⟨Π, C⟩/∂C with Π held fixed is Π (mean over the 4 texts)
        plan = sinkhorn_plans(cost.detach(), a, b, solver=solver)
        assert torch.allclose(cost.grad, plan / 4, atol=1e-6)


@pytest.mark.parametrize("grad", ["envelope", "unroll"])
def test_emo_gradients_reach_w_and_the_student(student, batch, grad):
    params = EMOParams(w_task=0.0, w_cka=0.0, ot_grad=grad)  # the OT term alone
    method = EMOLoss(student, batch["t_hidden"].shape[-1], params)
    loss, logs = method(batch, 0, 10)
    loss.backward()
    assert logs["ot"] > 0 and logs["cka"] >= 0
    assert method.proj.weight.grad.abs().sum() > 0
    last = student.backbone.encoder.layer[-1].output.dense.weight
    assert last.grad is not None and last.grad.abs().sum() > 0


def test_emo_cka_and_cost_pieces():
    g = torch.Generator().manual_seed(0)
    att = torch.rand(2, 6, 6, generator=g).softmax(-1)
    pairs = torch.tensor([[[0, 0], [1, 1], [2, 2], [3, 3], [4, 4], [5, 5]]] * 2)
    pairs[1, 3:] = -1
    imp = attention_importance(att, torch.ones(2, 6, dtype=torch.bool))
    assert torch.allclose(imp, att.sum(1))
    same = mapped_attention_cka_loss(att, att, pairs, imp, top_frac=0.5, min_tokens=3)
    assert same.item() == pytest.approx(0.0, abs=1e-5)  # identical attention → CKA 1
    other = mapped_attention_cka_loss(att, att.flip(1), pairs, imp, top_frac=0.5, min_tokens=3)
    assert other.item() > 0
    lonely = pairs.clone()
    lonely[:, 2:] = -1  # two pairs per text: below min_tokens, every text skipped
    zero = mapped_attention_cka_loss(att.requires_grad_(), att, lonely, imp)
    assert zero.item() == 0 and zero.requires_grad
    h_s, h_t = torch.randn(2, 5, 8), torch.randn(2, 4, 8)
    t_real = torch.tensor([[True, True, False, True], [False] * 4])
    cost = ot_cost_matrix(h_s, h_t, t_real)
    assert torch.isfinite(cost).all() and (cost[0][:, 2] == 1).all()
    assert torch.allclose((1 - cost[0]).sum(-1), torch.ones(5))


# ---------------------------------------------------------------- loss modules


def test_pure_losses_skip_empty_samples_exactly():
    h_s, h_t = torch.randn(2, 5, 8, requires_grad=True), torch.randn(2, 4, 8)
    pairs = torch.tensor([[[0, 1], [2, 3]], [[-1, -1], [-1, -1]]])
    both = mined_hidden_loss(h_s, h_t, pairs)
    first = mined_hidden_loss(h_s[:1], h_t[:1], pairs[:1])
    assert both.item() == pytest.approx(first.item())
    none = mined_hidden_loss(h_s, h_t, torch.full((2, 1, 2), -1))
    assert none.item() == 0 and none.requires_grad
    none.backward()
    assert (h_s.grad == 0).all()
    empty = torch.full((2, 5), -1), torch.full((2, 4), -1)
    step = merged_step_loss(h_s, h_t, *empty)
    assert step.item() == 0 and step.requires_grad
    with pytest.raises(ValueError, match="pairs"):
        mined_hidden_loss(h_s, h_t, pairs[..., :1])


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_finite_with_padding_and_empty_alignments(student, batch, name, bf16):
    method = LOSSES[name](student, batch["t_hidden"].shape[-1])
    some_empty = without_alignments(batch, [0, 3])
    all_empty = without_alignments(batch, list(range(len(batch["input_ids"]))))
    all_empty["s_real"][:] = False  # EMO's OT has nothing to transport either
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for b in (batch, some_empty, all_empty):
            loss, logs = method(b, 0, 10)
            assert torch.isfinite(loss) and all(np.isfinite(v) for v in logs.values())
            loss.backward()
        assert logs["kd"] == 0.0  # nothing aligned anywhere: exactly 0, never NaN
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", list(LOSSES))
def test_projection_and_student_change_after_one_step(student, batch, name):
    method = LOSSES[name](student, batch["t_hidden"].shape[-1])
    opt = torch.optim.AdamW(param_groups(method, TrainConfig(lr=1e-3)))
    proj, layer = method.proj.weight, student.backbone.encoder.layer[-1].output.dense.weight
    before = proj.detach().clone(), layer.detach().clone()
    loss, _ = method(batch, 0, 10)
    loss.backward()
    opt.step()
    assert not torch.equal(before[0], proj) and not torch.equal(before[1], layer)
    assert len(opt.param_groups) == 2  # the projection is in the optimizer, in its own group


def test_missing_map_and_non_eager_student_give_clear_errors(student, batch, tiny_dirs):
    method = MinEDLoss(student, batch["t_hidden"].shape[-1])
    incomplete = {k: v for k, v in batch.items() if k != "mined_pairs"}
    with pytest.raises(KeyError, match="maps=\\('mined',\\)"):
        method(incomplete, 0, 10)
    sdpa = load_encoder(str(tiny_dirs["student"]), device="cpu", attn_implementation="sdpa")
    for cls in (CDMLoss, EMOLoss):
        with pytest.raises(ValueError, match="eager"):
            cls(sdpa, 48)
    CDMLoss(sdpa, 48, CDMParams(contextual=False))  # plain-ned DTW needs no attention
    MinEDLoss(sdpa, 48)
    with pytest.raises(ValueError, match="Did you mean 'distance'"):
        MinEDParams.from_dict({"distanc": "mse"})
    with pytest.raises(ValueError, match="ot_solver"):
        EMOParams(ot_solver="emd")


def test_registry_entries_build(student, batch):
    from samd_common.methods import TeacherInfo, get_method

    info = TeacherInfo("tiny-teacher", 48, batch["t_hidden"].shape[-1], 1)
    for name, needed in (("MinED", "mined"), ("CDM", "ned"), ("EMO", "mined_reciprocal")):
        spec = get_method(name)
        assert spec.family == "ctkd" and spec.needs_teacher and needed in spec.maps
        assert spec.paper and spec.summary and spec.citation.startswith("@")
        method = spec.build(copy.deepcopy(student), info, dict(spec.defaults))
        loss, _ = method(batch, 0, 10)
        assert torch.isfinite(loss)
        with pytest.raises(ValueError, match="needs a teacher"):
            spec.build(student, None, {})
