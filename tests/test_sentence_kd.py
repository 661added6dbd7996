"""Tokenizer-free sentence-level baselines: EmbedDistill (pointwise) and Relational (Jasper)."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from samd_common.losses import (
    EmbedDistillLoss,
    EmbedDistillParams,
    RelationalLoss,
    RelationalParams,
    cosine_similarity_matrix,
    pointwise_loss,
    prefix_pointwise_loss,
    relational_loss,
    relative_similarity_loss,
    resolve_target,
    similarity_matrix_loss,
)
from samd_common.methods import METHODS, TeacherInfo, build, matryoshka_dims
from samd_common.models import load_encoder, save_encoder

TEXTS = [
    "A man is playing a guitar.",
    "The dog likes the movie",
    "Two kids lost my wallet!",
    "A woman slices an onion.",
    "The cat sleeps on the mat.",
    "Stocks fell sharply on Monday.",
]
D_T = 48  # tiny teacher width (the tiny student is 32 wide)
GEMMA = (768, 512, 256, 128)


@pytest.fixture(scope="module")
def _student(tiny_dirs):
    return load_encoder(str(tiny_dirs["student"]), device="cpu")


@pytest.fixture
def student(_student):
    torch.manual_seed(0)
    return copy.deepcopy(_student).train()


@pytest.fixture
def batch(_student):
    g = torch.Generator().manual_seed(0)
    return {**_student.tokenize(TEXTS), "t_pooled": torch.randn(len(TEXTS), D_T, generator=g)}


def count_passes(objective) -> list[int]:
    """A one-element list counting the student's forward calls."""
    calls = [0]
    objective.student.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


# ---------------------------------------------------------------- pointwise: functional core
def test_pointwise_is_zero_for_the_target_and_scale_free_under_cosine():
    t = torch.randn(5, 16)
    assert float(pointwise_loss(3.0 * t, t, "cosine")) == pytest.approx(0, abs=1e-6)
    assert float(pointwise_loss(F.normalize(t, dim=-1), t, "mse")) == pytest.approx(0, abs=1e-10)
    assert float(pointwise_loss(3.0 * t, t, "mse")) > 1  # mse also fixes the norm to 1
    assert float(pointwise_loss(-t, t, "cosine")) == pytest.approx(2.0)


def test_pointwise_values_by_hand():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 1.0], [0.0, -5.0]])
    # cosine: (1 − 1/√2) and (1 − (−1)) → mean
    assert float(pointwise_loss(s, t, "cosine")) == pytest.approx((1 - 1 / math.sqrt(2) + 2) / 2)
    # mse: ‖s − t̂‖² with t̂ = (1/√2, 1/√2) and (0, −1): (1 − 1/√2)² + 1/2 and 3² → mean
    expected = ((1 - 1 / math.sqrt(2)) ** 2 + 0.5 + 9.0) / 2
    assert float(pointwise_loss(s, t, "mse")) == pytest.approx(expected)


@pytest.mark.parametrize("distance", ["cosine", "mse"])
def test_prefix_pointwise_equals_the_hand_computed_weighted_sum(distance):
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, 4, generator=g), torch.randn(3, 6, generator=g)
    dims, weights = [4, 2], [0.5, 2.0]
    expected = 0.0
    for m, w in zip(dims, weights, strict=True):
        for b in range(3):
            x, y = s[b, :m], t[b, :m] / t[b, :m].norm()
            d = (
                1 - float(x @ y) / float(x.norm())
                if distance == "cosine"
                else float((x - y).pow(2).sum())
            )
            expected += w * d / 3
    got = prefix_pointwise_loss(s, t, dims, weights, distance)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_prefix_pointwise_is_zero_when_the_student_is_the_teachers_prefix():
    t = torch.randn(6, 48)
    assert float(prefix_pointwise_loss(t[:, :32], t, [32, 16, 8])) == pytest.approx(0, abs=1e-6)
    unit = F.normalize(t[:, :32], dim=-1)
    assert float(prefix_pointwise_loss(unit, t, [32], distance="mse")) == pytest.approx(
        0, abs=1e-10
    )


def test_pointwise_rejects_bad_input():
    with pytest.raises(ValueError, match="distance must be one of"):
        pointwise_loss(torch.randn(2, 4), torch.randn(2, 4), "l1")
    with pytest.raises(ValueError, match="project or cut the prefix"):
        pointwise_loss(torch.randn(2, 4), torch.randn(2, 8))
    with pytest.raises(ValueError, match="exceed the embedding width"):
        prefix_pointwise_loss(torch.randn(2, 64), torch.randn(2, 48), [64])


@pytest.mark.parametrize(
    ("target", "d_s", "d_t", "dims", "expected"),
    [
        ("auto", 384, 768, GEMMA, "prefix"),  # MiniLM inside EmbeddingGemma
        ("auto", 768, 768, GEMMA, "prefix"),
        ("auto", 384, 768, (), "projection"),  # teacher not Matryoshka-trained
        ("auto", 1024, 768, GEMMA, "projection"),  # student wider than the teacher
        ("auto", 64, 768, GEMMA, "projection"),  # below the smallest trained prefix
        ("projection", 384, 768, GEMMA, "projection"),
        ("prefix", 384, 768, (), "prefix"),  # explicit choice is kept (with a warning)
    ],
)
def test_resolve_target(target, d_s, d_t, dims, expected):
    assert resolve_target(target, d_s, d_t, dims) == expected


def test_resolve_target_rejects_what_cannot_work():
    with pytest.raises(ValueError, match="use target='projection'"):
        resolve_target("prefix", 1024, 768, GEMMA)
    with pytest.raises(ValueError, match="target must be one of"):
        resolve_target("teacher", 384, 768, GEMMA)


# ---------------------------------------------------------------- pointwise: the objective
def test_projection_target_owns_a_student_side_projection(student, batch):
    objective = EmbedDistillLoss(student, D_T)  # tiny teacher declares no Matryoshka dims
    assert objective.target == "projection"
    assert (objective.proj.in_features, objective.proj.out_features) == (32, D_T)
    calls = count_passes(objective)
    loss, logs = objective(batch, step=0, total_steps=10)
    loss.backward()
    assert calls[0] == 1 and set(logs) == {"loss", "kd"}  # no SimCSE → one student pass
    assert logs["loss"] == pytest.approx(logs["kd"])
    assert objective.proj.weight.grad.abs().sum() > 0
    grads = [p.grad for p in objective.student.parameters() if p.requires_grad]
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def test_prefix_target_has_no_projection_and_reaches_the_student(student, batch):
    objective = EmbedDistillLoss(student, D_T, teacher_matryoshka_dims=(48, 24))
    assert objective.target == "prefix" and objective.proj is None
    assert not [n for n, _ in objective.named_parameters() if not n.startswith("student.")]
    loss, _ = objective(batch, step=0, total_steps=10)
    loss.backward()
    word = objective.student.backbone.get_input_embeddings().weight
    assert torch.isfinite(loss) and word.grad is not None and word.grad.abs().sum() > 0


def test_prefix_target_is_zero_when_the_teacher_prefix_is_the_student(student, batch):
    objective = EmbedDistillLoss(student, D_T, (48, 24)).eval()  # no dropout: fixed embedding
    with torch.no_grad():
        s = objective.student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
    t_pooled = torch.cat([2.5 * s, torch.randn(len(TEXTS), D_T - 32)], dim=-1)  # (B, D_t)
    loss, _ = objective({**batch, "t_pooled": t_pooled}, step=0, total_steps=1)
    assert loss.item() == pytest.approx(0, abs=1e-6)
    # mse regresses onto the unit-norm prefix: a collinear student pays (‖s‖ − 1)² only
    objective.params.distance = "mse"
    loss, _ = objective({**batch, "t_pooled": t_pooled}, step=0, total_steps=1)
    assert loss.item() == pytest.approx((s.norm(dim=-1) - 1).pow(2).mean().item(), rel=1e-5)


def test_simcse_on_means_two_passes_and_a_task_log(student, batch):
    objective = EmbedDistillLoss(student, D_T, params=EmbedDistillParams(w_task=0.5))
    calls = count_passes(objective)
    _, logs = objective(batch, step=0, total_steps=10)
    assert calls[0] == 2 and set(logs) == {"loss", "task", "kd"}
    assert logs["loss"] == pytest.approx(0.5 * logs["task"] + 1.0 * logs["kd"], rel=1e-5)


def test_the_projection_is_not_saved_with_the_student(student, batch, tmp_path):
    objective = EmbedDistillLoss(student, D_T, params=EmbedDistillParams(target="projection"))
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-3)
    loss, _ = objective(batch, step=0, total_steps=1)
    loss.backward()
    optimizer.step()
    assert "proj.weight" in objective.state_dict()
    folder = save_encoder(objective.student, tmp_path / "student")
    saved = {}
    for path in folder.glob("*.safetensors"):
        saved.update(load_file(path))
    assert saved and not [k for k in saved if "proj" in k]
    assert not [k for k, v in saved.items() if D_T in v.shape]  # nothing D_t wide was written
    reloaded = load_encoder(str(folder), device="cpu")
    assert reloaded.dim == 32
    objective.eval()
    with torch.no_grad():
        ids, mask = batch["input_ids"], batch["attention_mask"]
        torch.testing.assert_close(
            reloaded(ids, mask)["sentence_embedding"],
            objective.student(ids, mask)["sentence_embedding"],
        )


def test_embed_distill_params_reject_bad_values():
    with pytest.raises(ValueError, match="Did you mean 'distance'"):
        EmbedDistillParams.from_dict({"distanse": "mse"})
    with pytest.raises(ValueError, match="distance in"):
        EmbedDistillParams(distance="l1")
    with pytest.raises(ValueError, match="target in"):
        EmbedDistillParams(target="pca")
    with pytest.raises(ValueError, match="explicit dims with weights"):
        EmbedDistillParams(weights=[1.0])


def test_dims_need_the_prefix_target_and_batches_the_right_width(student, batch):
    with pytest.raises(ValueError, match="prefix target only"):
        EmbedDistillLoss(student, D_T, params=EmbedDistillParams(dims=[32, 16]))
    objective = EmbedDistillLoss(student, 64, teacher_matryoshka_dims=(64, 32))
    with pytest.raises(ValueError, match="t_pooled has width 48 but teacher_dim is 64"):
        objective(batch, step=0, total_steps=1)


# ---------------------------------------------------------------- relational: functional core
def brute_force(s: torch.Tensor, t: torch.Tensor, margin: float) -> tuple[float, float]:
    """L_sim and L_resim of one prefix by loops over pairs i < j and couples of pairs."""
    ss, st = cosine_similarity_matrix(s).tolist(), cosine_similarity_matrix(t).tolist()
    pairs = list(itertools.combinations(range(len(ss)), 2))
    sim = sum((ss[i][j] - st[i][j]) ** 2 for i, j in pairs) / len(pairs)
    hinges = [
        max(0.0, ss[k][m] - ss[i][j] + margin)
        for (i, j), (k, m) in itertools.product(pairs, pairs)
        if st[i][j] > st[k][m]
    ]
    return sim, sum(hinges) / max(1, len(hinges))


def test_relational_loss_equals_the_hand_computed_sum_over_prefixes():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(4, 6, generator=g), torch.randn(4, 10, generator=g)
    dims, weights, lam_sim, lam_resim, margin = [6, 3], [1.0, 0.5], 3.0, 1.0, 0.05
    parts = [brute_force(s[:, :m], t, margin) for m in dims]
    sim = sum(w * p[0] for w, p in zip(weights, parts, strict=True))
    resim = sum(w * p[1] for w, p in zip(weights, parts, strict=True))
    loss, logs = relational_loss(s, t, dims, weights, lam_sim, lam_resim, margin, None)
    assert float(logs["sim"]) == pytest.approx(sim, rel=1e-5)
    assert float(logs["resim"]) == pytest.approx(resim, rel=1e-5)
    assert float(loss) == pytest.approx(lam_sim * sim + lam_resim * resim, rel=1e-5)


def test_relational_loss_is_zero_at_every_prefix_for_identical_relations():
    x = torch.randn(6, 8)
    s = torch.cat([x, torch.zeros(6, 24)], dim=-1)  # every prefix ≥ 8 has the Gram of x
    t = torch.cat([x, torch.zeros(6, 16)], dim=-1)  # the teacher: same texts, width 24
    loss, logs = relational_loss(s, t, [32, 16, 8], margin=0.0)
    assert float(logs["sim"]) == pytest.approx(0, abs=1e-10)
    assert float(logs["resim"]) == 0.0 and float(loss) == pytest.approx(0, abs=1e-9)


def test_identical_matrices_still_pay_the_margin_where_teacher_gaps_are_smaller():
    # The hinge asks the student for a lead ≥ margin, so with margin > 0 even a student equal to
    # the teacher pays relu(margin − gap) on the couples the teacher separates by < margin.
    t_sim = torch.tensor([[1.0, 0.50, 0.20], [0.50, 1.0, 0.51], [0.20, 0.51, 1.0]])
    # pairs (0,1)=0.50, (0,2)=0.20, (1,2)=0.51 → ordered couples: 0.51>0.50 (gap 0.01),
    # 0.51>0.20, 0.50>0.20 (gaps ≥ 0.3); only the first pays 0.015 − 0.01 = 0.005.
    got = relative_similarity_loss(t_sim, t_sim, margin=0.015)
    assert float(got) == pytest.approx(0.005 / 3, rel=1e-4)
    assert float(relative_similarity_loss(t_sim, t_sim, margin=0.0)) == 0.0
    assert float(similarity_matrix_loss(t_sim, t_sim)) == 0.0


def _matrix(values: list[float]) -> torch.Tensor:
    """A symmetric (4, 4) matrix with 1 on the diagonal and ``values`` on the pairs i < j."""
    m = torch.eye(4)
    for (i, j), v in zip(itertools.combinations(range(4), 2), values, strict=True):
        m[i, j] = m[j, i] = v
    return m


def test_ranking_term_is_zero_for_the_teachers_order_by_more_than_the_margin():
    t_sim = _matrix([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    ranks = t_sim[torch.triu_indices(4, 4, 1).unbind()].argsort().argsort().float()  # 0..5
    s_sim = _matrix((0.02 * ranks - 0.3).tolist())  # same order, gaps 0.02 > 0.015
    assert float(relative_similarity_loss(s_sim, t_sim, margin=0.015)) == 0.0
    reversed_ = _matrix((-0.02 * ranks).tolist())  # reversed order
    got = float(relative_similarity_loss(reversed_, t_sim, margin=0.015))
    # each of the 15 ordered couples (rank gap r ≥ 1) pays 0.02·r + 0.015
    expected = sum(
        0.02 * r + 0.015 for a, b in itertools.combinations(range(6), 2) for r in [b - a]
    )
    assert got == pytest.approx(expected / 15, rel=1e-5) and got > 0.015


def test_relational_loss_is_invariant_to_scaling_the_embeddings():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(8, 16, generator=g), torch.randn(8, 24, generator=g)
    scale_s, scale_t = torch.rand(8, 1, generator=g) + 0.1, torch.rand(8, 1, generator=g) + 0.1
    base, _ = relational_loss(s, t, [16, 8], max_pairs=None)
    scaled, _ = relational_loss(scale_s * 7 * s, scale_t * t, [16, 8], max_pairs=None)
    assert float(scaled) == pytest.approx(float(base), rel=1e-5)


def test_pair_subsets_are_reproducible_and_exact_below_the_cap():
    g = torch.Generator().manual_seed(4)
    s_sim = cosine_similarity_matrix(torch.randn(12, 8, generator=g))  # 66 pairs
    t_sim = cosine_similarity_matrix(torch.randn(12, 8, generator=g))
    full = relative_similarity_loss(s_sim, t_sim, max_pairs=None)
    assert float(relative_similarity_loss(s_sim, t_sim, max_pairs=66)) == float(full)
    a = relative_similarity_loss(
        s_sim, t_sim, max_pairs=20, generator=torch.Generator().manual_seed(0)
    )
    b = relative_similarity_loss(
        s_sim, t_sim, max_pairs=20, generator=torch.Generator().manual_seed(0)
    )
    assert float(a) == float(b) and math.isfinite(float(a))


def test_similarities_stay_fp32_under_autocast():
    x = torch.randn(6, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sim = cosine_similarity_matrix(x)
    assert sim.dtype == torch.float32
    torch.testing.assert_close(sim, F.normalize(x, dim=-1) @ F.normalize(x, dim=-1).T)


def test_relational_functions_reject_bad_input():
    with pytest.raises(ValueError, match="B ≥ 2"):
        relational_loss(torch.randn(1, 8), torch.randn(1, 8), [8])
    with pytest.raises(ValueError, match="same B"):
        relational_loss(torch.randn(3, 8), torch.randn(4, 8), [8])
    with pytest.raises(ValueError, match="exceed the embedding width"):
        relational_loss(torch.randn(3, 8), torch.randn(3, 8), [16])
    with pytest.raises(ValueError, match="one weight per dim"):
        relational_loss(torch.randn(3, 8), torch.randn(3, 8), [8, 4], [1.0])
    with pytest.raises(ValueError, match="margin must be ≥ 0"):
        relative_similarity_loss(torch.eye(3), torch.eye(3), margin=-0.1)


# ---------------------------------------------------------------- relational: the objective
def test_relational_objective_one_pass_and_gradients(student, batch):
    objective = RelationalLoss(student, D_T, RelationalParams(min_dim=8))
    assert objective.dims == [32, 16, 8] and objective.weights == [1.0, 1.0, 1.0]
    assert all(n.startswith("student.") for n, _ in objective.named_parameters())  # no projection
    calls = count_passes(objective)
    loss, logs = objective(batch, step=0, total_steps=10)
    loss.backward()
    assert calls[0] == 1 and set(logs) == {"loss", "sim", "resim"}
    assert logs["loss"] == pytest.approx(3.0 * logs["sim"] + logs["resim"], rel=1e-5)
    word = objective.student.backbone.get_input_embeddings().weight
    assert word.grad is not None and word.grad.abs().sum() > 0


def test_relational_with_simcse_runs_twice(student, batch):
    objective = RelationalLoss(student, D_T, RelationalParams(w_task=0.5))
    calls = count_passes(objective)
    _, logs = objective(batch, step=0, total_steps=10)
    assert calls[0] == 2 and "task" in logs


def test_relational_params_and_widths_are_checked(student, batch):
    with pytest.raises(ValueError, match="Did you mean 'lambda_sim'"):
        RelationalParams.from_dict({"lambda_simm": 1.0})
    with pytest.raises(ValueError, match="lambda_sim, lambda_resim, margin ≥ 0"):
        RelationalParams(margin=-1.0)
    with pytest.raises(ValueError, match="max_pairs ≥ 2"):
        RelationalParams(max_pairs=1)
    with pytest.raises(ValueError, match="exceed the student width"):
        RelationalLoss(student, D_T, RelationalParams(dims=[64, 32]))
    objective = RelationalLoss(student, 64)
    with pytest.raises(ValueError, match="t_pooled has width 48"):
        objective(batch, step=0, total_steps=1)


# ---------------------------------------------------------------- registry and model table
def test_the_model_table_declares_matryoshka_teachers(tiny_dirs):
    assert matryoshka_dims("embeddinggemma-300m") == GEMMA
    assert matryoshka_dims("google/EmbeddingGemma-300m") == GEMMA
    assert matryoshka_dims("minilm-l6") == ()
    assert matryoshka_dims(str(tiny_dirs["teacher"])) == ()
    assert matryoshka_dims("no/such-model") == ()


def test_build_picks_the_target_from_the_teacher_info(student):
    plain = TeacherInfo("t", dim=D_T, hidden_dim=D_T, layers=1)
    mrl = TeacherInfo("t", dim=D_T, hidden_dim=D_T, layers=1, matryoshka_dims=(48, 24))
    spec = METHODS["EmbedDistill"]
    assert build(spec, copy.deepcopy(student), plain, spec.defaults).target == "projection"
    assert build(spec, copy.deepcopy(student), mrl, spec.defaults).target == "prefix"
    relational = build(METHODS["Relational"], copy.deepcopy(student), plain, {})
    assert relational.dims == [32] and relational.teacher_dim == D_T  # 32 // 2 < min_dim 32


@pytest.mark.parametrize("name", ["EmbedDistill", "Relational"])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(student, batch, name):
    info = TeacherInfo("t", dim=D_T, hidden_dim=D_T, layers=1)
    spec = METHODS[name]
    objective = build(
        spec,
        student,
        info,
        {**spec.defaults, "min_dim": 8} if name == "Relational" else spec.defaults,
    )
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-3)
    objective.eval()  # no dropout: the decrease is the optimisation's
    losses = []
    for _ in range(15):
        loss, _ = objective(batch, step=0, total_steps=15)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
