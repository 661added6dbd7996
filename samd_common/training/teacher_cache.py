"""Teacher cache (DESIGN.md §5): run the frozen teacher once per text, reuse it everywhere.

For every text it stores the teacher's token ids, character spans and content mask, the fp16
last-layer token states, the fp16 head-averaged attention of the last ``L`` layers and the pooled
sentence embedding, as flat memory-mapped ``.npy`` files plus an index. The folder name is a hash
of everything that changes those outputs (teacher weights fingerprint, tokenizer, prompt,
pooling, max_length, layers, the texts); a folder without its ``complete.json`` marker is a
partial build and is rebuilt, never reused. Under multi-GPU training each rank computes its
shard of the texts into the same files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from samd_common.alignment import SpanBatch, token_spans
from samd_common.config import cache_root
from samd_common.distributed import barrier, broadcast_object, dist_info, init_distributed
from samd_common.models import SentenceEncoder
from samd_common.models.io import fingerprint_model

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: input embeddings (DSKD keys) are cached too
ARRAYS = ("pooled", "hidden", "embed", "attn", "input_ids", "spans", "real", "index")


def cache_key(teacher: SentenceEncoder, texts: list[str], max_length: int, layers: int) -> dict:
    """Everything that changes the cached outputs, as a JSON-able dict."""
    tok = teacher.tokenizer
    text_hash = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()
    spec = json.loads(tok.backend_tokenizer.to_str())
    spec.pop("truncation", None), spec.pop("padding", None)  # call state, not identity
    vocab_hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    return {
        "format": FORMAT_VERSION,
        "teacher": teacher.spec.name,
        "weights": fingerprint_model(teacher),
        "tokenizer": vocab_hash,
        "prompt": teacher.spec.prompt,
        "pooling": teacher.spec.pooling,
        "dense": teacher.dense is not None,
        "max_length": max_length,
        "layers": layers,
        "n_texts": len(texts),
        "texts": text_hash,
        "dtype": str(next(teacher.parameters()).dtype),
    }


@dataclass
class TeacherCache:
    """Read access to a complete cache folder (memory-mapped)."""

    root: Path
    meta: dict
    arrays: dict[str, np.ndarray]

    @classmethod
    def open(cls, root: Path) -> TeacherCache:
        """Memory-map a complete cache folder."""
        meta = json.loads((root / "complete.json").read_text())
        arrays = {k: np.load(root / f"{k}.npy", mmap_mode="r") for k in ARRAYS}
        return cls(root, meta, arrays)

    def __len__(self) -> int:
        return len(self.arrays["index"])

    @property
    def dim(self) -> int:
        """Teacher sentence-embedding width ``D_t`` (pooled)."""
        return int(self.arrays["pooled"].shape[1])

    @property
    def hidden_dim(self) -> int:
        """Teacher token-state width."""
        return int(self.arrays["hidden"].shape[1])

    def item(self, i: int) -> dict[str, np.ndarray]:
        """Text ``i``: ids, spans, real (T_t,); hidden (T_t, D); attn (L, T_t, T_t)."""
        start, n, a_start = (int(v) for v in self.arrays["index"][i])
        layers = self.meta["key"]["layers"]
        a = self.arrays
        return {
            "input_ids": np.asarray(a["input_ids"][start : start + n]),
            "spans": np.asarray(a["spans"][start : start + n]),
            "real": np.asarray(a["real"][start : start + n]),
            "hidden": np.asarray(a["hidden"][start : start + n]),
            "embed": np.asarray(a["embed"][start : start + n]),
            "attn": np.asarray(a["attn"][a_start : a_start + layers * n * n]).reshape(layers, n, n),
            "pooled": np.asarray(a["pooled"][i]),
        }


def _alloc(root: Path, name: str, shape: tuple[int, ...], dtype: str) -> np.memmap:
    return np.lib.format.open_memmap(root / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)


@dataclass
class _Layout:
    """Where each text's rows go in the flat files: (N,) token counts and start offsets."""

    lengths: np.ndarray  # (N,) tokens per text, incl. specials
    tok_start: np.ndarray  # (N,) first row in the token arrays
    att_start: np.ndarray  # (N,) first entry in the flat attention array
    layers: int  # attention layers kept per text

    @classmethod
    def of(cls, attention_mask: np.ndarray, layers: int) -> _Layout:
        """Offsets of texts with the given (N, T) attention mask, ``layers`` maps each."""
        lengths = attention_mask.sum(1).astype(np.int64)  # (N,) incl. specials
        tok_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        att_start = np.concatenate([[0], np.cumsum(layers * lengths**2)[:-1]])
        return cls(lengths, tok_start, att_start, layers)

    @property
    def n_tokens(self) -> int:
        """Rows of the token arrays."""
        return int(self.lengths.sum())


def _cache_folder(teacher: SentenceEncoder, key: dict, cache_dir: Path | None) -> Path:
    """``<cache_dir>/<teacher>-<hash of key>`` (default parent ``$SAMD_CACHE_DIR/teacher``)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir or cache_root() / "teacher") / f"{teacher.spec.name}-{digest}"


def _allocate(root: Path, tmp: Path, teacher: SentenceEncoder, n_texts: int, lay: _Layout) -> None:
    """Rank 0: clear stale folders, allocate every file in ``tmp`` and write the index."""
    if root.exists():
        log.warning("teacher cache %s is partial or stale: rebuilding", root)
        shutil.rmtree(root)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_tok, d_h = lay.n_tokens, teacher.backbone.config.hidden_size
    d_e = teacher.backbone.get_input_embeddings().embedding_dim
    shapes = {
        "pooled": ((n_texts, teacher.dim), "float32"),
        "hidden": ((n_tok, d_h), "float16"),
        "embed": ((n_tok, d_e), "float16"),
        "attn": ((int((lay.layers * lay.lengths**2).sum()),), "float16"),
        "input_ids": ((n_tok,), "int64"),
        "spans": ((n_tok, 2), "int32"),
        "real": ((n_tok,), "bool"),
        "index": ((n_texts, 3), "int64"),
    }
    for name, (shape, dtype) in shapes.items():
        _alloc(tmp, name, shape, dtype).flush()
    index = np.load(tmp / "index.npy", mmap_mode="r+")
    index[:] = np.stack([lay.tok_start, lay.lengths, lay.att_start], 1)
    index.flush()
    del index


def _write_batch(
    out: dict[str, np.ndarray],
    teacher: SentenceEncoder,
    spans: SpanBatch,
    idx: np.ndarray,
    lay: _Layout,
) -> None:
    """Run the teacher on texts ``idx`` and write their rows into the memory-mapped ``out``."""
    layers = lay.layers
    width = int(lay.lengths[idx].max())
    ids = torch.as_tensor(spans.input_ids[idx, :width], device=teacher.device)
    mask = torch.as_tensor(spans.attention_mask[idx, :width], device=teacher.device)
    res = teacher(input_ids=ids, attention_mask=mask, output_attentions=True)
    att = torch.stack(res["attentions"][-layers:], 1).mean(2)  # (B, L, T, T) head-averaged
    hidden = res["token_embeddings"].float().cpu().numpy()
    embed = teacher.backbone.get_input_embeddings()(ids).float().cpu().numpy()  # (B, T, D_e)
    att = att.float().cpu().numpy()
    out["pooled"][idx] = res["sentence_embedding"].float().cpu().numpy()
    for row, i in enumerate(idx):
        n, s, a = int(lay.lengths[i]), int(lay.tok_start[i]), int(lay.att_start[i])
        if spans.attention_mask[i, :n].sum() != n:
            raise ValueError(f"{teacher.spec.name}: left padding is not supported in the cache")
        out["hidden"][s : s + n] = hidden[row, :n]
        out["embed"][s : s + n] = embed[row, :n]
        out["attn"][a : a + layers * n * n] = att[row, :, :n, :n].reshape(-1)  # (L·n·n,)
        out["input_ids"][s : s + n] = spans.input_ids[i, :n]
        out["spans"][s : s + n] = spans.spans[i, :n]
        out["real"][s : s + n] = spans.real[i, :n]


def _fill_shard(
    tmp: Path,
    teacher: SentenceEncoder,
    spans: SpanBatch,
    lay: _Layout,
    batch_size: int,
    show_progress: bool,
) -> None:
    """This rank's shard: every world-th text of the length-sorted order, written in place."""
    rank, world = dist_info()
    out = {k: np.load(tmp / f"{k}.npy", mmap_mode="r+") for k in ARRAYS if k != "index"}
    was_training = teacher.training
    teacher.eval()
    mine = np.argsort(-lay.lengths, kind="stable")[rank::world]
    for b in tqdm(
        range(0, len(mine), batch_size),
        desc=f"teacher cache {teacher.spec.name}",
        disable=not show_progress or rank > 0,
    ):
        _write_batch(out, teacher, spans, mine[b : b + batch_size], lay)
    teacher.train(was_training)
    for arr in out.values():
        arr.flush()
    del out


@torch.inference_mode()
def build_teacher_cache(
    teacher: SentenceEncoder,
    texts: list[str],
    max_length: int = 128,
    layers: int = 1,
    batch_size: int = 32,
    cache_dir: Path | None = None,
    show_progress: bool = True,
) -> TeacherCache:
    """Return the cache for (teacher, texts, …), building it once if it is missing or partial.

    Args:
        teacher: frozen teacher encoder (loaded with ``attn_implementation="eager"``).
        texts: corpus texts, in dataset order.
        max_length: teacher token cap.
        layers: how many last layers' head-averaged attention to keep.
        batch_size: texts per teacher forward.
        cache_dir: parent folder (default ``$SAMD_CACHE_DIR/teacher``).
        show_progress: tqdm bar while building.

    Under DDP (an initialised process group, or ``torchrun``/``accelerate launch``, whose group
    is joined here) every rank must call this with the same arguments and the build is sharded:
    rank 0 allocates the memory-mapped files, each rank runs the teacher on every ``world``-th
    text of the length-sorted order and writes its rows in place, then rank 0 writes the marker
    and renames the folder; all ranks return the same cache. The ranks share the files, which
    is given on one machine; across nodes ``cache_dir`` must be on a shared filesystem that
    keeps concurrent writes from several hosts to disjoint parts of one file (a POSIX-coherent
    one such as Lustre/GPFS; NFS's client caching does not guarantee this, build on one node
    there and copy the folder).
    """
    init_distributed(teacher.device)  # joins a torchrun/accelerate group if there is one
    rank, _ = dist_info()
    key = cache_key(teacher, texts, max_length, layers)
    root = _cache_folder(teacher, key, cache_dir)
    marker = root / "complete.json"
    hit = marker.is_file() and json.loads(marker.read_text()).get("key") == key
    if broadcast_object(hit):  # rank 0 decides, so no rank reads a folder another one is replacing
        log.info("teacher cache hit: %s", root)
        return TeacherCache.open(root)
    tmp = root.with_name(root.name + ".partial")
    spans = token_spans(teacher.tokenizer, texts, max_length, prompt=teacher.spec.prompt)
    lay = _Layout.of(spans.attention_mask, layers)
    if rank == 0:  # 1) rank 0 clears stale folders and allocates the files
        _allocate(root, tmp, teacher, len(texts), lay)
    barrier()
    # 2) every rank fills its shard (disjoint rows of the shared files, so no locking is needed)
    _fill_shard(tmp, teacher, spans, lay, batch_size, show_progress)
    barrier()  # 3) all shards are on disk: rank 0 marks the build complete
    if rank == 0:
        (tmp / "complete.json").write_text(json.dumps({"key": key}, indent=1))
        tmp.rename(root)
        log.info("teacher cache built: %s (%d texts, %d tokens)", root, len(texts), lay.n_tokens)
    barrier()
    return TeacherCache.open(root)
