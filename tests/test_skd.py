"""SKD: sense dictionaries (gather, merge, MCL/k-means), sense loss, LLM2Vec loading, pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from samd_common.models import load_encoder
from samd_common.skd import clustering, senses
from samd_common.skd.clustering import (
    cluster_senses,
    cluster_token,
    markov_clustering,
    mcl_affinity,
    sense_count,
)
from samd_common.skd.loss import (
    SKDLoss,
    SKDParams,
    build_skd,
    replace_with_senses,
    sense_distillation_loss,
    sense_scores,
    span_group_pairs,
)
from samd_common.skd.senses import ReservoirSampler, SenseTable, merge_tables


# ------------------------------------------------------------------ clustering
def test_mcl_finds_separated_cliques():
    cliques = [(0, 1, 2, 3), (4, 5, 6, 7, 8), (9, 10, 11)]
    adj = np.zeros((12, 12))
    for c in cliques:
        adj[np.ix_(c, c)] = 1.0
    adj[3, 4] = adj[4, 3] = 0.05  # a weak bridge does not merge them
    found = [tuple(c.tolist()) for c in markov_clustering(adj)]
    assert found == cliques


def test_mcl_on_states_recovers_blobs():
    rng = np.random.default_rng(0)
    blobs = [rng.normal(c, 0.01, size=(7, 16)) for c in (0.0, 3.0, 6.0)]
    found = markov_clustering(mcl_affinity(np.concatenate(blobs)), expansion=2, inflation=1.65)
    assert [c.tolist() for c in found] == [
        list(range(0, 7)),
        list(range(7, 14)),
        list(range(14, 21)),
    ]


@pytest.mark.parametrize(
    ("n_mcl", "k"),
    [(0, 5), (1, 5), (49, 5), (60, 6), (99, 9), (900, 90), (901, 360), (1000, 400)],
)
def test_sense_count_rule(n_mcl, k):
    assert sense_count(n_mcl) == k


def test_cluster_token_count_rules():
    rng = np.random.default_rng(0)
    few = rng.normal(size=(4, 8))
    out, n_mcl = cluster_token(few)  # < 5 states: not clustered, states are the senses
    np.testing.assert_allclose(out, few.astype(np.float32))
    assert n_mcl == 0
    five = rng.normal(size=(5, 8))
    out, n_mcl = cluster_token(five)  # ≤ k = 5 states: kept as senses
    assert len(out) == 5 and n_mcl >= 1
    blobs = np.concatenate([rng.normal(c, 0.01, size=(20, 8)) for c in (0.0, 4.0, 8.0)])
    out, n_mcl = cluster_token(blobs)  # MCL: 3 clusters → k = 5 k-means centroids
    assert n_mcl == 3 and out.shape == (5, 8)
    out, n_mcl = cluster_token(rng.normal(size=(80, 8)), method="kmeans")  # fast: ⌊0.1·80⌋ = 8
    assert n_mcl == 0 and out.shape == (8, 8)
    with pytest.raises(ValueError, match="mcl"):
        cluster_token(blobs, method="hdbscan")


def _table(rows: dict[int, np.ndarray], tok="tok", seen=None) -> SenseTable:
    return SenseTable.from_dict(rows, seen, {"kind": "states", "tokenizer": tok})


def test_cluster_senses_parallel_equals_serial_and_resumes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rows = {
        v: rng.normal(v, 1.0, size=(int(n), 6))
        for v, n in zip(range(12), rng.integers(1, 30, 12), strict=True)
    }
    table = _table(rows)
    serial = cluster_senses(table, "kmeans", jobs=1, shard_size=3, show_progress=False)
    parallel = cluster_senses(table, "kmeans", jobs=2, shard_size=3, show_progress=False)
    np.testing.assert_array_equal(serial.token_ids, parallel.token_ids)
    np.testing.assert_allclose(serial.vectors, parallel.vectors)
    assert serial.meta["kind"] == "senses" and len(serial) == 12

    real = clustering._cluster_shard
    calls = []

    def flaky(shard, items, kwargs):
        calls.append(shard)
        if len(calls) == 3:
            raise KeyboardInterrupt  # interrupted after two shards
        return real(shard, items, kwargs)

    monkeypatch.setattr(clustering, "_cluster_shard", flaky)
    out = tmp_path / "dictionary"
    with pytest.raises(KeyboardInterrupt):
        cluster_senses(table, "kmeans", shard_size=3, out_dir=out, show_progress=False)
    assert (
        not senses.is_complete(out) and len(list(Path(f"{out}.partial").glob("shard-*.npz"))) == 2
    )
    calls.clear()

    def counted(shard, items, kwargs):
        calls.append(shard)
        return real(shard, items, kwargs)

    monkeypatch.setattr(clustering, "_cluster_shard", counted)
    resumed = cluster_senses(table, "kmeans", shard_size=3, out_dir=out, show_progress=False)
    assert sorted(calls) == [2, 3]  # only the two unfinished of the four shards are recomputed
    np.testing.assert_allclose(resumed.vectors, serial.vectors)
    assert senses.is_complete(out) and not Path(f"{out}.partial").exists()
    np.testing.assert_allclose(SenseTable.load(out).vectors, serial.vectors)


def test_reservoir_caps_counts_and_is_batch_independent():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 5, size=400)
    vecs = np.arange(400, dtype=np.float16)[:, None].repeat(3, 1)
    one = ReservoirSampler(cap=20, seed=1)
    one.add(keys, vecs)
    split = ReservoirSampler(cap=20, seed=1)
    for a in range(0, 400, 37):
        split.add(keys[a : a + 37], vecs[a : a + 37])
    t1, t2 = one.table(), split.table()
    np.testing.assert_array_equal(t1.vectors, t2.vectors)
    assert t1.counts.max() == 20 and t1.seen.tolist() == np.bincount(keys).tolist()
    for v in range(5):  # every kept row is an occurrence of its key
        assert set(t1.rows(v)[:, 0].astype(int)) <= set(np.flatnonzero(keys == v))


def test_merged_table_is_the_union_of_the_per_task_tables():
    rng = np.random.default_rng(0)
    a = _table({1: rng.normal(size=(3, 4)), 2: rng.normal(size=(2, 4))})
    b = _table({2: rng.normal(size=(4, 4)), 5: rng.normal(size=(1, 4))})
    merged = merge_tables([a, b], max_per_token=100)
    assert merged.token_ids.tolist() == [1, 2, 5]
    for v in (1, 2, 5):
        union = np.concatenate([a.rows(v), b.rows(v)])
        np.testing.assert_array_equal(merged.rows(v), union)
    assert merged.seen.tolist() == [3, 6, 1]
    capped = merge_tables([a, b], max_per_token=3, seed=0)
    union2 = {tuple(r) for r in np.concatenate([a.rows(2), b.rows(2)]).tolist()}
    assert len(capped.rows(2)) == 3 and {tuple(r) for r in capped.rows(2).tolist()} <= union2
    with pytest.raises(ValueError, match="different tokenizers"):
        merge_tables([a, _table({1: rng.normal(size=(1, 4))}, tok="other")])


def test_gather_task_reads_teacher_states_and_resumes(tiny_dirs, tmp_path):
    teacher = load_encoder(str(tiny_dirs["teacher"]), device="cpu")
    texts = ["A man is playing a guitar.", "The dog found my wallet today.", "A man lost a horse."]
    path = senses.gather_task(teacher, texts, tmp_path, "toy", max_per_token=2, show_progress=False)
    table = SenseTable.load(path)
    ids, states = zip(*senses.teacher_token_states(teacher, texts), strict=True)
    ids, states = np.concatenate(ids), np.concatenate(states)
    assert table.seen.sum() == len(ids) and table.counts.max() <= 2
    for v in table.token_ids:  # rows are real teacher states of that token id
        for row in table.rows(int(v)):
            assert np.isclose(states[ids == v], row, atol=1e-3).all(1).any()
    stamp = (path / "meta.json").stat().st_mtime_ns
    senses.gather_task(teacher, texts, tmp_path, "toy", max_per_token=2, show_progress=False)
    assert (path / "meta.json").stat().st_mtime_ns == stamp  # complete table: skipped
    assert not list(tmp_path.glob("*.partial"))


# ------------------------------------------------------------------ the sense loss
def _dictionary():
    c = 3.0 * torch.eye(4)[:3]  # entry 0 (token id 7): three orthogonal senses
    centroids = torch.cat([c, torch.ones(1, 4)])  # entry 1 (token id 9): one sense
    offsets = torch.tensor([0, 3, 4])
    entry_of_id = torch.full((10,), -1)
    entry_of_id[7], entry_of_id[9] = 0, 1
    return c, centroids, offsets, entry_of_id


def test_sense_target_of_a_centroid_is_that_centroid():
    c, centroids, offsets, entry_of_id = _dictionary()
    teacher = torch.stack([c[2], torch.randn(4)])[None]  # (1, 2, 4)
    student = (10 * c[2]).repeat(1, 2, 1).requires_grad_()  # (1, 2, 4)
    groups = torch.tensor([[0, 1]])
    loss, stats = sense_distillation_loss(
        student, teacher, torch.tensor([[7, 9]]), groups, groups, centroids, offsets, entry_of_id
    )
    assert stats == {"pairs": 1.0, "sense_acc": 1.0}  # id 9 has one sense: skipped
    assert 0 <= float(loss.detach()) < 1e-6
    scores, valid = sense_scores(c[2][None], torch.tensor([0]), centroids, offsets)
    assert int(scores.argmax()) == 2 and valid.tolist() == [[True, True, True]]
    noisy = (c[1] + 0.1 * torch.randn(4)).reshape(1, 1, 4)
    out = replace_with_senses(noisy, torch.tensor([0]), torch.tensor([0]), torch.tensor([0]),
                              centroids, offsets)  # fmt: skip
    torch.testing.assert_close(out[0, 0], c[1])


def test_sense_loss_is_a_connected_zero_without_entries_and_trains_otherwise():
    _, centroids, offsets, entry_of_id = _dictionary()
    student = torch.randn(2, 3, 4, requires_grad=True)
    teacher = torch.randn(2, 3, 4)
    groups = torch.tensor([[0, 1, -1], [0, -1, -1]])
    unknown = torch.tensor([[1, 2, 3], [4, 5, 6]])
    loss, stats = sense_distillation_loss(
        student, teacher, unknown, groups, groups, centroids, offsets, entry_of_id
    )
    assert float(loss.detach()) == 0.0 and loss.requires_grad and stats["pairs"] == 0
    loss.backward()
    assert student.grad is not None and float(student.grad.abs().sum()) == 0.0
    known = torch.tensor([[7, 7, 7], [7, 9, 9]])
    student.grad = None
    loss, stats = sense_distillation_loss(
        student, teacher, known, groups, groups, centroids, offsets, entry_of_id
    )
    loss.backward()
    assert stats["pairs"] == 3 and float(loss) > 0 and float(student.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="project"):
        sense_distillation_loss(
            torch.randn(2, 3, 5), teacher, known, groups, groups, centroids, offsets, entry_of_id
        )


def test_span_group_pairs_cover_many_to_one_groups():
    s_group = torch.tensor([[0, 0, 1, -1]])  # two student tokens in group 0
    t_group = torch.tensor([[0, 1, 1]])  # two teacher tokens in group 1
    b, j, i = span_group_pairs(s_group, t_group)
    assert list(zip(j.tolist(), i.tolist(), strict=True)) == [(0, 0), (1, 0), (2, 1), (2, 2)]


def _dict_for(teacher, texts, tmp_path, name="d") -> Path:
    stream = senses.teacher_token_states(teacher, texts)
    from samd_common.skd.senses import tokenizer_fingerprint

    meta = {"tokenizer": tokenizer_fingerprint(teacher.tokenizer), "teacher": "tiny"}
    table = senses.gather_senses(stream, 30, meta=meta, show_progress=False)
    return cluster_senses(table, "kmeans", out_dir=tmp_path / name, show_progress=False) and (
        tmp_path / name
    )


def test_skd_loss_trains_cross_tokenizer_and_reference_students(tiny_dirs, tmp_path):
    from samd_common.data.demo import synthetic_sentences
    from samd_common.models.llm2vec import first_layers
    from samd_common.training.batching import DistillDataset
    from samd_common.training.loop import TrainConfig, train
    from samd_common.training.teacher_cache import build_teacher_cache

    texts = synthetic_sentences(32, seed=3)
    teacher = load_encoder(str(tiny_dirs["teacher"]), device="cpu", attn_implementation="eager")
    dictionary = _dict_for(teacher, texts, tmp_path)
    cache = build_teacher_cache(
        teacher, texts, 32, cache_dir=tmp_path / "cache", show_progress=False
    )
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, show_progress=False)
    # cross-tokenizer: WordPiece student (32 wide) → Unigram teacher senses (48 wide)
    student = load_encoder(str(tiny_dirs["student"]), device="cpu")
    method = SKDLoss(student, dictionary)
    assert isinstance(method.proj, torch.nn.Linear) and not method.same_tokenizer
    data = DistillDataset(texts, student.tokenizer, 32, "", cache)
    hist = train(method, data, cfg, collate_fn=data.collate)
    assert len(hist.steps) == 4 and all(
        np.isfinite(s["loss"]) and s["pairs"] > 0 for s in hist.steps
    )
    # reference setting: the teacher's own first 2 layers, identity W, 1:1 token mapping
    ref = first_layers(teacher, 2)
    method = SKDLoss(ref, dictionary)
    assert isinstance(method.proj, torch.nn.Identity) and method.same_tokenizer
    data = DistillDataset(texts, ref.tokenizer, 32, "", cache)
    batch = data.collate([data[i] for i in range(4)])
    b, j, i = span_group_pairs(batch["s_group"], batch["t_group"])
    assert torch.equal(batch["input_ids"][b, j], batch["t_input_ids"][b, i]) and torch.equal(j, i)
    loss, logs = method(batch, 0, 1)
    loss.backward()
    assert logs["pairs"] > 0 and ref.backbone.embeddings.word_embeddings.weight.grad is not None


def test_first_layers_copies_the_teachers_blocks(tiny_dirs):
    from samd_common.models.llm2vec import first_layers

    teacher = load_encoder(str(tiny_dirs["teacher"]), device="cpu")
    student = first_layers(teacher, 2)
    assert student.backbone.config.num_hidden_layers == 2 and student.dim == teacher.dim
    batch = teacher.tokenize(["A man is playing a guitar."])
    with torch.no_grad():
        full = teacher.backbone(**batch, output_hidden_states=True).hidden_states[2]
        torch.testing.assert_close(student.backbone(**batch).last_hidden_state, full)
    with pytest.raises(ValueError, match="1..3"):
        first_layers(teacher, 4)


def test_builder_needs_a_dictionary_and_params_are_checked(tiny_dirs):
    student = load_encoder(str(tiny_dirs["student"]), device="cpu")
    with pytest.raises(ValueError, match="params\\['dictionary'\\]"):
        build_skd(student, None, {"mode": "all"})
    with pytest.raises(ValueError, match="Unknown SKD parameter"):
        SKDParams.from_dict({"dictionnary": "x"})
    with pytest.raises(ValueError, match="mode in all\\|sep"):
        SKDParams(mode="both")


def test_registry_entry():
    from samd_common.methods import get_method

    spec = get_method("SKD")
    assert spec.family == "ctkd" and spec.defaults["mode"] == "all" and spec.citation


# ------------------------------------------------------------------ LLM2Vec teacher path
@pytest.fixture(scope="module")
def tiny_llm2vec(tmp_path_factory):
    """A random 2-layer Llama with two LoRA adapters (MNTP-like, then supervised-like)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaModel

    from samd_common.data.demo import synthetic_sentences
    from samd_common.models.tiny import train_wordpiece

    root = tmp_path_factory.mktemp("llm2vec")
    tok = train_wordpiece(synthetic_sentences(200), vocab_size=200)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    base = LlamaModel(cfg).eval()
    base.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    (root / "base" / "samd_model.json").write_text(json.dumps({"pooling": "mean"}))
    adapters = []
    for k in range(2):
        torch.manual_seed(10 + k)
        lora = LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        )
        peft_model = get_peft_model(LlamaModel.from_pretrained(root / "base"), lora)
        peft_model.save_pretrained(root / f"adapter{k}")
        adapters.append(str(root / f"adapter{k}"))
    return root / "base", adapters


def test_llm2vec_merges_adapters_exactly(tiny_llm2vec):
    from safetensors.torch import load_file
    from transformers import LlamaModel

    from samd_common.models.llm2vec import merge_adapters

    base_dir, adapters = tiny_llm2vec
    base = LlamaModel.from_pretrained(base_dir)
    w0 = base.layers[0].self_attn.q_proj.weight.detach().clone()
    merged = merge_adapters(base, adapters)
    delta = torch.zeros_like(w0)
    for a in adapters:
        sd = load_file(Path(a) / "adapter_model.safetensors")
        pre = next(k for k in sd if "layers.0.self_attn.q_proj.lora_A" in k).rsplit("lora_A", 1)[0]
        delta += (8 / 4) * sd[pre + "lora_B.weight"] @ sd[pre + "lora_A.weight"]
    torch.testing.assert_close(merged.layers[0].self_attn.q_proj.weight, w0 + delta)
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_llm2vec_loads_through_the_model_table_bidirectional(tiny_llm2vec):
    from samd_common.models import MODELS
    from samd_common.models.llm2vec import first_layers

    base_dir, adapters = tiny_llm2vec
    ref = MODELS["llm2vec-llama3-8b"]
    assert ref.bidirectional and len(ref.adapters) == 2 and ref.pooling == "mean"
    bi = load_encoder(str(base_dir), device="cpu", adapters=tuple(adapters), bidirectional=True)
    causal = load_encoder(str(base_dir), device="cpu", adapters=tuple(adapters))
    texts = ["A man is playing a guitar.", "The dog found my wallet.", "ok"]
    x_bi, x_causal = bi.encode(texts), causal.encode(texts)
    assert x_bi.shape == (3, 32) and np.isfinite(x_bi).all()
    assert not np.allclose(x_bi, x_causal, atol=1e-4)
    a = bi.tokenize(["the dog found my wallet"])
    b = bi.tokenize(["the dog found my guitar"])
    with torch.no_grad():
        first = lambda enc, batch: enc.backbone(**batch).last_hidden_state[0, 1]  # noqa: E731
        assert not torch.allclose(first(bi, a), first(bi, b))  # sees the last word
        torch.testing.assert_close(first(causal, a), first(causal, b))  # causal: it does not
        padded = bi.tokenize(["the dog found my wallet", "a much longer sentence than that one"])
        torch.testing.assert_close(
            bi.backbone(**padded).last_hidden_state[0, :5],
            bi.backbone(**a).last_hidden_state[0, :5],
            atol=1e-5,
            rtol=1e-4,
        )  # padding is masked out
    student = first_layers(bi, 1)
    assert student.backbone.config.num_hidden_layers == 1
    with torch.no_grad():
        assert not torch.allclose(first(student, a), first(student, b))  # still bidirectional


def test_encode_with_instruction_pools_text_tokens_only(tiny_llm2vec):
    from samd_common.models.llm2vec import encode_with_instruction

    base_dir, adapters = tiny_llm2vec
    enc = load_encoder(str(base_dir), device="cpu", adapters=tuple(adapters), bidirectional=True)
    x = encode_with_instruction(enc, ["a man lost a horse", "the dog"], "classify the intent:")
    y = encode_with_instruction(enc, ["a man lost a horse", "the dog"])
    assert x.shape == (2, 32) and not np.allclose(x, y)


# ------------------------------------------------------------------ the pipeline
def test_skd_sep_reference_setting_runs_through_run_experiment(tmp_path):
    from samd_common.experiment import make_config, results_table, run_experiment

    cfg = make_config(
        "SKD",
        mode="sep",
        student="teacher:2",
        preset="smoke",
        output_dir=str(tmp_path),
        n_experiments=1,
        max_texts=40,
    )
    result = run_experiment(cfg)
    payload = json.loads(Path(result.results_path).read_text())
    assert payload["flavour"] == "SKD-sep" and payload["method"] == "SKD"
    assert result.results_path.parent.name.startswith("SKD-sep-tiny-teacher-to-teacher2-")
    assert set(payload["dictionaries"]) == {"Banking77Classification", "EmotionClassification"}
    for mode in ("replace", "continuous"):
        assert np.isfinite(payload["metrics"][f"{mode}/EmotionClassification/accuracy@48"])
    assert np.isfinite(payload["metrics"]["avg/all/id@48"]) and payload["dims"] == [48]
    assert set(payload["timings"]) >= {"train_s", "eval_after_s", "total_s"}
    curve = payload["history"]["steps"]  # the training curve: both groups' steps, in order
    assert len(curve["step"]) >= 2 and {"loss", "sense"} <= set(curve)
    assert curve["step"][-1] == payload["train"]["last"][0]["step"]
    assert results_table(result).shape[0] == 2
    for name in ("Banking77Classification", "EmotionClassification"):
        assert (Path(result.students[name]) / "skd_head.pt").is_file()
    again = run_experiment(cfg)  # resumes: dictionaries are reused
    assert again.metrics == result.metrics


def test_skd_settings_are_checked_before_anything_runs(tmp_path):
    from samd_common.experiment import make_config, run_experiment

    out = str(tmp_path)
    with pytest.raises(ValueError, match="cluster in mcl"):
        run_experiment(make_config("SKD", preset="smoke", output_dir=out, cluster="dbscan"))
    with pytest.raises(ValueError, match="Unknown SKD parameter"):
        run_experiment(make_config("SKD", preset="smoke", output_dir=out, params={"w_kdd": 1}))
    cfg = make_config("SKD", preset="smoke", output_dir=out, mode="sep", train_csv="x.csv")
    with pytest.raises(ValueError, match="only works with mode='all'"):
        run_experiment(cfg)


def test_mteb_evaluation_json_is_a_reference_for_collect_results(tmp_path):
    """``scripts/evaluate.py --protocol mteb --output`` writes a record the SKD table reads."""
    import importlib.util

    from samd_common.reporting.tables import load_references, mteb_summary
    from samd_common.skd.steps import write_smoke_data

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("evaluate_cli", root / "scripts" / "evaluate.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    data = write_smoke_data(tmp_path / "mteb")
    out = tmp_path / "sweep" / "_reference" / "teacher-tiny.json"
    argv = ["--protocol", "mteb", "--model", "tiny-teacher", "--tasks", "Banking77"]
    argv += ["--eval-dir", str(data), "--splits", "test", "--n-experiments", "1"]
    assert cli.main([*argv, "--output", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["method"] == "eval" and payload["model"] == "tiny-teacher"
    assert "torch" in payload["env"] and payload["config"]["eval"]["splits"] == ["test"]
    table = mteb_summary([], load_references(out.parent.parent))
    assert list(table.label.unique()) == ["teacher (tiny-teacher)"]
    assert table.loc[0, "column"].startswith("Banking77Classification@")
    assert 0.0 <= table.loc[0, "mean"] <= 100.0
    assert cli.main([*argv[:4], "--tasks", "NoSuchTask", "--eval-dir", str(data)]) == 2
