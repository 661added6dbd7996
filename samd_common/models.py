"""The model table and one sentence encoder for every teacher and student.

``MODELS`` holds the per-model settings (pooling, prompt, dense head, padding side, dtype).
``load_encoder(name_or_path)`` accepts a short name (resolved to a provisioned directory), a
Hugging Face id or a local directory, and returns a ``SentenceEncoder`` whose ``forward`` is used
for training and whose ``encode`` is used for evaluation, with the *same* pooling in both.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from samd_common.pooling import POOLERS, pool

log = logging.getLogger(__name__)


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
    bidirectional: bool = False  # decoder run with full attention (LLM2Vec; samd_common.llm2vec)


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("minilm-l6", "sentence-transformers/all-MiniLM-L6-v2"),
        ModelSpec("mpnet-base", "sentence-transformers/all-mpnet-base-v2"),
        ModelSpec("e5-small", "intfloat/multilingual-e5-small", prompt="query: "),
        ModelSpec(
            "embeddinggemma-300m",
            "google/embeddinggemma-300m",
            dense=True,
            prompt="task: sentence similarity | query: ",
            allow_fp16=False,
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


DEPTH_TRUNCATABLE: frozenset[str] = frozenset(
    {"bert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet"}
)
"""``config.model_type`` of the encoders whose depth can be truncated (``transformer_layers``)."""


def transformer_layers(backbone: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers of a BERT-style Hugging Face encoder.

    The one place that knows where an architecture keeps its layers (``backbone.encoder.layer``
    in BERT, RoBERTa/XLM-R, ELECTRA and MPNet). These encoders are post-LN without a final norm,
    so running only their first k layers gives exactly the state a k-layer model built from the
    same weights would give.

    Args:
        backbone: a Hugging Face ``PreTrainedModel`` (e.g. ``BertModel``).

    Returns:
        The ``nn.ModuleList`` of its layers (the live module, not a copy).

    Raises:
        NotImplementedError: for any other architecture (decoders and encoders with a final
            norm, e.g. Qwen3, Gemma, DistilBERT), naming the model type.
    """
    model_type = backbone.config.model_type
    if model_type not in DEPTH_TRUNCATABLE:
        raise NotImplementedError(
            f"Depth truncation supports BERT-style encoders "
            f"({', '.join(sorted(DEPTH_TRUNCATABLE))}); this backbone is {model_type!r} "
            f"({type(backbone).__name__}). Evaluate it at full depth (num_layers=None) or add "
            f"its layer stack to models.transformer_layers."
        )
    layers = backbone.base_model.encoder.layer  # BertEncoder.layer and its look-alikes
    return layers


def resolve_model(name_or_path: str) -> tuple[ModelSpec, str]:
    """Find the spec and the load path (local dir or hub id) for a name, id or directory.

    A short name resolves to its provisioned directory (``scripts/offline_models.py``) when one
    exists, else to its Hub id. A local directory takes its spec from ``samd_model.json`` /
    sentence-transformers metadata, falling back to mean pooling.
    """
    by_id = {s.hf_id.lower(): s for s in MODELS.values()}
    if name_or_path in MODELS or name_or_path.lower() in by_id:
        spec = MODELS.get(name_or_path) or by_id[name_or_path.lower()]
        from samd_common.provision import provisioned_path  # local import: optional module

        local = provisioned_path(spec.name) if spec.name in _offline_names() else None
        if local is not None:
            return spec, str(local)
        if os.environ.get("HF_HUB_OFFLINE") == "1" and spec.name in _offline_names():
            raise FileNotFoundError(
                f"Model {spec.name!r} is not provisioned and the hub is offline. Run "
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
    from samd_common.provision import OFFLINE_MODELS

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


class SentenceEncoder(nn.Module):
    """Backbone + pooling (+ optional dense head): text → sentence embedding.

    ``forward`` returns token states and the pooled sentence embedding (for training);
    ``encode`` returns a numpy matrix (for evaluation). Both use ``spec.pooling``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        tokenizer,
        spec: ModelSpec,
        dense: nn.Module | None = None,
        max_length: int = 256,
    ) -> None:
        super().__init__()
        if spec.pooling not in POOLERS:
            raise ValueError(f"Unknown pooling {spec.pooling!r}; choose one of {sorted(POOLERS)}.")
        self.backbone, self.tokenizer, self.spec = backbone, tokenizer, spec
        self.dense = dense
        self.max_length = max_length
        tokenizer.padding_side = spec.padding_side

    @property
    def dim(self) -> int:
        """Width of the sentence embedding."""
        if self.dense is not None:
            return [m for m in self.dense if isinstance(m, nn.Linear)][-1].out_features
        return self.backbone.config.hidden_size

    @property
    def num_layers(self) -> int:
        """Number of transformer layers of the backbone (``config.num_hidden_layers``)."""
        return int(self.backbone.config.num_hidden_layers)

    @property
    def device(self) -> torch.device:
        """Device of the backbone's parameters."""
        return next(self.backbone.parameters()).device

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Prompt + tokenize a batch (padded, truncated) on the encoder's device."""
        batch = self.tokenizer(
            [self.spec.prompt + t for t in texts],
            padding=True,
            truncation=True,
            max_length=max_length or self.max_length,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Run the backbone and pool.

        Args:
            input_ids: (B, T) token ids.
            attention_mask: (B, T) 1 for real tokens, 0 for padding.
            **kwargs: passed to the backbone (e.g. ``output_attentions=True``).

        Returns:
            dict with ``token_embeddings`` (B, T, D_h), ``sentence_embedding`` (B, D) and, when
            the backbone returns them, ``hidden_states`` / ``attentions``.
        """
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        tokens = out.last_hidden_state  # (B, T, D_h)
        sentence = self.pool_tokens(tokens, attention_mask, input_ids)
        result = {"token_embeddings": tokens, "sentence_embedding": sentence}
        for key in ("hidden_states", "attentions"):
            if getattr(out, key, None) is not None:
                result[key] = getattr(out, key)
        return result

    def pool_tokens(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> torch.Tensor:
        """Sentence embedding from token states of any layer: the encoder's pooling (+ dense head).

        Args:
            tokens: (B, T, D_h) token states (last layer, or an earlier one for elastic depth).
            attention_mask: (B, T) 1 for real tokens.
            input_ids: (B, T) token ids (used by ``embed_token`` pooling).

        Returns:
            (B, D) sentence embeddings, not normalised.
        """
        sentence = pool(self.spec.pooling, tokens, attention_mask, input_ids=input_ids)  # (B, D_h)
        if self.dense is not None:
            sentence = self.dense(sentence)  # (B, D)
        return sentence

    @contextlib.contextmanager
    def first_layers(self, num_layers: int | None) -> Iterator[None]:
        """Run only the first ``num_layers`` transformer layers inside the ``with`` block.

        The backbone's layer list is swapped for its first ``num_layers`` entries and restored on
        exit (also on errors); nothing is copied. ``None`` or the full depth changes nothing.

        Raises:
            ValueError: ``num_layers`` outside 1..``self.num_layers``.
            NotImplementedError: the architecture does not support truncation
                (``transformer_layers``).
        """
        if num_layers is None or num_layers == self.num_layers:
            yield
            return
        if not 1 <= num_layers <= self.num_layers:
            raise ValueError(
                f"num_layers={num_layers} is outside 1..{self.num_layers} (the depth of "
                f"{self.spec.name})."
            )
        layers = transformer_layers(self.backbone)
        encoder = self.backbone.base_model.encoder
        encoder.layer = nn.ModuleList(list(layers)[:num_layers])
        try:
            yield
        finally:
            encoder.layer = layers

    @torch.inference_mode()
    def encode(
        self,
        texts: list[str],
        batch_size: int = 64,
        normalize: bool | None = None,
        show_progress: bool = False,
        num_layers: int | None = None,
    ) -> np.ndarray:
        """Embed texts in length-sorted batches.

        Args:
            texts: N texts (the prompt is added here).
            batch_size: texts per forward pass.
            normalize: L2-normalise; None follows ``spec.normalize``.
            show_progress: tqdm bar.
            num_layers: run only the first k transformer layers and pool their output with the
                encoder's own pooling (elastic depth, BERT-style encoders); None = all layers.

        Returns:
            (N, D) float32 array in the order of ``texts``.
        """
        with self.first_layers(num_layers):
            return self._encode(texts, batch_size, normalize, show_progress)

    def _encode(
        self, texts: list[str], batch_size: int, normalize: bool | None, show_progress: bool
    ) -> np.ndarray:
        was_training = self.training
        self.eval()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc=f"encode {self.spec.name}", disable=not show_progress):
            idx = order[start : start + batch_size]
            emb = self(**self.tokenize([texts[i] for i in idx]))["sentence_embedding"].float()
            if self.spec.normalize if normalize is None else normalize:
                emb = nn.functional.normalize(emb, dim=-1)
            out[idx] = emb.cpu().numpy()
        self.train(was_training)
        return out


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
        from samd_common.llm2vec import prepare_llm2vec  # local import: peft is optional

        backbone, tokenizer = prepare_llm2vec(backbone, tokenizer, spec)
    dense = _load_dense_head(Path(path)) if spec.dense and Path(path).is_dir() else None
    if dense is not None:
        dense = dense.to(backbone.dtype)
    encoder = SentenceEncoder(backbone, tokenizer, spec, dense, max_length=max_length)
    log.info("loaded %s from %s (pooling=%s, dim=%d)", spec.name, path, spec.pooling, encoder.dim)
    return encoder.to(device).eval()


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
    spec, width = encoder.spec, encoder.backbone.config.hidden_size
    modes = {
        "mean": "pooling_mode_mean_tokens",
        "cls": "pooling_mode_cls_token",
        "last_token": "pooling_mode_lasttoken",
    }
    if spec.pooling not in modes or encoder.dense is not None:
        raise ValueError(f"save_encoder supports {sorted(modes)} pooling without a dense head.")
    pooling = {
        "word_embedding_dimension": width,
        "include_prompt": True,
        **{m: k == spec.pooling for k, m in modes.items()},
    }
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if spec.normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
        (path / "2_Normalize").mkdir(exist_ok=True)
    (path / "1_Pooling").mkdir(exist_ok=True)
    files = {
        "1_Pooling/config.json": pooling,
        "modules.json": modules,
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
    for name, payload in files.items():
        (path / name).write_text(json.dumps(payload, indent=2))
    log.info("saved %s to %s", spec.name, path)
    return path
