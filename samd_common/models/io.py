"""Loading and saving sentence encoders.

:func:`load_encoder` accepts a short name (resolved to a provisioned directory), a Hugging Face id
or a local directory and returns a :class:`SentenceEncoder` (with the sentence-transformers Dense
head from :func:`_load_dense_head` where the spec asks for one); :func:`save_encoder` writes a
directory that both ``AutoModel`` and sentence-transformers load with the same pooling.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

from samd_common.models.encoder import SentenceEncoder
from samd_common.models.llm2vec import prepare_llm2vec
from samd_common.models.table import MODELS, pick_dtype, resolve_model

log = logging.getLogger(__name__)


def _load_dense_head(path: Path) -> nn.Sequential | None:
    """Build the sentence-transformers Dense modules listed in ``modules.json`` (in order)."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return None
    from safetensors.torch import load_file

    layers: list[nn.Module] = []
    for module in json.loads(modules_file.read_text()):
        if not module["type"].endswith("Dense"):
            continue
        folder = path / module["path"]
        cfg = json.loads((folder / "config.json").read_text())
        linear = nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg.get("bias", True))
        weights = folder / "model.safetensors"
        state = (
            load_file(weights)
            if weights.is_file()
            else torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        )
        linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
        layers.append(linear)
        act = cfg.get("activation_function", "torch.nn.modules.linear.Identity")
        if act.endswith("Tanh"):
            layers.append(nn.Tanh())
        elif not act.endswith("Identity"):
            raise ValueError(f"{folder}: unsupported Dense activation {act!r}.")
    return nn.Sequential(*layers) if layers else None


def linear_head(name_or_path: str) -> torch.Tensor | None:
    """The teacher's Dense head as one matrix, when it is purely linear (EmbeddingGemma's).

    sentence-transformers Dense modules without bias or activation compose into one map
    ``W = W_k ⋯ W_1`` (D_t, H_t), so ``W·mean_i h_i = mean_i W·h_i``: the pooled embedding is
    the mean of the mapped token states (SAMD's ``span_space="embedding"`` maps its span targets
    through W).

    Args:
        name_or_path: short name, Hugging Face id or local model directory.

    Returns:
        fp32 (D_t, H_t) matrix; None when the model has no local Dense head, or one with a bias
        or an activation.
    """
    try:
        spec, path = resolve_model(name_or_path)
    except (KeyError, ValueError, OSError):
        return None
    head = _load_dense_head(Path(path)) if spec.dense and Path(path).is_dir() else None
    if head is None or any(not isinstance(m, nn.Linear) or m.bias is not None for m in head):
        return None
    weight = head[0].weight.detach().float()
    for layer in list(head)[1:]:
        weight = layer.weight.detach().float() @ weight
    return weight


def check_model_folder(name_or_path: str) -> None:
    """A name that can only be a local path names an existing model folder.

    A path (it exists, or starts with ``/``, ``.`` or ``~``, or has more than one ``/``) that
    does not exist would otherwise reach the Hub as a malformed repo id, and a folder without
    ``config.json`` would fail inside the tokenizer with an unrelated hint.

    Raises:
        FileNotFoundError: naming the path and what to pass instead.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name
    if not (looks_local or path.exists()):
        return
    if not path.exists():
        raise FileNotFoundError(
            f"model {name!r}: no such folder ({path.absolute()}). Pass an existing model folder, "
            f"a short name ({', '.join(MODELS)}) or an 'org/name' Hugging Face id."
        )
    if not (path / "config.json").is_file():
        what = "a file" if path.is_file() else "a folder without config.json"
        raise FileNotFoundError(
            f"model {name!r}: {path} is {what}, not a model folder. Pass a folder written by "
            "save_pretrained / sentence-transformers (config.json, tokenizer files, weights)."
        )


def load_encoder(
    name_or_path: str,
    device: str | torch.device | None = None,
    max_length: int = 256,
    dtype: str | None = None,
    attn_implementation: str | None = None,
    **spec_overrides,
) -> SentenceEncoder:
    """Load a sentence encoder by short name, Hugging Face id or local directory.

    Args:
        name_or_path: short name (``MODELS``), Hugging Face id or local model directory.
        device: ``cpu``/``cuda``; default cuda when available.
        max_length: token cap per text.
        dtype: overrides the table's dtype (``float32``, ``bfloat16``, ``float16``).
        attn_implementation: e.g. ``"eager"`` when attention maps are needed (SDPA returns none).
        **spec_overrides: any ``ModelSpec`` field (``pooling``, ``prompt``, …).

    Raises:
        FileNotFoundError / OSError: with a message naming the model and what to do.
    """
    check_model_folder(name_or_path)
    spec, path = resolve_model(name_or_path)
    spec = replace(spec, **spec_overrides, **({"dtype": dtype} if dtype else {}))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    token = os.environ.get("HF_TOKEN")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, token=token, trust_remote_code=spec.trust_remote_code
        )
        backbone = AutoModel.from_pretrained(
            path,
            token=token,
            dtype=pick_dtype(spec, device),
            trust_remote_code=spec.trust_remote_code,
            **({"attn_implementation": attn_implementation} if attn_implementation else {}),
        )
    except OSError as err:
        raise OSError(
            f"Could not load model {name_or_path!r} from {path!r}: {err}. Offline? Provision it "
            f"with `python scripts/offline_models.py NAME` or pass a local directory."
        ) from err
    if spec.adapters or spec.bidirectional:  # LLM2Vec: merge LoRA adapters, full attention
        backbone, tokenizer = prepare_llm2vec(backbone, tokenizer, spec)
    dense = _load_dense_head(Path(path)) if spec.dense and Path(path).is_dir() else None
    if dense is not None:
        dense = dense.to(backbone.dtype)
    encoder = SentenceEncoder(backbone, tokenizer, spec, dense, max_length=max_length)
    log.info("loaded %s from %s (pooling=%s, dim=%d)", spec.name, path, spec.pooling, encoder.dim)
    return encoder.to(device).eval()


_POOLING_MODES = {  # our pooling name → sentence-transformers' Pooling config flag
    "mean": "pooling_mode_mean_tokens",
    "cls": "pooling_mode_cls_token",
    "last_token": "pooling_mode_lasttoken",
}


def _st_modules(normalize: bool) -> list[dict]:
    """sentence-transformers' ``modules.json``: Transformer, Pooling (and Normalize)."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    return modules


def _st_files(encoder: SentenceEncoder) -> dict[str, object]:
    """Every JSON file next to the backbone, by relative path (pooling, prompts, provenance)."""
    spec, width = encoder.spec, encoder.backbone.config.hidden_size
    pooling = {
        "word_embedding_dimension": width,
        "include_prompt": True,
        **{m: k == spec.pooling for k, m in _POOLING_MODES.items()},
    }
    return {
        "1_Pooling/config.json": pooling,
        "modules.json": _st_modules(spec.normalize),
        "sentence_bert_config.json": {"max_seq_length": encoder.max_length, "do_lower_case": False},
        "config_sentence_transformers.json": {
            "prompts": {"query": spec.prompt, "document": spec.prompt} if spec.prompt else {},
            "default_prompt_name": "query" if spec.prompt else None,
            "similarity_fn_name": "cosine",
        },
        "samd_model.json": {
            "pooling": spec.pooling,
            "prompt": spec.prompt,
            "normalize": spec.normalize,
            "padding_side": spec.padding_side,
            "distilled_from": spec.name,
        },
    }


def save_encoder(encoder: SentenceEncoder, path: str | Path) -> Path:
    """Save as a standard HF directory that ``AutoModel`` *and* sentence-transformers load.

    Writes the backbone and tokenizer (``save_pretrained``), ``modules.json``, the pooling config,
    ``sentence_bert_config.json``, the prompt, and ``samd_model.json``, so that the same pooling
    is used wherever the student is loaded.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    encoder.backbone.save_pretrained(path)
    encoder.tokenizer.save_pretrained(path)
    spec = encoder.spec
    if spec.pooling not in _POOLING_MODES or encoder.dense is not None:
        raise ValueError(
            f"save_encoder supports {sorted(_POOLING_MODES)} pooling without a dense head."
        )
    if spec.normalize:
        (path / "2_Normalize").mkdir(exist_ok=True)
    (path / "1_Pooling").mkdir(exist_ok=True)
    for name, payload in _st_files(encoder).items():
        (path / name).write_text(json.dumps(payload, indent=2))
    log.info("saved %s to %s", spec.name, path)
    return path


def fingerprint_model(model: torch.nn.Module) -> str:
    """Cheap content hash of a model: parameter names, shapes, dtypes and strided value samples."""
    h = hashlib.sha256()
    for name, p in model.state_dict().items():
        flat = p.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 512)][:512].float().cpu().numpy()
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
        h.update(sample.tobytes())
    return h.hexdigest()
