"""LLM2Vec teachers: merged LoRA adapters, bidirectional attention, mean pooling.

An LLM2Vec model (e.g. ``McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp`` + ``…-supervised``)
is a decoder LLM whose causal mask is removed, trained with masked next-token prediction (MNTP)
and then contrastively (supervised), both as LoRA adapters. Loading it here means:

1. the base decoder through ``AutoModel`` (``ModelSpec.hf_id``);
2. each adapter of ``ModelSpec.adapters`` applied with peft and merged, in order
   (:func:`merge_adapters`);
3. full attention (:func:`make_bidirectional`): attention modules lose ``is_causal`` and a forward
   pre-hook turns the 2-D padding mask into a 4-D additive mask, so no causal mask is built;
4. mean pooling (``ModelSpec.pooling``); :func:`encode_with_instruction` pools over the text
   tokens only and leaves instruction tokens out, as LLM2Vec does.

``load_encoder`` calls :func:`prepare_llm2vec` for every spec with adapters or
``bidirectional=True``. :func:`first_layers` builds the SKD reference student, the teacher's own
first n layers (same tokenizer and width).

References:
    BehnamGhader et al., "LLM2Vec: Large Language Models Are Secretly Powerful Text Encoders",
    COLM 2024, https://arxiv.org/abs/2404.05961
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from samd_common.models.encoder import SentenceEncoder

log = logging.getLogger(__name__)

_HOOK_FLAG = "_samd_bidirectional"
LLAMA3_USER_TEMPLATE = "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"


def merge_adapters(model: nn.Module, adapters: Sequence[str]) -> nn.Module:
    """Apply peft LoRA adapters one after another, merging each into the weights.

    Args:
        model: the base ``PreTrainedModel``.
        adapters: adapter directories or Hub ids, in training order (MNTP, then supervised).

    Returns:
        A plain model (no peft wrappers) with every adapter merged.

    Raises:
        OSError: an adapter cannot be found, with the name and what to do.
    """
    if not adapters:
        return model
    from peft import PeftModel  # optional dependency, only needed for adapters

    for adapter in adapters:
        try:
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        except (OSError, ValueError) as err:
            raise OSError(
                f"Could not load the LoRA adapter {adapter!r}: {err}. Pass a local adapter "
                f"directory (adapter_config.json + adapter_model.safetensors) or go online."
            ) from err
        log.info("merged LoRA adapter %s", adapter)
    return model


def _bidirectional_mask_hook(module: nn.Module, args: tuple, kwargs: dict):
    """Forward pre-hook: replace the 2-D padding mask by a 4-D additive full-attention mask."""
    ids = kwargs.get("input_ids", args[0] if args else None)
    embeds = kwargs.get("inputs_embeds")
    ref = ids if ids is not None else embeds
    mask = kwargs.get("attention_mask")
    if mask is None:
        mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)
    if mask.dim() == 2:
        dtype = next(module.parameters()).dtype
        keep = mask[:, None, None, :].bool().expand(-1, 1, mask.shape[1], -1)  # (B, 1, T, T)
        additive = torch.zeros(keep.shape, dtype=dtype, device=mask.device)
        kwargs["attention_mask"] = additive.masked_fill(~keep, torch.finfo(dtype).min)
    return args, kwargs


def make_bidirectional(model: nn.Module) -> nn.Module:
    """Let every token attend to every other real token (in place; idempotent).

    Works for Hugging Face decoders that build their mask with ``create_causal_mask`` (Llama,
    Mistral, Qwen2, Gemma): a 4-D mask is passed through unchanged, and attention modules with
    ``is_causal=False`` do not ask SDPA for a causal kernel.

    Raises:
        ValueError: for flash-attention implementations, which cannot take a dense 4-D mask.
    """
    impl = getattr(model.config, "_attn_implementation", None) or ""
    if impl.startswith("flash"):
        raise ValueError(
            f"{type(model).__name__} uses {impl!r}, which ignores custom masks; load it with "
            f"attn_implementation='sdpa' or 'eager' for bidirectional attention."
        )
    for sub in model.modules():
        if hasattr(sub, "is_causal"):
            sub.is_causal = False
    if not getattr(model, _HOOK_FLAG, False):
        model.register_forward_pre_hook(_bidirectional_mask_hook, with_kwargs=True)
        setattr(model, _HOOK_FLAG, True)
    model.config.is_causal = False
    return model


def prepare_llm2vec(backbone: nn.Module, tokenizer, spec) -> tuple[nn.Module, object]:
    """The model-table hook: merge ``spec.adapters``, make attention bidirectional, fix padding.

    Decoder tokenizers often lack a pad token; the EOS token is used (as LLM2Vec does).
    """
    backbone = merge_adapters(backbone, tuple(spec.adapters))
    if spec.bidirectional:
        backbone = make_bidirectional(backbone)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return backbone, tokenizer


def first_layers(encoder, n_layers: int, name: str | None = None):
    """A new encoder made of the first ``n_layers`` blocks of ``encoder`` (weights copied).

    The SKD reference student: the teacher's own first 4 transformer layers, same tokenizer,
    width, pooling and (for LLM2Vec) bidirectional attention; the final norm is kept.

    Args:
        encoder: a ``SentenceEncoder`` (teacher).
        n_layers: blocks to keep, 1 ≤ n ≤ the teacher's depth.
        name: spec name of the result (default ``"{teacher}-first{n}"``).

    Returns:
        A ``SentenceEncoder`` on the teacher's device, in training mode off (``eval``).
    """
    backbone = encoder.backbone
    cfg = copy.deepcopy(backbone.config)
    depth = cfg.num_hidden_layers
    if not 1 <= n_layers <= depth:
        raise ValueError(f"n_layers must be in 1..{depth} (the teacher's depth), got {n_layers}.")
    cfg.num_hidden_layers = n_layers
    if isinstance(getattr(cfg, "layer_types", None), list):
        cfg.layer_types = cfg.layer_types[:n_layers]
    student = type(backbone)(cfg)
    state = backbone.state_dict()
    missing, unexpected = student.load_state_dict(state, strict=False)
    if missing:
        raise RuntimeError(f"first_layers: weights missing in the copy: {missing[:5]}")
    if any(".0." in k and k not in state for k in unexpected):  # pragma: no cover - sanity
        raise RuntimeError(f"first_layers: unexpected keys {unexpected[:5]}")
    if getattr(backbone, _HOOK_FLAG, False):
        make_bidirectional(student)
    student = student.to(device=encoder.device, dtype=next(backbone.parameters()).dtype)
    spec = replace(encoder.spec, name=name or f"{encoder.spec.name}-first{n_layers}")
    out = SentenceEncoder(
        student, copy.deepcopy(encoder.tokenizer), spec, max_length=encoder.max_length
    )
    return out.eval()


@torch.inference_mode()
def encode_with_instruction(
    encoder,
    texts: Sequence[str],
    instruction: str = "",
    template: str | None = None,
    batch_size: int = 16,
    normalize: bool = False,
) -> np.ndarray:
    """LLM2Vec-style sentence embeddings: the instruction is read but not pooled.

    Each input is ``template.format(instruction + " " + text)`` (``template`` e.g.
    :data:`LLAMA3_USER_TEMPLATE`; default: none); mean pooling runs over the tokens whose
    characters start inside ``text`` or after it (the text and the template's closing tokens),
    so the instruction and the template's opening tokens are left out.

    Returns:
        (N, D) float32.
    """
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    tok = encoder.tokenizer
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        heads, full = [], []
        for text in chunk:
            body = f"{instruction.strip()} {text.strip()}" if instruction else text.strip()
            wrapped = template.format(body) if template else body
            heads.append(wrapped.index(text.strip()) if text.strip() else len(wrapped))
            full.append(wrapped)
        enc = tok(
            full,
            padding=True,
            truncation=True,
            max_length=encoder.max_length,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = enc.pop("offset_mapping")  # (B, T, 2)
        head = torch.tensor(heads)[:, None]
        embed_mask = enc["attention_mask"].bool() & (offsets[..., 0] >= head)  # (B, T)
        enc = {k: v.to(encoder.device) for k, v in enc.items()}
        hidden = encoder.backbone(**enc).last_hidden_state.float()  # (B, T, D)
        m = embed_mask.to(hidden.device, hidden.dtype)[..., None]  # (B, T, 1)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        if normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        out[start : start + len(chunk)] = pooled.cpu().numpy()
    return out
