"""ESE — Espresso Sentence Embeddings: one model, elastic in depth and in width.

Li, Li, Li, Xie and Li, "ESE: Espresso Sentence Embeddings", arXiv 2024 (ICLR 2025),
https://arxiv.org/abs/2402.14776 (first released as "2D Matryoshka Sentence Embeddings").

ESE trains a sentence encoder whose shallow layers already give usable embeddings
(*learn-to-express*) and whose first k dimensions hold the essential information
(*learn-to-compress*). Each step applies the contrastive loss to the last layer at full width and
at the k-dim prefix, and to one earlier layer whose loss weight shrinks with its depth; a
compression term makes the prefix match the top-k principal components (PCA) of the full
embedding of the batch. At inference the embedding can be cut in depth (run only the first
layers) and in width (keep a prefix) — see ``evaluation.evaluate_depth_grid``.

``L = ℓ(s⁽ⁿ⁾) + w_i·ℓ(s⁽ⁱ⁺¹⁾)``, ``w_i = 1 / (1 + ln(1 + i))``, with per layer
``ℓ(s) = InfoNCE(s1, s2) + InfoNCE(s1[:, :k], s2[:, :k]) + λ_mse·MSE(s1[:, :k], PCA_k(s1))
+ λ_kl·KL(P(PCA_k(s1)) ‖ P(s1[:, :k]))``, ``P`` = in-batch similarity distribution.

Choices, against the paper and its reference code (AnglE's ``AngleESETrainer``):

* **Layer index.** ``i`` is the 0-based index of a transformer layer: ``s⁽ⁱ⁺¹⁾`` pools the
  output of layer ``i`` (``hidden_states[i + 1]``), i ∈ {0, …, n−2} (every layer but the last),
  so the first layer has weight 1, the second 1/(1+ln 2) ≈ 0.59, … The embedding-layer output
  (depth 0) is never used: it is not a usable depth and is not in the evaluation grid.
* **One sampled layer per step.** ``i`` is drawn uniformly with torch's global RNG (seeded by
  the training loop, restored on resume; under DDP rank 0's draw is broadcast). The reference
  code instead sums all earlier layers each step and averages them (n−1 extra losses per step).
* **Per-layer objective.** The sampled layer gets the same ``ℓ`` as the last layer (full width,
  prefix and compression); the reference code gives earlier layers only the prefix and
  compression terms. Our evaluation reports every dim at every depth, so full width is trained.
* **Prefix size k.** Default ``D_s // 4`` (96 for MiniLM-384, 192 for 768-wide students), a dim
  of the evaluated halving series. The paper's scripts use a fixed 128 on 768/1024-wide models
  (D/6 to D/8); pass ``prefix_dim=128`` to reproduce that.
* **PCA.** Exact PCA of the centred batch (``torch.linalg.svd``, deterministic, fp32, no
  gradient): the target is the projection of each embedding on the top-k principal axes, each
  axis signed to point along the prefix coordinate it is matched to. The reference code takes
  the SVD of a softmax-normalised feature-affinity matrix instead. A batch of B texts has at
  most B−1 principal axes, so only the first ``min(k, B−1)`` prefix dims get the MSE target
  (raise the batch size for a full-rank target). Under DDP the PCA uses each rank's batch.
* **KL.** Between in-batch cosine-similarity distributions (each row a softmax over the other
  texts at τ_kl = 0.07, the InfoNCE temperature) of the PCA target and of the prefix; the
  reference code applies KL to softmax over feature dims at temperature 1.
* **Contrastive loss.** Unsupervised SimCSE InfoNCE (two dropout passes, τ = 0.07), as for every
  method here; the paper uses AnglE's supervised losses on NLI.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samd_common.losses.base import Logged, Objective, Outputs
from samd_common.losses.contrastive import info_nce
from samd_common.losses.params import Params
from samd_common.models import SentenceEncoder

log = logging.getLogger(__name__)

CITATION = """@article{li2024ese,
  title   = {{ESE}: Espresso Sentence Embeddings},
  author  = {Li, Xianming and Li, Zongxi and Li, Jing and Xie, Haoran and Li, Qing},
  journal = {arXiv preprint arXiv:2402.14776},
  year    = {2024},
  note    = {ICLR 2025}
}"""


def layer_weight(i: int) -> float:
    """Loss weight of the earlier layer with 0-based index ``i``: ``1 / (1 + ln(1 + i))``.

    Args:
        i: 0-based transformer-layer index (its output is ``hidden_states[i + 1]``), ≥ 0.

    Returns:
        A float in (0, 1]; 1 for the first layer.
    """
    if i < 0:
        raise ValueError(f"layer index must be ≥ 0 (0 = first transformer layer), got {i}.")
    return 1.0 / (1.0 + math.log(1.0 + i))


def sample_layer(num_layers: int, device: torch.device | str | None = None) -> int:
    """Draw an earlier layer index ``i`` uniformly from {0, …, num_layers − 2}.

    Uses torch's global RNG (seeded by the training loop). Under DDP every rank draws and rank
    0's index is broadcast, so all ranks train the same layer (their InfoNCE shares negatives).

    Args:
        num_layers: depth n of the model, ≥ 2.
        device: device of the broadcast tensor (the student's; CUDA under nccl).

    Returns:
        The sampled 0-based layer index.
    """
    if num_layers < 2:
        raise ValueError(f"Sampling an earlier layer needs ≥ 2 layers, got {num_layers}.")
    i = torch.randint(0, num_layers - 1, (1,))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        i = i.to(device or "cpu")
        torch.distributed.broadcast(i, src=0)
    return int(i)


@torch.no_grad()
def pca_target(emb: torch.Tensor, k: int) -> torch.Tensor:
    """Projection of each embedding on the top principal axes of the batch (no gradient).

    ``T = S·V_r`` with ``V_r`` the first ``r = min(k, B − 1, D)`` right singular vectors of the
    centred batch ``S − mean(S)``, column j signed so that ``V_r[j, j] ≥ 0``.

    Args:
        emb: (B, D) sentence embeddings (detached here; B ≥ 2).
        k: requested number of components.

    Returns:
        (B, r) fp32 tensor that does not require grad; equals ``emb[:, :r]`` when the first r
        coordinates already are the batch's top principal axes, in order.
    """
    if emb.dim() != 2 or emb.shape[0] < 2 or k < 1:
        raise ValueError(
            f"pca_target needs (B, D) embeddings with B ≥ 2 and k ≥ 1, got {tuple(emb.shape)}, "
            f"k={k}."
        )
    with torch.autocast(device_type=emb.device.type, enabled=False):
        x = emb.detach().float()  # (B, D)
        r = min(k, x.shape[0] - 1, x.shape[1])
        _, _, vh = torch.linalg.svd(x - x.mean(0, keepdim=True), full_matrices=False)  # (≤B, D)
        axes = vh[:r].T  # (D, r)
        sign = torch.diagonal(axes[:r]).sign()  # (r,): loading of axis j on coordinate j
        axes = axes * torch.where(sign == 0, torch.ones_like(sign), sign)
        return x @ axes  # (B, r)


def similarity_kl(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL between in-batch similarity distributions of a target and a prediction.

    ``KL = mean_b Σ_{j≠b} P_t[b, j]·(log P_t[b, j] − log P_p[b, j])``,
    ``P[b, :] = softmax_{j≠b}(cos(x_b, x_j) / τ)``.

    Args:
        pred: (B, D) embeddings that receive the gradient.
        target: (B, D') embeddings (any width) defining the target distribution.
        temperature: τ > 0.

    Returns:
        0-d fp32 tensor, 0 when both give the same similarities.
    """
    b = pred.shape[0]
    if target.shape[0] != b or b < 2 or temperature <= 0:
        raise ValueError(
            f"similarity_kl needs two (B, ·) inputs with the same B ≥ 2 and τ > 0, got "
            f"{tuple(pred.shape)}, {tuple(target.shape)}, τ={temperature}."
        )
    off = ~torch.eye(b, dtype=torch.bool, device=pred.device)  # (B, B) without the diagonal

    def log_probs(x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x.float(), dim=-1)
        sim = (x @ x.T)[off].view(b, b - 1)  # (B, B−1): each row's neighbours
        return F.log_softmax(sim / temperature, dim=-1)

    return F.kl_div(log_probs(pred), log_probs(target), log_target=True, reduction="batchmean")


def compression_loss(
    emb: torch.Tensor,
    k: int,
    mse_weight: float = 1.0,
    kl_weight: float = 1.0,
    kl_temperature: float = 0.07,
) -> torch.Tensor:
    """ESE's learn-to-compress term: the k-dim prefix learns the batch's PCA(k) projection.

    ``L = λ_mse·MSE(emb[:, :r], T) + λ_kl·KL(P(T) ‖ P(emb[:, :k]))``, ``T = pca_target(emb, k)``.

    Args:
        emb: (B, D) full sentence embeddings (the gradient reaches only the prefix).
        k: prefix size, ≤ D.
        mse_weight: λ_mse.
        kl_weight: λ_kl.
        kl_temperature: τ of the similarity distributions.

    Returns:
        0-d fp32 tensor; 0 when ``emb[:, :k]`` already equals the PCA projection.
    """
    if not 1 <= k <= emb.shape[-1]:
        raise ValueError(f"prefix k={k} must be in 1..{emb.shape[-1]} (the embedding width).")
    prefix = emb[:, :k].float()  # (B, k)
    target = pca_target(emb, k)  # (B, r), r ≤ k
    loss = prefix.new_zeros(())
    if mse_weight:
        loss = loss + mse_weight * F.mse_loss(prefix[:, : target.shape[1]], target)
    if kl_weight:
        loss = loss + kl_weight * similarity_kl(prefix, target, kl_temperature)
    return loss


def espresso_layer_loss(
    s1: torch.Tensor,
    s2: torch.Tensor,
    prefix_dim: int,
    temperature: float = 0.07,
    compress: bool = True,
    mse_weight: float = 1.0,
    kl_weight: float = 1.0,
    kl_temperature: float = 0.07,
) -> dict[str, torch.Tensor]:
    """ESE's objective ``ℓ`` for the embeddings of one layer (two dropout views).

    ``ℓ = InfoNCE(s1, s2) + InfoNCE(s1[:, :k], s2[:, :k]) + compression_loss(s1, k)``

    Args:
        s1: (B, D) first-pass embeddings of the layer.
        s2: (B, D) second-pass embeddings.
        prefix_dim: k ≤ D.
        temperature: InfoNCE τ.
        compress: include the compression term.
        mse_weight: λ_mse of the compression term.
        kl_weight: λ_kl of the compression term.
        kl_temperature: τ of its similarity distributions.

    Returns:
        ``{"full", "prefix", "compress" (if on), "total"}`` of 0-d tensors.
    """
    if s1.dim() != 2 or not 1 <= prefix_dim <= s1.shape[-1]:
        raise ValueError(
            f"Expected (B, D) embeddings and 1 ≤ prefix_dim ≤ D, got {tuple(s1.shape)} and "
            f"prefix_dim={prefix_dim}; lower prefix_dim."
        )
    terms = {
        "full": info_nce(s1, s2, temperature),
        "prefix": info_nce(s1[:, :prefix_dim], s2[:, :prefix_dim], temperature),
    }
    if compress:
        terms["compress"] = compression_loss(s1, prefix_dim, mse_weight, kl_weight, kl_temperature)
    terms["total"] = torch.stack(list(terms.values())).sum()
    return terms


@dataclass
class ESEParams(Params):
    """ESE hyper-parameters (see the module docstring for each choice against the paper)."""

    method = "ESE"
    temperature: float = 0.07  # InfoNCE τ (SimCSE setting)
    prefix_dim: int | None = None  # compressed size k; None → D_s // 4 (paper scripts: 128)
    sample_layer: bool = True  # learn-to-express: one earlier layer per step (False: width only)
    compress: bool = True  # learn-to-compress: PCA term on every trained layer
    mse_weight: float = 1.0  # λ_mse of the compression term (reference code: 1)
    kl_weight: float = 1.0  # λ_kl of the compression term (reference code: 1)
    kl_temperature: float = 0.07  # τ of the in-batch similarity distributions in the KL

    def rules(self) -> dict[str, bool]:
        """Positive temperatures, non-negative compression weights, a positive prefix."""
        return {
            "temperature, kl_temperature > 0": self.temperature > 0 and self.kl_temperature > 0,
            "mse_weight, kl_weight ≥ 0": self.mse_weight >= 0 and self.kl_weight >= 0,
            "prefix_dim ≥ 1 (or None for D_s // 4)": (
                self.prefix_dim is None or self.prefix_dim >= 1
            ),
        }


def espresso_loss(
    last: tuple[torch.Tensor, torch.Tensor],
    sampled: tuple[torch.Tensor, torch.Tensor] | None,
    layer: int | None,
    params: ESEParams,
    prefix_dim: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The full ESE objective from pooled embeddings: ``ℓ(last) + w_i·ℓ(sampled)``.

    Args:
        last: two (B, D) dropout views of the last layer's sentence embedding.
        sampled: two (B, D) views pooled from earlier layer ``layer``, or None (no depth term).
        layer: 0-based index i of that layer (weight ``layer_weight(i)``).
        params: ESE hyper-parameters.
        prefix_dim: resolved k.

    Returns:
        ``(loss, terms)``; terms hold ``last`` (ℓ of the last layer), ``last_compress`` and,
        with a sampled layer, ``layer`` (its ℓ before the weight ``layer_weight(layer)``).
    """
    p = params
    kw = {
        "temperature": p.temperature,
        "compress": p.compress,
        "mse_weight": p.mse_weight,
        "kl_weight": p.kl_weight,
        "kl_temperature": p.kl_temperature,
    }
    top = espresso_layer_loss(*last, prefix_dim, **kw)
    terms = {"last": top["total"]}
    if "compress" in top:
        terms["last_compress"] = top["compress"]
    loss = top["total"]
    if sampled is not None:
        if layer is None:
            raise ValueError("espresso_loss: pass the sampled layer's index with its embeddings.")
        terms["layer"] = espresso_layer_loss(*sampled, prefix_dim, **kw)["total"]
        loss = loss + layer_weight(layer) * terms["layer"]
    return loss, terms


class ESELoss(Objective):
    """ESE around a student: two dropout passes with all hidden states; no teacher.

    ``L = ℓ(s⁽ⁿ⁾) + w_i·ℓ(s⁽ⁱ⁺¹⁾)`` (:func:`espresso_loss`), i drawn per step with torch's RNG
    after the two passes.

    Args:
        student: the encoder being trained.
        params: ``ESEParams``; default k = D_s // 4, one sampled layer, compression on.

    Logs: ``loss``, ``last``, ``last_compress`` and, when a layer was sampled, ``layer``,
    ``layer_index`` (0-based i) and ``layer_weight``.

    References:
        Li et al., "ESE: Espresso Sentence Embeddings", ICLR 2025,
        https://arxiv.org/abs/2402.14776

    Example:
        >>> objective = ESELoss(student)  # student: a SentenceEncoder with ≥ 2 layers
        >>> batch = student.tokenize(["a cat sat", "a dog ran", "two birds"])
        >>> loss, logs = objective(batch, step=0, total_steps=1)  # logs["layer_index"]: i
    """

    name = "ESE"

    def __init__(self, student: SentenceEncoder, params: ESEParams | None = None) -> None:
        super().__init__(student, params or ESEParams())
        self.prefix_dim = self.params.prefix_dim or max(1, student.dim // 4)
        if self.prefix_dim > student.dim:
            raise ValueError(
                f"ESE prefix_dim={self.prefix_dim} exceeds the student width {student.dim}."
            )
        self.depth = student.num_layers
        self.sample = self.params.sample_layer and self.depth >= 2
        if self.params.sample_layer and not self.sample:
            log.warning("ESE: a 1-layer student has no earlier layer; training width only.")

    def pass_options(self, step: int, total_steps: int) -> tuple[dict, dict]:
        """Both passes return every layer's states when a layer is sampled."""
        options = {"output_hidden_states": True} if self.sample else {}
        return options, options

    def task_terms(
        self, out1: Outputs, out2: Outputs, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, Logged]:
        """``ℓ(last) + w_i·ℓ(layer i)``; logs each ℓ and the sampled layer."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        last = (out1["sentence_embedding"], out2["sentence_embedding"])  # 2 × (B, D_s)
        sampled, layer = None, None
        if self.sample:
            layer = sample_layer(self.depth, ids.device)
            sampled = tuple(
                self.student.pool_tokens(out["hidden_states"][layer + 1], mask, ids)  # (B, D_s)
                for out in (out1, out2)
            )
        loss, terms = espresso_loss(last, sampled, layer, self.params, self.prefix_dim)
        if layer is not None:
            terms |= {"layer_index": float(layer), "layer_weight": layer_weight(layer)}
        return loss, terms
