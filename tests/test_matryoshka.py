"""MRL, ESE and SAMD-MRL: losses, registry, depth truncation, dims × depth evaluation, plots."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import BertModel, DistilBertConfig, DistilBertModel

from samd_common.config import EvalConfig, halving_dims
from samd_common.data.tasks import load_tasks
from samd_common.evaluation.suite import default_dims, evaluate_depth_grid, evaluate_suite, truncate
from samd_common.losses import (
    ESELoss,
    ESEParams,
    MRLLoss,
    MRLParams,
    SAMDMRLLoss,
    SAMDMRLParams,
    compression_loss,
    espresso_layer_loss,
    info_nce,
    layer_weight,
    matryoshka_info_nce,
    mrl_loss,
    pca_target,
    pointwise_loss,
    relational_loss,
    sample_layer,
    similarity_kl,
)
from samd_common.methods import METHODS, TeacherInfo, get_method
from samd_common.models import SentenceEncoder, load_encoder, transformer_layers
from samd_common.reporting.plots import depth_grid_matrix, plot_depth_grid, plot_dims

TEXTS = [
    "A man is playing a guitar.",
    "The dog likes the movie",
    "Two kids lost my wallet!",
    "Hi",
    "an old lady found the piano near the café",
    "東京で the teacher opened a new card 😊",
]
D_T = 48
NEW_METHODS = ("MRL", "ESE", "SAMD-MRL")


@pytest.fixture(scope="module")
def _teacher(tiny_dirs):
    return load_encoder(str(tiny_dirs["teacher"]), device="cpu", attn_implementation="eager")


@pytest.fixture
def deep(_teacher):
    """A 3-layer tiny BERT (the 'teacher' directory), used as an elastic-depth student."""
    torch.manual_seed(0)
    return copy.deepcopy(_teacher)


def batch_of(encoder: SentenceEncoder, d_t: int = D_T) -> dict[str, torch.Tensor]:
    """Student tokens, a pooled teacher embedding and one span group per text (token 1 ↔ 1)."""
    tok = encoder.tokenize(TEXTS)
    g = torch.Generator().manual_seed(0)
    b, t_s = tok["input_ids"].shape
    s_group, t_group = torch.full((b, t_s), -1), torch.full((b, 5), -1)
    s_group[:, 1] = t_group[:, 1] = 0
    return {
        **tok,
        "t_pooled": torch.randn(b, d_t, generator=g),
        "t_hidden": torch.randn(b, 5, d_t, generator=g),
        "s_group": s_group,
        "t_group": t_group,
    }


def by_hand_info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / tau
    return -torch.stack([logits[i].log_softmax(-1)[i] for i in range(len(a))]).mean()


def pca_aligned_embeddings(b: int = 32, d: int = 16, seed: int = 0) -> torch.Tensor:
    """(b, d) rows whose centred covariance is diagonal and decreasing: PCA axes = coordinates."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(0))  # (b, d) orthonormal, centred columns
    scales = torch.linspace(5.0, 0.5, d, dtype=torch.float64)
    offset = torch.randn(1, d, generator=g, dtype=torch.float64)
    return (q * scales + offset).float()


# ---------------------------------------------------------------- MRL


def test_mrl_loss_equals_sum_over_prefixes_by_hand():
    g = torch.Generator().manual_seed(0)
    s1, s2 = torch.randn(8, 64, generator=g), torch.randn(8, 64, generator=g)
    dims = halving_dims(64, 16)
    assert dims == [64, 32, 16]
    expected = sum(by_hand_info_nce(s1[:, :m], s2[:, :m], 0.07) for m in dims)
    assert mrl_loss(s1, s2, dims).item() == pytest.approx(expected.item(), rel=1e-5)
    weighted = mrl_loss(s1, s2, dims, [1.0, 0.0, 2.0], temperature=0.1)
    by_hand = by_hand_info_nce(s1, s2, 0.1) + 2 * by_hand_info_nce(s1[:, :16], s2[:, :16], 0.1)
    assert weighted.item() == pytest.approx(by_hand.item(), rel=1e-5)
    with pytest.raises(ValueError, match="exceed the embedding width"):
        mrl_loss(s1, s2, [128, 64])


def test_mrl_module_matches_core_and_has_finite_gradients(student):
    loss_fn = MRLLoss(student)
    assert loss_fn.dims == [32, 16]  # halving from D_s = 32 down to 16
    assert MRLLoss(student, MRLParams(min_dim=32)).dims == [32]
    student.eval()  # no dropout: both passes equal, so the module equals the core on s
    batch = batch_of(student)
    s = student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
    loss, logs = loss_fn(batch, step=0, total_steps=1)
    assert loss.item() == pytest.approx(mrl_loss(s, s, [32, 16]).item(), rel=1e-5)
    assert logs["loss"] == pytest.approx(loss.item())
    student.train()
    loss, _ = loss_fn(batch, step=0, total_steps=1)
    loss.backward()
    grads = [q.grad for q in student.parameters() if q.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)


def test_mrl_params_validation():
    assert MRLParams.from_dict({"min_dim": 32}).min_dim == 32
    with pytest.raises(ValueError, match="Did you mean 'min_dim'"):
        MRLParams.from_dict({"mindim": 32})
    with pytest.raises(ValueError, match="min_dim"):
        MRLParams(min_dim=0)
    with pytest.raises(ValueError, match="exceed the student width"):
        MRLParams(dims=[64, 16]).resolve_dims(32)


# ---------------------------------------------------------------- ESE


def test_ese_layer_weight_formula():
    assert layer_weight(0) == 1.0  # the first transformer layer
    assert layer_weight(1) == pytest.approx(1 / (1 + math.log(2)))
    assert layer_weight(10) == pytest.approx(1 / (1 + math.log(11)))
    assert all(layer_weight(i) > layer_weight(i + 1) > 0 for i in range(20))
    with pytest.raises(ValueError, match="≥ 0"):
        layer_weight(-1)


def test_ese_layer_sampling_is_seeded_and_covers_earlier_layers():
    torch.manual_seed(3)
    draws = [sample_layer(4) for _ in range(200)]
    assert set(draws) == {0, 1, 2}  # every layer but the last
    torch.manual_seed(3)
    assert [sample_layer(4) for _ in range(200)] == draws
    with pytest.raises(ValueError, match="≥ 2 layers"):
        sample_layer(1)


def test_pca_target_has_no_grad_and_compression_is_zero_on_pca_aligned_input():
    emb = pca_aligned_embeddings().requires_grad_()
    target = pca_target(emb, 4)
    assert not target.requires_grad and target.shape == (32, 4)
    torch.testing.assert_close(target, emb.detach()[:, :4], atol=1e-4, rtol=1e-4)
    assert compression_loss(emb, 4).item() == pytest.approx(0.0, abs=1e-5)
    # A rotation of the same data moves the principal axes off the coordinates: loss > 0, and
    # the gradient reaches only the prefix (the PCA target is a constant).
    rot, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)))
    mixed = (emb.detach() @ rot).requires_grad_()
    loss = compression_loss(mixed, 4)
    assert loss.item() > 1e-2
    loss.backward()
    assert mixed.grad[:, :4].abs().sum() > 0 and mixed.grad[:, 4:].abs().sum() == 0


def test_pca_target_rank_is_capped_by_the_batch():
    emb = torch.randn(5, 16)
    assert pca_target(emb, 8).shape == (5, 4)  # a centred batch of 5 has ≤ 4 principal axes
    assert torch.isfinite(compression_loss(emb.requires_grad_(), 8))
    with pytest.raises(ValueError, match="B ≥ 2"):
        pca_target(torch.randn(1, 16), 4)


def test_similarity_kl_zero_for_same_geometry_and_positive_otherwise():
    x = torch.randn(6, 8)
    assert similarity_kl(3 * x, x, 0.07).item() == pytest.approx(0.0, abs=1e-6)
    assert similarity_kl(torch.randn(6, 8), x, 0.07).item() > 0


def test_ese_loss_equals_last_plus_weighted_sampled_layer(deep):
    loss_fn = ESELoss(deep, ESEParams(prefix_dim=12))
    assert loss_fn.depth == 3 and loss_fn.sample
    deep.eval()  # deterministic passes
    batch = batch_of(deep)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    torch.manual_seed(5)
    loss, logs = loss_fn(batch, step=0, total_steps=1)
    torch.manual_seed(5)
    i = int(torch.randint(0, 2, (1,)))  # the same draw from the same global RNG state
    assert logs["layer_index"] == i and logs["layer_weight"] == pytest.approx(layer_weight(i))
    out = deep(ids, mask, output_hidden_states=True)
    s = out["sentence_embedding"]
    h = deep.pool_tokens(out["hidden_states"][i + 1], mask, ids)
    encoded = deep.encode(TEXTS, normalize=False, num_layers=i + 1)
    np.testing.assert_allclose(h.detach().numpy(), encoded, atol=1e-5)
    last = espresso_layer_loss(s, s, 12)
    layer = espresso_layer_loss(h, h, 12)
    expected = last["total"] + layer_weight(i) * layer["total"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    by_hand = info_nce(s, s) + info_nce(s[:, :12], s[:, :12]) + compression_loss(s, 12)
    assert last["total"].item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_ese_gradients_finite_and_ablation_switches(deep):
    batch = batch_of(deep)
    loss, logs = ESELoss(deep)(batch, step=0, total_steps=1)
    assert ESELoss(deep).prefix_dim == 48 // 4
    loss.backward()
    grads = [q.grad for q in deep.parameters() if q.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
    assert {"loss", "last", "last_compress", "layer", "layer_index"} <= logs.keys()
    _, logs = ESELoss(deep, ESEParams(sample_layer=False, compress=False))(batch, 0, 1)
    assert set(logs) == {"loss", "last"}
    with pytest.raises(ValueError, match="Did you mean 'prefix_dim'"):
        ESEParams.from_dict({"prefix_dims": 8})
    with pytest.raises(ValueError, match="exceeds the student width"):
        ESELoss(deep, ESEParams(prefix_dim=64))


def test_ese_under_bf16_autocast(deep):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logs = ESELoss(deep)(batch_of(deep), step=0, total_steps=1)
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in logs.values())


# ---------------------------------------------------------------- SAMD-MRL


def test_samd_mrl_task_loss_is_matryoshka_info_nce(student):
    params = SAMDMRLParams(dims=[32, 16], lambda_span=0.0, lambda_point=1.0)  # L_point on
    loss_fn = SAMDMRLLoss(student, D_T, params=params)
    assert loss_fn.mrl_dims == [32, 16] and loss_fn.uses_task
    g = torch.Generator().manual_seed(0)
    s1, s2 = torch.randn(6, 32, generator=g), torch.randn(6, 32, generator=g)
    expected = matryoshka_info_nce(s1, s2, [32, 16], temperature=0.07)
    assert loss_fn.task_loss(s1, s2).item() == pytest.approx(expected.item(), rel=1e-6)
    # Whole objective: Σ_m InfoNCE + SAMD's terms (weights 1, §6.8; L_span: test_samd_objective).
    student.eval()
    batch = batch_of(student)
    s = student(batch["input_ids"], batch["attention_mask"])["sentence_embedding"]
    loss, logs = loss_fn(batch, step=500, total_steps=1000)
    t = batch["t_pooled"] - batch["t_pooled"].mean(0)  # centred targets (the batch's mean)
    point = pointwise_loss(loss_fn.proj(s), t)  # no Matryoshka dims: the projection target
    rel, _ = relational_loss(s, t, [32, 16])
    task = matryoshka_info_nce(s, s, [32, 16])
    assert set(logs) == {"loss", "task", "point", "sim", "resim"}
    assert loss.item() == pytest.approx((task + point + rel).item(), rel=1e-5)
    loss.backward()
    assert all(torch.isfinite(q.grad).all() for q in loss_fn.parameters() if q.grad is not None)


def test_samd_mrl_params():
    p = SAMDMRLParams.from_dict({"mrl_min_dim": 32, "lambda_span": 0.5})
    assert (p.mrl_min_dim, p.lambda_span, p.w_task, p.w_kd) == (32, 0.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="Did you mean 'mrl_min_dim'"):
        SAMDMRLParams.from_dict({"mrl_mindim": 32})
    with pytest.raises(ValueError, match="mrl_min_dim"):
        SAMDMRLParams(mrl_min_dim=0)


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize("name", NEW_METHODS)
def test_new_registry_entries_build(name, student):
    spec = get_method(name)
    assert spec.family == "mrl" and spec.name in METHODS
    assert spec.needs_teacher is (name == "SAMD-MRL")
    assert spec.elastic_depth is (name == "ESE")
    assert spec.paper and spec.summary and "@" in spec.citation
    arxiv = {"MRL": "2205.13147", "ESE": "2402.14776", "SAMD-MRL": "2205.13147"}[name]
    assert arxiv in spec.citation
    teacher = TeacherInfo("tiny-teacher", D_T, D_T, 1) if spec.needs_teacher else None
    module = spec.build(student, teacher, dict(spec.defaults))
    assert module.student is student
    loss, logs = module(batch_of(student), step=0, total_steps=10)
    assert torch.isfinite(loss) and math.isfinite(logs["loss"])
    if spec.needs_teacher:
        with pytest.raises(ValueError, match="teacher"):
            spec.build(student, None, {})


# ---------------------------------------------------------------- depth truncation


def test_first_k_layers_equal_a_k_layer_bert_built_from_the_weights(deep):
    texts = TEXTS[:4]
    for k in (1, 2):
        cfg = deep.backbone.config.to_dict() | {"num_hidden_layers": k}
        small = BertModel(type(deep.backbone.config).from_dict(cfg))
        result = small.load_state_dict(deep.backbone.state_dict(), strict=False)
        assert not result.missing_keys  # only the deeper layers are left over
        assert all(int(key.split(".")[2]) >= k for key in result.unexpected_keys)
        ref = SentenceEncoder(small.eval(), deep.tokenizer, deep.spec).encode(texts)
        np.testing.assert_allclose(deep.encode(texts, num_layers=k), ref, atol=1e-6)
    np.testing.assert_allclose(deep.encode(texts, num_layers=3), deep.encode(texts))
    assert len(transformer_layers(deep.backbone)) == 3  # restored after truncation
    with pytest.raises(ValueError, match="outside 1..3"):
        deep.encode(texts, num_layers=4)


def test_depth_truncation_unsupported_architecture_is_a_clear_error(deep):
    cfg = DistilBertConfig(vocab_size=100, dim=16, n_layers=2, n_heads=2, hidden_dim=32)
    with pytest.raises(NotImplementedError, match="'distilbert'"):
        transformer_layers(DistilBertModel(cfg))


def test_truncation_at_full_dim_equals_the_untruncated_result(deep, demo_dir):
    emb = deep.encode(TEXTS, normalize=False)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.testing.assert_allclose(truncate(emb, emb.shape[1]), unit, atol=1e-6)
    tasks = load_tasks(["stsb", "mrpc"], demo_dir)
    full = evaluate_suite(lambda t: deep.encode(t), tasks, dims=[48])
    default = evaluate_suite(lambda t: deep.encode(t), tasks)
    assert default.dims == [48, 24]
    for key, value in full.metrics.items():
        assert default.metrics[key] == pytest.approx(value, abs=1e-9)


def test_default_dims_are_the_halving_series_plus_configured_dims():
    assert default_dims(384) == [384, 256, 192, 128, 96, 64, 48, 24]
    assert default_dims(384, (100,)) == [384, 192, 100, 96, 48, 24]
    assert default_dims(32) == [32, 16]
    assert default_dims(64, minimum=32) == [64, 32]
    with pytest.raises(ValueError, match="exceed the embedding width 32"):
        default_dims(32, (64,))


def test_depth_grid_keys_and_full_depth_matches_suite(deep, demo_dir):
    tasks = load_tasks(["stsb", "mrpc", "banking77"], demo_dir)
    cfg = EvalConfig(max_train=30)
    grid = evaluate_depth_grid(deep, tasks, [1, 3], [48, 12], cfg)
    assert grid.info["depths"] == [1, 3] and grid.dims == [48, 12]
    assert {"stsb/spearman@12/L1", "avg/all/id@48/L3", "banking77/accuracy@12/L3"} <= set(
        grid.metrics
    )
    suite = evaluate_suite(deep, tasks, [48, 12], cfg)
    for key, value in suite.metrics.items():
        assert grid.metrics[f"{key}/L3"] == pytest.approx(value, abs=1e-9)
    assert grid.metrics["stsb/spearman@48/L1"] != grid.metrics["stsb/spearman@48/L3"]
    with pytest.raises(ValueError, match="depths"):
        evaluate_depth_grid(deep, tasks, [0], [48], cfg)


# ---------------------------------------------------------------- plots


def fake_results(method: str, shift: float, depths: bool = False) -> dict:
    dims = [48, 24, 12]
    metrics = {
        f"avg/{fam}/{g}@{d}": 50 + shift + d / 4 - 5 * (g == "ood")
        for fam in ("classification", "pair", "sts", "all")
        for g in ("id", "ood")
        for d in dims
    }
    payload = {
        "method": method,
        "config": {"seed": 0, "student": "tiny-student"},
        "metrics": metrics,
        "metrics_before": {k: v - 3 for k, v in metrics.items()},
        "dims": dims,
    }
    if depths:
        payload["depths"] = [1, 2, 3]
        payload["depth_grid"] = {
            f"{k}/L{n}": v - 4 * (3 - n) for k, v in metrics.items() for n in (1, 2, 3)
        }
    return payload


def assert_png(path):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0.01


def test_plots_render_headless(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one = tmp_path / "one" / "matryoshka.png"
    plot_dims(fake_results("MRL", 0), one)
    several = tmp_path / "several.png"
    fig = plot_dims(
        [fake_results("MRL", 0), fake_results("ESE", 2), fake_results("ESE", 1)], several
    )
    assert len(fig.axes) == 3 and [ax.get_title() for ax in fig.axes] == [
        "classification",
        "pair",
        "sts",
    ]
    grid_png = tmp_path / "depth_grid.png"
    result = fake_results("ESE", 0, depths=True)
    plot_depth_grid(json.loads(json.dumps(result)), grid_png)  # as read back from JSON
    depths, dims, values = depth_grid_matrix(result, "all/id")
    assert (depths, dims, values.shape) == ([1, 2, 3], [48, 24, 12], (3, 3))
    assert values[0, 0] == pytest.approx(result["depth_grid"]["avg/all/id@48/L1"])
    for path in (one, several, grid_png):
        assert_png(path)
    with pytest.raises(ValueError, match="no depth_grid"):
        plot_depth_grid(fake_results("MRL", 0))
    plt.close("all")


# ---------------------------------------------------------------- end to end (notebook tier)


@pytest.mark.notebooks
def test_ese_run_records_depth_grid(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from samd_common.experiment import make_config, run_experiment
    from samd_common.experiment import plot_depth_grid as nb_grid

    result = run_experiment(make_config("ESE", preset="smoke", output_dir=str(tmp_path)))
    payload = json.loads(result.results_path.read_text())
    assert payload["depths"] == [1, 2] and payload["dims"] == [32, 16]
    grid = payload["depth_grid"]
    assert {"stsb/spearman@16/L1", "avg/all/id@32/L2", "avg/all/ood@16/L1"} <= set(grid)
    assert grid["avg/all/id@32/L2"] == payload["metrics"]["avg/all/id@32"]
    assert all(math.isfinite(v) for v in grid.values())
    nb_grid(result, tmp_path / "grid.png")
    assert_png(tmp_path / "grid.png")
