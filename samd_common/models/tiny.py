"""Tiny random models with two *different* tokenizers, built offline in seconds.

Used by the fast test tier and by the notebooks' ``smoke`` preset: a WordPiece (lower-cased,
BERT-style) student and a Unigram (SentencePiece-style ``▁`` pieces, cased) teacher, both trained
on the fly with the ``tokenizers`` library, wrapped as standard Hugging Face directories.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from samd_common.config import cache_root
from samd_common.data.demo import synthetic_sentences


def train_wordpiece(corpus: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """Lower-casing BERT-style WordPiece tokenizer: ``[CLS] … [SEP]``, ``##`` continuations."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        corpus, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    )
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
    tok.train_from_iterator(
        corpus,
        trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>"),
    )
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
    """A randomly initialised BERT encoder sized for ``tokenizer`` (eager attention)."""
    import torch

    torch.manual_seed(seed)
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
    return BertModel(cfg).eval()


def build_tiny_pair(out_dir: str | Path, n_sentences: int = 400, seed: int = 0) -> dict[str, Path]:
    """Write ``student`` (WordPiece, 2×32) and ``teacher`` (Unigram, 3×48) model dirs.

    Returns:
        ``{"student": path, "teacher": path}``; existing complete dirs are reused.
    """
    out_dir = Path(out_dir)
    corpus = synthetic_sentences(n_sentences, seed)
    specs = {"student": (train_wordpiece, 32, 2), "teacher": (train_unigram, 48, 3)}
    paths = {}
    for role, (train, hidden, layers) in specs.items():
        path = out_dir / f"tiny-{role}"
        if not (path / "samd_model.json").is_file():
            tokenizer = train(corpus)
            model = tiny_bert(
                tokenizer, hidden=hidden, layers=layers, seed=seed + (role == "teacher")
            )
            tokenizer.save_pretrained(path)
            model.save_pretrained(path)
            meta = {
                "short_name": f"tiny-{role}",
                "pooling": "mean",
                "prompt": "",
                "normalize": True,
            }
            (path / "samd_model.json").write_text(json.dumps(meta))
        paths[role] = path
    return paths


TINY_NAMES = ("tiny-teacher", "tiny-student")


def resolve_model(name: str) -> str:
    """``tiny-teacher``/``tiny-student`` → their built folder (under the cache); else ``name``."""
    if name not in TINY_NAMES:
        return name
    return str(build_tiny_pair(cache_root() / "tiny")[name.split("-")[1]])
