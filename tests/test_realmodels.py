"""Real-weights tier: provisioned MiniLM / e5-small (``scripts/offline_models.py``) on real data."""

from __future__ import annotations

import numpy as np
import pytest

from samd_common.config import EvalConfig
from samd_common.data.tasks import load_tasks
from samd_common.evaluation.suite import evaluate_suite
from samd_common.models import load_encoder, save_encoder
from samd_common.provision.install import provisioned_path

pytestmark = pytest.mark.realmodels
TEXTS = ["A man is playing a guitar.", "Café naïve résumé — 東京は日本の首都です。", "ok"]


def _require(name: str):
    path = provisioned_path(name)
    if path is None:
        pytest.fail(f"{name} is not provisioned: run `python scripts/offline_models.py {name}`")
    return path


@pytest.fixture(scope="module")
def minilm():
    _require("minilm-l6")
    return load_encoder("minilm-l6", device="cpu")


def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers", reason="pip install -e '.[dev]'")
    ref = st.SentenceTransformer(str(_require("minilm-l6")), device="cpu").encode(TEXTS)
    ours = minilm.encode(TEXTS)
    assert np.min(np.sum(ours * ref, axis=1)) > 0.9999


def test_minilm_stsb_reproduces_mteb_published_score(minilm, real_eval_dir):
    """MTEB's published STSBenchmark score of all-MiniLM-L6-v2 is 82.03 (Spearman × 100)."""
    result = evaluate_suite(minilm, load_tasks(["stsb"], real_eval_dir), dims=[384])
    assert result.metrics["stsb/spearman@384"] == pytest.approx(82.03, abs=1.0)


def test_e5_small_encodes_with_query_prompt():
    _require("e5-small")
    enc = load_encoder("e5-small", device="cpu")
    assert enc.spec.prompt == "query: " and enc.dim == 384
    x = enc.encode(["A man is playing a guitar.", "A man plays the guitar.", "Stocks fell."])
    assert x[0] @ x[1] > x[0] @ x[2]


def test_small_suite_run_on_real_data(minilm, real_eval_dir):
    tasks = load_tasks(["banking77", "wic", "sickr"], real_eval_dir)
    for t in tasks:  # keep the tier fast: subsample every test split
        t.splits["test"] = t.splits["test"].subset(np.arange(300))
    result = evaluate_suite(minilm, tasks, dims=[384, 64], cfg=EvalConfig(max_train=1000))
    assert 60 < result.metrics["banking77/accuracy@384"] <= 100
    assert result.metrics["wic/threshold@384"] > 0  # fitted on wic_dev, not test
    assert result.metrics["sickr/spearman@64"] < result.metrics["sickr/spearman@384"] + 5


def _st_similarity_evaluator():
    """sentence-transformers' own ``EmbeddingSimilarityEvaluator`` (v6 path, then the older one)."""
    pytest.importorskip("sentence_transformers", reason="pip install -e '.[dev]'")
    try:
        from sentence_transformers.sentence_transformer.evaluation import (
            EmbeddingSimilarityEvaluator,
        )
    except ImportError:
        from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator
    return EmbeddingSimilarityEvaluator


def test_saved_student_scores_the_same_stsb_in_sentence_transformers(
    minilm, real_eval_dir, tmp_path
):
    """A saved student loads with ``SentenceTransformer(path[, truncate_dim])`` and scores the
    whole STS-B test set as our suite does (Spearman × 100, within 0.01), at 384 and 128 dims."""
    st = pytest.importorskip("sentence_transformers", reason="pip install -e '.[dev]'")
    evaluator_cls = _st_similarity_evaluator()
    if not (real_eval_dir / "stsb_test.csv").is_file():
        pytest.skip(f"no stsb_test.csv in {real_eval_dir}")
    tasks = load_tasks(["stsb"], real_eval_dir)
    ours = evaluate_suite(minilm, tasks, dims=[384, 128], cfg=EvalConfig(max_test=None)).metrics
    path = save_encoder(minilm, tmp_path / "student")
    test = tasks[0].splits["test"]
    for dim in (384, 128):
        model = st.SentenceTransformer(str(path), device="cpu", truncate_dim=dim)
        evaluator = evaluator_cls(test.text1, test.text2, test.y.tolist(), name="stsb-test")
        theirs = 100 * evaluator(model)["stsb-test_spearman_cosine"]
        assert model.encode(["a"]).shape == (1, dim)
        assert theirs == pytest.approx(ours[f"stsb/spearman@{dim}"], abs=0.01)


@pytest.mark.slow
def test_embeddinggemma_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers", reason="pip install -e '.[dev]'")
    path = _require("embeddinggemma-300m")
    enc = load_encoder("embeddinggemma-300m", device="cpu")
    assert enc.dim == 768
    ref = st.SentenceTransformer(str(path), device="cpu").encode(TEXTS, prompt_name="STS")
    assert np.min(np.sum(enc.encode(TEXTS) * ref, axis=1)) > 0.999
