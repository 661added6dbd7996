"""Pooling: token states → one sentence vector. Pure tensor functions.

Shapes: ``hidden`` (B, T, D), ``mask`` (B, T) with 1 for real tokens (padding 0).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
    """Average of the real-token states: ``Σ_t m_t·h_t / Σ_t m_t``.

    Args:
        hidden: (B, T, D) token states.
        mask: (B, T) attention mask.

    Returns:
        (B, D) mean of the unmasked states (zeros for an all-masked row).
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
    """State of the first position (``[CLS]``/``<s>``); assumes right padding.

    Returns:
        (B, D)
    """
    return hidden[:, 0]


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
    """State of the last real token, for left- or right-padded batches (decoder embedders).

    Returns:
        (B, D)
    """
    if bool(mask[:, -1].all()):  # left padding: the last column is real everywhere
        return hidden[:, -1]
    last = mask.long().sum(1) - 1  # (B,) right padding
    return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


def embed_token_pool(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    *,
    input_ids: torch.Tensor,
    embed_token_id: int | None = None,
    **_: torch.Tensor,
) -> torch.Tensor:
    """State of a special embedding token (its last occurrence); last real token if absent.

    Returns:
        (B, D)
    """
    if embed_token_id is None:
        return last_token_pool(hidden, mask)
    hits = (input_ids == embed_token_id) & mask.bool()  # (B, T)
    positions = torch.arange(hidden.size(1), device=hidden.device).expand_as(hits)
    idx = torch.where(hits, positions, -1).max(1).values  # (B,)
    fallback = mask.long().sum(1) - 1
    idx = torch.where(idx >= 0, idx, fallback)
    return hidden[torch.arange(hidden.size(0), device=hidden.device), idx]


POOLERS: dict[str, Callable[..., torch.Tensor]] = {
    "mean": mean_pool,
    "cls": cls_pool,
    "last_token": last_token_pool,
    "embed_token": embed_token_pool,
}


def pool(
    kind: str, hidden: torch.Tensor, mask: torch.Tensor, **kwargs: torch.Tensor
) -> torch.Tensor:
    """Dispatch to the pooler named ``kind`` (see ``POOLERS``)."""
    try:
        fn = POOLERS[kind]
    except KeyError:
        raise ValueError(f"Unknown pooling {kind!r}; choose one of {sorted(POOLERS)}.") from None
    return fn(hidden, mask, **kwargs)
