"""Tiny random models with two *different* tokenizers, built offline in seconds, byte-identically.

Used by the fast test tier and by the notebooks' ``smoke`` preset: a WordPiece (lower-cased,
BERT-style) student and a Unigram (SentencePiece-style ``▁`` pieces, cased) teacher, wrapped as
standard Hugging Face directories.

Every build writes the same bytes. The ``tokenizers`` library's trainers cannot promise that:
they break ties in Rust hash-map order, which is seeded afresh in every process (and every map),
so two trainings of one corpus give different vocabularies even on one thread. The vocabularies
are therefore learnt here in plain Python with every tie broken by the token's text, and handed
to ``tokenizers`` ready-made. Weights are drawn from a private fork of torch's RNG, so a build
leaves the caller's random state (torch, numpy, ``random``) as it found it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections import Counter
from itertools import pairwise
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from samd_common.config import cache_root
from samd_common.data.demo import synthetic_sentences

log = logging.getLogger(__name__)

RECIPE = 2  # bump when a change to this module changes the built files
"""Written to ``samd_model.json``; a cached pair from another recipe is reused with a warning."""


def count_words(tok: Tokenizer, corpus: list[str]) -> Counter[str]:
    """Word frequencies after ``tok``'s own normalizer and pre-tokenizer (as its trainer sees)."""
    words: Counter[str] = Counter()
    for text in corpus:
        if tok.normalizer is not None:
            text = tok.normalizer.normalize_str(text)
        words.update(w for w, _ in tok.pre_tokenizer.pre_tokenize_str(text))
    return words


def _merge(symbols: list[str], a: str, b: str, merged: str) -> list[str]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
            out.append(merged)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def wordpiece_vocab(words: Counter[str], vocab_size: int, specials: list[str]) -> list[str]:
    """WordPiece tokens learnt by BPE merges, as ``tokenizers``' WordPiece trainer does.

    The alphabet is every first character and every ``##``-continuation character; then the most
    frequent adjacent pair is merged (ties: the smaller pair of strings) until ``vocab_size``
    tokens exist or every word is one token.
    """
    splits = {w: [w[0], *(f"##{c}" for c in w[1:])] for w in sorted(words)}
    vocab = dict.fromkeys([*specials, *sorted({s for sp in splits.values() for s in sp})])
    while len(vocab) < vocab_size:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, symbols in splits.items():
            for pair in pairwise(symbols):
                pairs[pair] += words[word]
        if not pairs:
            break
        a, b = min(pairs, key=lambda p: (-pairs[p], p))
        merged = a + b.removeprefix("##")
        vocab[merged] = None
        splits = {w: _merge(sp, a, b, merged) for w, sp in splits.items()}
    return list(vocab)


def unigram_vocab(
    words: Counter[str], vocab_size: int, specials: list[str], max_piece: int = 8
) -> list[tuple[str, float]]:
    """Unigram pieces with log-frequency scores: every character plus the top substrings.

    Substrings of 2..``max_piece`` characters are ranked by ``frequency × length`` (ties: the
    string); a piece's score is ``log(count / total)``, rounded to 6 decimals.
    """
    chars: Counter[str] = Counter()
    subs: Counter[str] = Counter()
    for word, n in words.items():
        for i, c in enumerate(word):
            chars[c] += n
            for j in range(i + 2, min(len(word), i + max_piece) + 1):
                subs[word[i:j]] += n
    room = max(vocab_size - len(specials) - len(chars), 0)
    top = sorted(subs, key=lambda s: (-subs[s] * len(s), s))[:room]
    counts = {**chars, **{s: subs[s] for s in top}}
    total = sum(counts.values())
    scored = [(p, round(math.log(n / total), 6)) for p, n in counts.items()]
    return [(s, 0.0) for s in specials] + sorted(scored, key=lambda ps: (-ps[1], ps[0]))


def train_wordpiece(corpus: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """Lower-casing BERT-style WordPiece tokenizer: ``[CLS] … [SEP]``, ``##`` continuations."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = wordpiece_vocab(count_words(tok, corpus), vocab_size, specials)
    tok.model = models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]")
    tok.add_special_tokens(specials)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def train_unigram(corpus: list[str], vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """Cased SentencePiece-style Unigram tokenizer: NFKC, ``▁`` word marker, ``<s> … </s>``."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    vocab = unigram_vocab(count_words(tok, corpus), vocab_size, specials)
    tok.model = models.Unigram(vocab, unk_id=specials.index("<unk>"), byte_fallback=False)
    tok.add_special_tokens(specials)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    tok.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
    )


def tiny_bert(
    tokenizer: PreTrainedTokenizerFast,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
) -> BertModel:
    """A randomly initialised BERT encoder sized for ``tokenizer`` (eager attention).

    The weights come from ``seed`` alone, drawn under ``torch.random.fork_rng``: the caller's
    global torch RNG is left untouched.
    """
    cfg = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="eager",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BertModel(cfg).eval()


TINY_SPECS = {"student": (train_wordpiece, 32, 2), "teacher": (train_unigram, 48, 3)}
"""Role → (tokenizer trainer, hidden size, layers)."""


def _write_tiny(path: Path, role: str, corpus: list[str], seed: int) -> None:
    """Build one tiny model into a staging folder, then move it to ``path`` in one rename."""
    train, hidden, layers = TINY_SPECS[role]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():  # a half-written folder left by an older, non-atomic build
        shutil.rmtree(path)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        tokenizer = train(corpus)
        model = tiny_bert(tokenizer, hidden=hidden, layers=layers, seed=seed + (role == "teacher"))
        tokenizer.save_pretrained(staging)
        model.save_pretrained(staging)
        meta = {"short_name": path.name, "pooling": "mean", "prompt": "", "normalize": True}
        (staging / "samd_model.json").write_text(json.dumps({**meta, "tiny_recipe": RECIPE}))
        os.rename(staging, path)  # fails if another process finished first: same bytes, keep it
    except OSError:
        if not (path / "samd_model.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_tiny_pair(out_dir: str | Path, n_sentences: int = 400, seed: int = 0) -> dict[str, Path]:
    """Write ``student`` (WordPiece, 2×32) and ``teacher`` (Unigram, 3×48) model dirs.

    Deterministic (the same files, byte for byte, on every build) and free of side effects on
    the global random state. Safe to call from several processes at once.

    Returns:
        ``{"student": path, "teacher": path}``; existing complete dirs are reused.
    """
    out_dir = Path(out_dir)
    corpus = synthetic_sentences(n_sentences, seed)
    paths = {}
    for role in TINY_SPECS:
        path = out_dir / f"tiny-{role}"
        meta = path / "samd_model.json"
        if not meta.is_file():
            _write_tiny(path, role, corpus, seed)
        elif json.loads(meta.read_text()).get("tiny_recipe") != RECIPE:
            log.warning(
                "%s was built by an older recipe (its tokenizer differs from a fresh build); "
                "delete the folder to rebuild it reproducibly.",
                path,
            )
        paths[role] = path
    return paths


TINY_NAMES = ("tiny-teacher", "tiny-student")


def resolve_model(name: str) -> str:
    """``tiny-teacher``/``tiny-student`` → their built folder (under the cache); else ``name``."""
    if name not in TINY_NAMES:
        return name
    return str(build_tiny_pair(cache_root() / "tiny")[name.split("-")[1]])
