"""Property tests of the span and MinED alignment primitives on hard strings.

Tokenizer quirks these tests pin down (offsets of the fast tokenizers, transformers 5):

* Zero-width characters can be dropped: a combining mark written as its own code point
  (``e`` + U+0301) gets no offset in the lower-casing/accent-stripping WordPiece tokenizers
  (tiny, MiniLM) nor in the NFKC Unigram ones (tiny, e5); U+200B is dropped by MiniLM and e5,
  and e5 drops U+200D (ZWJ) inside emoji sequences (it maps them to a lone ``▁``, which carries no
  content). MiniLM's ``[UNK]`` tokens keep their offsets, so emoji, flags, full-width text and
  rare CJK are covered. Every dropped character is in Unicode category Mn or Cf.
* EmbeddingGemma's byte-fallback pieces (``<0xF0><0x93><0x80><0x80>`` for 𓀀) all carry the span
  of their one character, so "each character is covered by exactly one real token" becomes
  "two real tokens of one tokenizer have disjoint or identical spans".
* Consequently a student group and its teacher group cover the same characters *up to characters
  that the other tokenizer drops entirely*.
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np
import pytest
import transformers
from transformers import AutoTokenizer

from samd_common.alignment import (
    SpanBatch,
    align_batch,
    batch_overlap,
    batch_span_groups,
    coverage,
    dtw_path,
    edit_distance,
    edit_distance_matrix,
    min_edit_distance_alignment,
    naive_overlap,
    normalize_token,
    normalized_edit_distance_matrix,
    row_normalize,
    span_groups,
    span_overlap_matrix,
    token_spans,
    token_strings,
)
from samd_common.data.demo import synthetic_sentences
from samd_common.provision.install import provisioned_path

HARD = [
    "👩‍👩‍👧 and 👨‍👩‍👧‍👦 family 🇫🇷🇯🇵 flags 👍🏽!",
    "東京は日本の首都です。北京欢迎你",
    "café cafe\u0301 naïve Ångström résumé",
    "a  b\t\tc   d \n e",
    "see https://example.com/a?b=1&c=%20 now",
    "3.14 $1,000 1e-5 -42",
    "ＡＢＣ１２３ full-width！",
    "Mon\u00adday zero\u200bwidth",
    "𓀀 ancient 🫠 melt",
    "Ελληνικά русский язык עברית العربية",
    "don't stop—it's 10:30 a.m.",
    "x",
]
LONG = "The quick brown fox jumps over the lazy dog near the riverbank at 10:30 today. " * 3
REAL = ["minilm-l6", "e5-small", "embeddinggemma-300m"]
TOKENIZERS = [
    "tiny-student",
    "tiny-teacher",
    *[pytest.param(n, marks=pytest.mark.realmodels) for n in REAL],
]
PAIRS = [("tiny-student", "tiny-teacher")] + [
    pytest.param(a, b, marks=pytest.mark.realmodels)
    for a, b in [
        ("minilm-l6", "e5-small"),
        ("minilm-l6", "embeddinggemma-300m"),
        ("e5-small", "embeddinggemma-300m"),
        ("e5-small", "minilm-l6"),
    ]
]
ZERO_WIDTH = {"Mn", "Cf"}


@functools.cache
def _load(path: str):
    return AutoTokenizer.from_pretrained(path)


@pytest.fixture
def get_tok(tiny_dirs):
    def get(name: str):
        if name.startswith("tiny-"):
            return _load(str(tiny_dirs[name.removeprefix("tiny-")]))
        path = provisioned_path(name)
        if path is None:
            pytest.skip(f"{name} is not provisioned: run `python scripts/offline_models.py {name}`")
        return _load(str(path))

    return get


def _char_counts(text: str, spans: np.ndarray, real: np.ndarray) -> np.ndarray:
    counts = np.zeros(len(text), dtype=int)
    for a, e in spans[real]:
        counts[a:e] += 1
    return counts


def _chars(spans: np.ndarray) -> set[int]:
    return {k for a, e in spans for k in range(a, e)}


# ---------------------------------------------------------------- token_spans
@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("prompt", ["", "query: ", "passage: "])
def test_spans_cover_text_once(get_tok, name, prompt):
    tok = get_tok(name)
    batch = token_spans(tok, HARD, max_length=256, prompt=prompt)
    assert batch.spans.dtype == np.int32 and batch.input_ids.dtype == np.int64
    assert batch.real.shape == batch.input_ids.shape == batch.attention_mask.shape
    assert (batch.spans[~batch.real] == 0).all()
    for b, text in enumerate(HARD):
        spans, real = batch.spans[b], batch.real[b]
        assert ((spans[real, 0] >= 0) & (spans[real, 1] <= len(text))).all()
        assert (spans[real, 1] > spans[real, 0]).all()
        for a, e in spans[real]:  # trimmed: no whitespace at either end
            assert not text[a].isspace() and not text[e - 1].isspace()
        counts = _char_counts(text, spans, real)
        dropped = [c for c, n in zip(text, counts, strict=True) if n == 0 and not c.isspace()]
        assert {unicodedata.category(c) for c in dropped} <= ZERO_WIDTH, (text, dropped)
        # each character at most once, except byte-fallback pieces sharing one character's span
        live = spans[real]
        for p in range(len(live)):
            for q in range(p + 1, len(live)):
                shared = min(live[p, 1], live[q, 1]) - max(live[p, 0], live[q, 0])
                assert shared <= 0 or (live[p] == live[q]).all(), (text, live[p], live[q])


@pytest.mark.realmodels
def test_known_quirks(get_tok):
    """The quirks listed in the module docstring, pinned so a tokenizer update shows up."""
    text = "cafe\u0301 👩\u200d👧 zero\u200bwidth 𓀀"
    dropped, shared = {}, {}
    for name in REAL:
        b = token_spans(get_tok(name), [text], 64)
        counts = _char_counts(text, b.spans[0], b.real[0])
        dropped[name] = {f"U+{ord(c):04X}" for c, n in zip(text, counts, strict=True) if n == 0}
        dropped[name] -= {"U+0020"}
        shared[name] = bool((counts > 1).any())
    assert dropped == {
        "minilm-l6": {"U+0301", "U+200B"},
        "e5-small": {"U+0301", "U+200D", "U+200B"},
        "embeddinggemma-300m": set(),
    }
    assert shared == {"minilm-l6": False, "e5-small": False, "embeddinggemma-300m": True}


@pytest.mark.realmodels
def test_unk_tokens_keep_offsets(get_tok):
    tok = get_tok("minilm-l6")
    text = "🇫🇷 ＡＢＣ１２３ ok"
    b = token_spans(tok, [text], 64)
    pieces = tok.convert_ids_to_tokens(b.input_ids[0])
    unk = [
        tuple(sp)
        for p, sp, r in zip(pieces, b.spans[0], b.real[0], strict=True)
        if p == tok.unk_token and r
    ]
    assert unk == [(0, 2), (3, 9)]


def test_specials_padding_prompt_are_not_real(get_tok):
    tok = get_tok("tiny-student")
    b = token_spans(tok, ["a man", "the woman likes a guitar"], 64, prompt="query: ")
    ids = b.input_ids
    special = np.isin(ids, tok.all_special_ids)
    assert not (b.real & special).any() and not b.real[b.attention_mask == 0].any()
    assert b.attention_mask[0].sum() < b.attention_mask[1].sum()  # row 0 is padded
    pieces = [tok.convert_ids_to_tokens(row) for row in ids]
    assert [p for p, r in zip(pieces[0], b.real[0], strict=True) if r] == ["a", "man"]
    assert [tuple(s) for s in b.spans[0][b.real[0]]] == [(0, 1), (2, 5)]


def test_token_straddling_the_prompt_is_clipped(get_tok):
    tok = get_tok("tiny-student")
    b = token_spans(tok, ["man likes a cat"], 64, prompt="the wo")  # "woman" straddles
    pieces = tok.convert_ids_to_tokens(b.input_ids[0])
    spans = b.spans[0].tolist()
    real = [(p, tuple(sp)) for p, sp, r in zip(pieces, spans, b.real[0], strict=True) if r]
    assert real == [("woman", (0, 3)), ("likes", (4, 9)), ("a", (10, 11)), ("cat", (12, 15))]


def test_truncation_spans_prefix_only(get_tok):
    tok = get_tok("tiny-student")
    b = token_spans(tok, [LONG], max_length=8)
    assert b.input_ids.shape == (1, 8) and b.real.sum() == 6  # minus [CLS], [SEP]
    end = b.spans[0, b.real[0], 1].max()
    counts = _char_counts(LONG, b.spans[0], b.real[0])
    assert all(counts[k] == 1 for k in range(end) if not LONG[k].isspace())
    assert counts[end:].sum() == 0


def test_slow_tokenizer_is_rejected(get_tok, tmp_path):
    legacy = getattr(transformers, "BertTokenizerLegacy", transformers.BertTokenizer)
    vocab = get_tok("tiny-student").get_vocab()
    (tmp_path / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n")
    slow = legacy(str(tmp_path / "vocab.txt"), name_or_path="my-slow-bert")
    if slow.is_fast:
        pytest.skip("this transformers version has no slow BERT tokenizer")
    with pytest.raises(ValueError, match="my-slow-bert.*fast tokenizer.*MinED"):
        token_spans(slow, ["hello"], 16)
    ids = slow(["a man"])["input_ids"][0]
    assert token_strings(slow, ids, [False, True, True, False]) == ["", "a", "man", ""]


# ---------------------------------------------------------------- overlap and groups
@pytest.mark.parametrize(("s_name", "t_name"), PAIRS)
def test_groups_pair_the_same_characters(get_tok, s_name, t_name):
    s = token_spans(get_tok(s_name), HARD, 256, prompt="passage: ")
    t = token_spans(get_tok(t_name), HARD, 256, prompt="query: ")
    out = align_batch(s, t)
    assert out["overlap"].dtype == np.float32 and set(out) == {"overlap", "s_group", "t_group"}
    np.testing.assert_array_equal(out["overlap"], naive_overlap(s.spans, t.spans, s.real, t.real))
    for b, text in enumerate(HARD):
        s_gid, t_gid = out["s_group"][b], out["t_group"][b]
        n = s_gid.max() + 1
        assert n > 0 and t_gid.max() + 1 == n
        for gid in (s_gid, t_gid):  # monotone, dense 0..n-1, non-real tokens in no group
            v = gid[gid >= 0]
            assert (np.diff(v) >= 0).all() and set(v) == set(range(n))
        assert (s_gid[~s.real[b]] == -1).all() and (t_gid[~t.real[b]] == -1).all()
        s_cov, t_cov = _chars(s.spans[b][s.real[b]]), _chars(t.spans[b][t.real[b]])
        for g in range(n):
            cs, ct = _chars(s.spans[b][s_gid == g]), _chars(t.spans[b][t_gid == g])
            assert cs & t_cov == ct & s_cov, (text, g)  # equal up to characters one side drops
            assert all(unicodedata.category(text[k]) in ZERO_WIDTH for k in cs ^ ct)
        assert set(np.nonzero(s_gid >= 0)[0]) == set(np.nonzero(out["overlap"][b].sum(1))[0])


@pytest.mark.parametrize(("s_name", "t_name"), PAIRS)
def test_coverage_full_then_truncated(get_tok, s_name, t_name):
    texts = [t for t in HARD if not any(unicodedata.category(c) in ZERO_WIDTH for c in t)]
    s = token_spans(get_tok(s_name), texts, 256)
    t = token_spans(get_tok(t_name), texts, 256)
    c_s, c_t, conf = coverage(batch_overlap(s, t), s.real, t.real)
    np.testing.assert_array_equal(conf, 1.0)
    s8 = token_spans(get_tok(s_name), [LONG], 8)  # the student sees ~6 tokens, the teacher all
    t_full = token_spans(get_tok(t_name), [LONG], 256)
    c_s, c_t, conf = coverage(batch_overlap(s8, t_full), s8.real, t_full.real)
    assert c_s[0] == 1.0 and 0 < c_t[0] < 0.5 and conf[0] == c_t[0]


def _random_spans(rng: np.random.Generator, n_b: int, n_tok: int, length: int):
    spans = np.zeros((n_b, n_tok, 2), dtype=np.int32)
    real = np.zeros((n_b, n_tok), dtype=bool)
    for b in range(n_b):
        cuts = np.sort(rng.choice(np.arange(1, length), size=n_tok - 1, replace=False))
        edges = np.concatenate([[0], cuts, [length]])
        spans[b, :, 0], spans[b, :, 1] = edges[:-1], edges[1:]
        real[b] = rng.random(n_tok) < 0.85
        spans[b, ~real[b]] = 0
    return spans, real


def _naive_groups(o: np.ndarray) -> tuple[list[int], list[int]]:
    n_s, n_t = o.shape
    parent = list(range(n_s + n_t))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for j in range(n_s):
        for i in range(n_t):
            if o[j, i] > 0:
                parent[find(j)] = find(n_s + i)
    linked = [o[j].any() for j in range(n_s)] + [o[:, i].any() for i in range(n_t)]
    ids: dict[int, int] = {}
    for j in range(n_s):  # numbered by first student token
        if linked[j]:
            ids.setdefault(find(j), len(ids))
    labels = [ids[find(k)] if linked[k] else -1 for k in range(n_s + n_t)]
    return labels[:n_s], labels[n_s:]


def test_vectorised_equals_naive_on_random_batches():
    rng = np.random.default_rng(0)
    for n_tok_s, n_tok_t in [(5, 9), (17, 11), (30, 30)]:
        s_spans, s_real = _random_spans(rng, 6, n_tok_s, 60)
        t_spans, t_real = _random_spans(rng, 6, n_tok_t, 60)
        s = SpanBatch(np.zeros(s_real.shape, np.int64), s_real.astype(np.int64), s_spans, s_real)
        t = SpanBatch(np.zeros(t_real.shape, np.int64), t_real.astype(np.int64), t_spans, t_real)
        o = batch_overlap(s, t)
        np.testing.assert_array_equal(o, naive_overlap(s_spans, t_spans, s_real, t_real))
        np.testing.assert_array_equal(
            o[0], span_overlap_matrix(s_spans[0], t_spans[0]) * np.outer(s_real[0], t_real[0])
        )
        s_gid, t_gid = batch_span_groups(o, s_real, t_real)
        for b in range(6):
            ref_s, ref_t = _naive_groups(o[b])
            assert s_gid[b].tolist() == ref_s and t_gid[b].tolist() == ref_t
        single = span_groups(o[2], s_real[2], t_real[2])
        assert (single[0] == s_gid[2]).all() and single[2] == s_gid[2].max() + 1


def test_row_normalize_and_coverage_hand_case():
    o = np.array([[2, 1, 0], [0, 0, 0], [0, 0, 3]], dtype=np.int32)
    a = row_normalize(o)
    np.testing.assert_allclose(a, [[2 / 3, 1 / 3, 0], [0, 0, 0], [0, 0, 1]], rtol=1e-6)
    assert a.dtype == np.float32
    c_s, c_t, conf = coverage(o, np.array([True, True, True]), np.array([True, False, True]))
    assert (float(c_s), float(c_t), float(conf)) == pytest.approx((2 / 3, 1.0, 2 / 3))
    empty = coverage(np.zeros((1, 2, 2)), np.zeros((1, 2), bool), np.ones((1, 2), bool))
    assert [float(x[0]) for x in empty] == [0.0, 0.0, 0.0]


def test_synthetic_sentences_align_fully(get_tok):
    texts = synthetic_sentences(32, seed=3)
    s = token_spans(get_tok("tiny-student"), texts, 64)
    t = token_spans(get_tok("tiny-teacher"), texts, 64)
    out = align_batch(s, t)
    assert (coverage(out["overlap"], s.real, t.real)[2] == 1).all()
    assert out["s_group"].shape == s.real.shape and out["s_group"].dtype == np.int64


# ---------------------------------------------------------------- MinED
def test_normalize_token_and_edit_distance():
    assert [normalize_token(x) for x in ["▁The", "ĠCat", "##s", " X ", "▁", "#"]] == [
        "the",
        "cat",
        "s",
        "x",
        "",
        "#",
    ]
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3
    words = ["", "a", "ab", "ba", "abc", "東京", "naïve", "xyzzy"]
    d = edit_distance_matrix(words, words[::-1])
    assert d.tolist() == [[edit_distance(a, b) for b in words[::-1]] for a in words]
    ned = normalized_edit_distance_matrix(["", "ab"], ["", "abcd"])
    np.testing.assert_allclose(ned, [[0, 1], [1, 0.5]])


def test_dtw_hand_computed():
    cost = np.array([[0, 2, 3], [1, 0, 2], [4, 1, 0], [4, 3, 1]], dtype=float)
    # accumulated: [[0,2,5],[1,0,2],[5,1,0],[9,4,1]] -> diagonal, then down
    assert dtw_path(cost) == [(0, 0), (1, 1), (2, 2), (3, 2)]
    assert dtw_path(np.zeros((1, 3))) == [(0, 0), (0, 1), (0, 2)]
    assert dtw_path(np.zeros((0, 3))) == []
    with pytest.raises(ValueError, match="2-D"):
        dtw_path(np.zeros(3))


def _naive_dtw(cost: np.ndarray) -> list[tuple[int, int]]:
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)  # acc[j + 1, i + 1] = D[j, i]
    acc[0, 0] = 0
    for j in range(n):
        for i in range(m):
            acc[j + 1, i + 1] = cost[j, i] + min(acc[j, i], acc[j, i + 1], acc[j + 1, i])
    path, j, i = [(n - 1, m - 1)], n - 1, m - 1
    while (j, i) != (0, 0):
        options = [(j - 1, i - 1), (j - 1, i), (j, i - 1)]  # diagonal first on ties
        j, i = min(options, key=lambda ji: acc[ji[0] + 1, ji[1] + 1])
        path.append((j, i))
    return path[::-1]


@pytest.mark.parametrize("integer", [False, True])
def test_dtw_matches_naive(integer):
    rng = np.random.default_rng(1)
    for n, m in [(1, 1), (3, 7), (12, 5), (20, 20), (40, 9)]:
        cost = rng.integers(0, 3, (n, m)).astype(float) if integer else rng.random((n, m))
        w = rng.random(n)[:, None] * rng.random(m)[None, :]  # CDM-style weights
        for c in (cost, cost * w):
            path = dtw_path(c)
            assert path[0] == (0, 0) and path[-1] == (n - 1, m - 1)
            steps = {(b[0] - a[0], b[1] - a[1]) for a, b in zip(path[:-1], path[1:], strict=True)}
            assert steps <= {(1, 0), (0, 1), (1, 1)}
            assert path == _naive_dtw(c)


def test_min_ed_alignment_cases():
    s = ["▁the", "▁cat", "s", "▁sat"]
    assert min_edit_distance_alignment(s, ["the", "##cat", "##s", "sat"]) == [
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 3),
    ]
    # Only some pairs survive. Cost (normalised edit distance) of the cheapest path:
    # the-the 0, cats-cat 1/4, sat-s 2/3, sat-sat 0 (total 0.92; cats-s instead would cost
    # 3/4 → 1.0), so "sat" has two partners and is dropped, and cats/cat are one-to-one but
    # unequal. Empty strings (specials, padding) take no part; indices refer to the full lists.
    s = ["", "▁the", "▁cats", "▁sat", ""]
    t = ["", "▁The", "▁cat", "s", "▁sat", "", ""]
    assert min_edit_distance_alignment(s, t) == [(1, 1)]
    # equal length but different strings -> dropped
    assert min_edit_distance_alignment(["▁a", "▁dog"], ["a", "dig"]) == [(0, 0)]
    assert min_edit_distance_alignment([], ["a"]) == []


def test_min_ed_reciprocal():
    s = ["▁the", "▁cat", "▁and", "▁the", "▁dog"]
    t = ["the", "cats", "and", "the", "dog"]
    # "cat"'s best match is "cats" (ed 1) but they differ -> dropped; repeated "the" pairs by
    # relative position
    assert min_edit_distance_alignment(s, t, reciprocal=True) == [(0, 0), (2, 2), (3, 3), (4, 4)]
    # not mutual: both student "a"s prefer the one teacher "a"; the nearer one wins
    assert min_edit_distance_alignment(["a", "b", "a"], ["b", "a"], reciprocal=True) == [
        (1, 0),
        (2, 1),
    ]


@pytest.mark.parametrize(("s_name", "t_name"), PAIRS)
def test_min_ed_on_real_tokenizations(get_tok, s_name, t_name):
    text = ["The quick brown fox jumps over the lazy dog near the café at 10:30."]
    s_tok, t_tok = get_tok(s_name), get_tok(t_name)
    s, t = token_spans(s_tok, text, 64), token_spans(t_tok, text, 64)
    s_str = token_strings(s_tok, s.input_ids[0], s.real[0])
    t_str = token_strings(t_tok, t.input_ids[0], t.real[0])
    o = batch_overlap(s, t)[0]
    for reciprocal in (False, True):
        pairs = min_edit_distance_alignment(s_str, t_str, reciprocal=reciprocal)
        assert len(pairs) >= 8
        js, is_ = zip(*pairs, strict=True)
        assert list(js) == sorted(set(js)) and list(is_) == sorted(set(is_))
        for j, i in pairs:
            assert normalize_token(s_str[j]) == normalize_token(t_str[i]) != ""
            assert o[j, i] > 0  # equal strings here are the same characters of the text
