"""The model table: per-model settings, and how a name, id or directory resolves to them.

``MODELS`` holds the per-model settings (pooling, prompt, dense head, padding side, dtype) as
:class:`ModelSpec` entries; :func:`resolve_model` turns a short name, Hugging Face id or local
directory into a spec and a load path (:func:`spec_from_directory` reads a directory's own
metadata), and :func:`pick_dtype` chooses the weights' dtype for a device.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from samd_common.provision.install import provisioned_path
from samd_common.provision.recipes import OFFLINE_MODELS


@dataclass(frozen=True)
class ModelSpec:
    """Per-model settings; everything that changes how a text becomes a vector."""

    name: str  # short name used in configs and result files
    hf_id: str  # Hugging Face id (used when no provisioned local directory exists)
    pooling: str = "mean"  # one of POOLERS: mean | cls | last_token | embed_token
    prompt: str = ""  # prefix added to every text (e5: "query: ")
    normalize: bool = True  # L2-normalise sentence embeddings in encode()
    dense: bool = False  # apply the sentence-transformers Dense modules found in the directory
    padding_side: str = "right"  # "left" for last-token pooling of decoders
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    allow_fp16: bool = True  # False for models that overflow in fp16 (EmbeddingGemma)
    trust_remote_code: bool = False  # only ever on when the table or the user says so
    adapters: tuple[str, ...] = ()  # peft LoRA adapters merged in order (LLM2Vec: MNTP, supervised)
    bidirectional: bool = False  # decoder run with full attention (LLM2Vec; models.llm2vec)
    # Dims the model was Matryoshka-trained at (its prefixes are embeddings in their own right);
    # empty: not Matryoshka-trained. Distillation may then target the teacher's own prefix.
    matryoshka_dims: tuple[int, ...] = ()


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("minilm-l6", "sentence-transformers/all-MiniLM-L6-v2"),
        # all-MiniLM-L6-v2's first 3 layers (issue 15's half-depth student): no Hub copy, only a
        # provisioned folder (provision.recipes); the id below only names it.
        ModelSpec("minilm-l3", "sentence-transformers/all-MiniLM-L6-v2 (layers 1-3)"),
        ModelSpec("mpnet-base", "sentence-transformers/all-mpnet-base-v2"),
        ModelSpec("e5-small", "intfloat/multilingual-e5-small", prompt="query: "),
        ModelSpec(
            "embeddinggemma-300m",
            "google/embeddinggemma-300m",
            dense=True,
            prompt="task: sentence similarity | query: ",
            allow_fp16=False,
            matryoshka_dims=(768, 512, 256, 128),  # the model card's MRL dims
        ),
        ModelSpec("bge-m3", "BAAI/bge-m3", pooling="cls"),
        ModelSpec(
            "qwen3-embedding-0.6b",
            "Qwen/Qwen3-Embedding-0.6B",
            pooling="last_token",
            padding_side="left",
        ),
        ModelSpec("bert-base-uncased", "bert-base-uncased"),
        ModelSpec("tinybert-4l", "huawei-noah/TinyBERT_General_4L_312D"),
        ModelSpec("tinybert-6l", "huawei-noah/TinyBERT_General_6L_768D"),
        ModelSpec(  # SKD's reference teacher (DESIGN.md §6.9): gated base + two LoRA adapters
            "llm2vec-llama3-8b",
            "meta-llama/Meta-Llama-3-8B-Instruct",
            adapters=(
                "McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp",
                "McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp-supervised",
            ),
            bidirectional=True,
        ),
    )
}


def resolve_model(name_or_path: str) -> tuple[ModelSpec, str]:
    """Find the spec and the load path (local dir or hub id) for a name, id or directory.

    A short name resolves to its provisioned directory (``scripts/offline_models.py``) when one
    exists, else to its Hub id (a model without a Hub copy, e.g. ``minilm-l3``, must be
    provisioned). A local directory takes its spec from ``samd_model.json`` /
    sentence-transformers metadata, falling back to mean pooling.
    """
    by_id = {s.hf_id.lower(): s for s in MODELS.values()}
    if name_or_path in MODELS or name_or_path.lower() in by_id:
        spec = MODELS.get(name_or_path) or by_id[name_or_path.lower()]
        local = provisioned_path(spec.name) if spec.name in _offline_names() else None
        if local is not None:
            return spec, str(local)
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        if spec.name in _offline_names() and (offline or not OFFLINE_MODELS[spec.name].on_hub):
            why = "the hub is offline" if offline else "it has no Hub copy (it is built locally)"
            raise FileNotFoundError(
                f"Model {spec.name!r} is not provisioned and {why}. Run "
                f"`python scripts/offline_models.py {spec.name}` first."
            )
        return spec, spec.hf_id
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return spec_from_directory(path), str(path)
    if "/" not in name_or_path:
        import difflib

        close = difflib.get_close_matches(name_or_path, MODELS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(
            f"Unknown model {name_or_path!r}: not a short name, a local directory or an "
            f"'org/name' Hugging Face id.{hint} Short names: {', '.join(MODELS)}"
        )
    return ModelSpec(name_or_path.split("/")[-1], name_or_path), name_or_path


def _offline_names() -> set[str]:
    return set(OFFLINE_MODELS)


def spec_from_directory(path: Path) -> ModelSpec:
    """Infer a ``ModelSpec`` from a model directory's own metadata files."""
    meta_file = path / "samd_model.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    known = MODELS.get(meta.get("short_name", ""))
    spec = known or ModelSpec(path.name, str(path))
    fields = {
        k: meta[k] for k in ("pooling", "prompt", "normalize", "dense", "padding_side") if k in meta
    }
    fields.update({k: meta[k] for k in ("bidirectional",) if k in meta})
    fields.update({"adapters": tuple(meta["adapters"])} if "adapters" in meta else {})
    if not known:
        pool_cfg = path / "1_Pooling" / "config.json"
        if pool_cfg.is_file() and "pooling" not in fields:
            cfg = json.loads(pool_cfg.read_text())
            fields["pooling"] = (
                "cls"
                if cfg.get("pooling_mode_cls_token")
                else "last_token"
                if cfg.get("pooling_mode_lasttoken")
                else "mean"
            )
        fields.setdefault("dense", (path / "2_Dense").is_dir())
    return replace(spec, **fields)


def pick_dtype(spec: ModelSpec, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on GPUs that support it, else fp16 (unless forbidden), fp32 on CPU."""
    explicit = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if spec.dtype in explicit:
        if explicit[spec.dtype] == torch.float16 and not spec.allow_fp16:
            raise ValueError(f"{spec.name} must not run in fp16; use float32 or bfloat16.")
        return explicit[spec.dtype]
    if device.type != "cuda":
        return torch.float32
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16 if spec.allow_fp16 else torch.float32
