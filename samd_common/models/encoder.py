"""One sentence encoder for every teacher and student, with elastic depth.

:class:`SentenceEncoder` wraps a backbone, its tokenizer and a :class:`ModelSpec`: ``forward`` is
used for training and ``encode`` for evaluation, with the *same* pooling in both.
:func:`transformer_layers` is the one place that knows where an architecture keeps its layer
stack, which ``SentenceEncoder.first_layers`` truncates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from samd_common.models.pooling import POOLERS, pool
from samd_common.models.table import ModelSpec

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
            f"its layer stack to samd_common.models.encoder.transformer_layers."
        )
    layers = backbone.base_model.encoder.layer  # BertEncoder.layer and its look-alikes
    return layers


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
