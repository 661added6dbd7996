"""Relational — in-batch similarity-matrix and relative-similarity distillation (Jasper).

Zhang et al., "Jasper and Stella: distillation of SOTA embedding models", 2024,
https://arxiv.org/abs/2412.19048

Jasper distils a teacher into a student through the *relations* between the texts of a batch
rather than through the embeddings themselves: the student's in-batch cosine-similarity matrix
regresses onto the teacher's (``L_sim``), and a hinge on every pair of text pairs makes the
student rank the pairs as the teacher does (``L_resim``: if the teacher finds (i, j) more
similar than (k, l), the student must too, by a margin). Both terms compare B×B matrices, so
they are free of the two models' widths and tokenizers: no projection is needed, and here they
are applied to every Matryoshka prefix of the student against the teacher's full matrix (Jasper
applies its losses to every MRL dim of the student as well). The teacher is the cached embedding
``t_pooled``; its matrix never moves.

``L = Σ_m w_m (λ_sim·L_sim(s_{:m}, t) + λ_resim·L_resim(s_{:m}, t))``,
``L_sim = mean_{i≠j} (S_s[i,j] − S_t[i,j])²``,
``L_resim = mean_{(p, q): S_t[p] > S_t[q]} max(0, S_s[q] − S_s[p] + margin)``,
``S(x) = x̂ x̂ᵀ`` of L2-normalised rows, p and q in-batch pairs i < j.

Choices (the paper's losses, adapted to this package):

* Pairs: the matrices are symmetric with a constant diagonal, so both terms use the B(B−1)/2
  pairs i < j only; ``L_resim`` compares every ordered couple of them, n² = (B(B−1)/2)² scalars
  (4.1M for B = 64, 16 MB in fp32), not B⁴. Above ``max_pairs`` pairs (default 2,048, i.e.
  B ≤ 64 is exact) a random subset of that many pairs is drawn per step, bounding memory.
* Dims: the halving series of the student width down to ``min_dim`` (32; 384 → 384, 192, 96,
  48), weight 1 each as in MRL and Jasper (their losses are summed over dims).
* Weights: Jasper uses λ_sim = 200 and λ_resim = 20 next to a cosine term of weight 10. Without
  the cosine term only the ratio matters (AdamW is invariant to a common scale); the defaults
  λ_sim = 3, λ_resim = 1 make the two terms the same size during training. Measured for
  all-MiniLM-L6-v2 against EmbeddingGemma-300m embeddings (batch 32, summed over the 4 dims):
  at the start L_sim ≈ 0.47, almost all of it the offset between the teacher's mean in-batch
  similarity (0.36) and the student's (0.04), which is gone within ~10 steps; from then on
  L_sim ≈ 0.04–0.06 and L_resim ≈ 0.10–0.17, so 3 : 1 puts both near 0.15, where Jasper's
  10 : 1 would let L_sim outweigh the ranking term 3–4 times.
* DDP: the objective gathers the student (with its graph) and teacher embeddings of every rank,
  so each rank computes the global batch's loss and DDP's gradient average is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samd_common.config import halving_dims
from samd_common.distributed import gather_across_ranks
from samd_common.losses.base import Logged, Objective, Outputs
from samd_common.losses.matryoshka import check_matryoshka_dims
from samd_common.losses.params import DistillParams
from samd_common.models import SentenceEncoder

CITATION = """@article{zhang2024jasper,
  title   = {Jasper and Stella: distillation of {SOTA} embedding models},
  author  = {Zhang, Dun and Li, Jiacheng and Zeng, Ziyang and Wang, Fulong},
  journal = {arXiv preprint arXiv:2412.19048},
  year    = {2024}
}"""

BATCH_KEYS = ("input_ids", "attention_mask", "t_pooled")


def cosine_similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """In-batch cosine similarities ``S = x̂ x̂ᵀ`` of L2-normalised rows, in fp32.

    Autocast is off here: bf16's ~0.008 resolution would blur gaps of L_resim's 0.015 margin.

    Args:
        x: (B, D) embeddings.

    Returns:
        (B, B) symmetric fp32 matrix, 1 on the diagonal (for non-zero rows).
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = F.normalize(x.float(), dim=-1)
        return x @ x.T  # (B, B)


def _upper_pairs(b: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of the B(B−1)/2 pairs i < j."""
    rows, cols = torch.triu_indices(b, b, offset=1, device=device)  # (2, n)
    return rows, cols


def _check_pair(student: torch.Tensor, teacher: torch.Tensor) -> None:
    """Raise ``ValueError`` unless (B, D_s) and (B, D_t) with the same B ≥ 2."""
    if student.dim() != 2 or teacher.dim() != 2 or student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"Expected (B, D_s) student and (B, D_t) teacher embeddings with the same B, got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}."
        )
    if student.shape[0] < 2:
        raise ValueError(f"In-batch similarities need B ≥ 2 texts, got {student.shape[0]}.")


def similarity_matrix_loss(s_sim: torch.Tensor, t_sim: torch.Tensor) -> torch.Tensor:
    """Jasper's L_sim on one pair of matrices: MSE over the off-diagonal pairs.

    ``L_sim = mean_{i<j} (S_s[i,j] − S_t[i,j])²`` (the diagonal is 1 on both sides).

    Args:
        s_sim: (B, B) student cosine-similarity matrix.
        t_sim: (B, B) teacher cosine-similarity matrix.

    Returns:
        0-d fp32 tensor; 0 when the matrices agree off the diagonal.

    References:
        Zhang et al., "Jasper and Stella: distillation of SOTA embedding models", 2024,
        https://arxiv.org/abs/2412.19048

    Example:
        >>> s = cosine_similarity_matrix(torch.randn(8, 16))
        >>> float(similarity_matrix_loss(s, s))
        0.0
    """
    rows, cols = _upper_pairs(s_sim.shape[0], s_sim.device)
    return (s_sim[rows, cols].float() - t_sim[rows, cols].float()).pow(2).mean()


def relative_similarity_loss(
    s_sim: torch.Tensor,
    t_sim: torch.Tensor,
    margin: float = 0.015,
    max_pairs: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Jasper's L_resim on one pair of matrices: the student ranks the pairs as the teacher does.

    ``L_resim = mean_{(p, q): S_t[p] > S_t[q]} max(0, S_s[q] − S_s[p] + margin)`` over in-batch
    pairs p = (i, j), q = (k, l) with i < j, k < l.

    Args:
        s_sim: (B, B) student cosine-similarity matrix.
        t_sim: (B, B) teacher cosine-similarity matrix.
        margin: how far the student's more similar pair must lead (0.015 in Jasper).
        max_pairs: above this many pairs i < j, a random subset of this size is used (memory is
            O(max_pairs²)); None uses all of them.
        generator: random source of that subset (None: torch's global one).

    Returns:
        0-d fp32 tensor; 0 when every teacher-ordered couple is ordered the same way by the
        student with a lead ≥ ``margin`` (or when the teacher ties every pair).

    References:
        Zhang et al., "Jasper and Stella: distillation of SOTA embedding models", 2024,
        https://arxiv.org/abs/2412.19048

    Example:
        >>> t = cosine_similarity_matrix(torch.randn(8, 16))
        >>> float(relative_similarity_loss(10 * t, t, margin=0.0))  # same order, larger gaps
        0.0
    """
    if margin < 0:
        raise ValueError(f"margin must be ≥ 0 (Jasper uses 0.015), got {margin}.")
    if max_pairs is not None and max_pairs < 2:
        raise ValueError(f"max_pairs must be ≥ 2 or None, got {max_pairs}.")
    rows, cols = _upper_pairs(s_sim.shape[0], s_sim.device)
    s, t = s_sim[rows, cols].float(), t_sim[rows, cols].float()  # (n,)
    if max_pairs is not None and len(s) > max_pairs:
        pick = torch.randperm(len(s), generator=generator)[:max_pairs].to(s.device)
        s, t = s[pick], t[pick]  # (max_pairs,)
    ordered = t[:, None] > t[None, :]  # (n, n): the teacher ranks pair p above pair q
    hinge = F.relu(s[None, :] - s[:, None] + margin)  # (n, n): S_s[q] − S_s[p] + margin
    return (hinge * ordered).sum() / ordered.sum().clamp_min(1)


def relational_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    dims: Sequence[int],
    weights: Sequence[float] | None = None,
    lambda_sim: float = 3.0,
    lambda_resim: float = 1.0,
    margin: float = 0.015,
    max_pairs: int | None = 2048,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Similarity-matrix and relative-similarity distillation at every student prefix.

    ``L = Σ_m w_m (λ_sim·L_sim(S(s_{:m}), S(t)) + λ_resim·L_resim(S(s_{:m}), S(t)))``

    Args:
        student: (B, D_s) student sentence embeddings.
        teacher: (B, D_t) teacher sentence embeddings (any width: only S(t) is used).
        dims: K student prefix sizes, each ≤ D_s.
        weights: K non-negative weights; None → 1 each.
        lambda_sim: weight of L_sim.
        lambda_resim: weight of L_resim (0 skips its computation).
        margin: L_resim's margin.
        max_pairs: L_resim's cap on in-batch pairs (random subset above it, drawn once per call
            and shared by every dim); None = all.

    Returns:
        ``(L, {"sim": Σ_m w_m L_sim, "resim": Σ_m w_m L_resim})``, 0-d fp32 tensors.

    References:
        Zhang et al., "Jasper and Stella: distillation of SOTA embedding models", 2024,
        https://arxiv.org/abs/2412.19048

    Example:
        >>> s, t = torch.randn(8, 32), torch.randn(8, 48)
        >>> loss, parts = relational_loss(s, t, dims=[32, 16])
        >>> sorted(parts)
        ['resim', 'sim']
    """
    _check_pair(student, teacher)
    weights = check_matryoshka_dims(dims, [student.shape[-1]], weights)
    if lambda_sim < 0 or lambda_resim < 0:
        raise ValueError(f"lambda_sim, lambda_resim must be ≥ 0, got {lambda_sim}, {lambda_resim}.")
    t_sim = cosine_similarity_matrix(teacher.detach())  # (B, B), fixed target
    n_pairs = student.shape[0] * (student.shape[0] - 1) // 2
    drawn = max_pairs is not None and n_pairs > max_pairs  # draw only when a subset is needed
    seed = int(torch.randint(0, 2**62, ())) if drawn else 0
    sims, resims = [], []
    for m, w in zip(dims, weights, strict=True):
        s_sim = cosine_similarity_matrix(student[:, :m])  # (B, B)
        sims.append(w * similarity_matrix_loss(s_sim, t_sim))
        if lambda_resim > 0:  # the same pair subset at every dim
            same = torch.Generator().manual_seed(seed)
            resims.append(w * relative_similarity_loss(s_sim, t_sim, margin, max_pairs, same))
    sim = torch.stack(sims).sum()
    resim = torch.stack(resims).sum() if resims else torch.zeros_like(sim)
    return lambda_sim * sim + lambda_resim * resim, {"sim": sim, "resim": resim}


@dataclass
class RelationalParams(DistillParams):
    """Relational-distillation hyper-parameters; no SimCSE by default (one student pass).

    ``w_task`` (0: SimCSE off) weighs the InfoNCE term, ``w_kd`` (1) the relational terms,
    ``temperature`` is the InfoNCE τ when SimCSE is switched on.
    """

    method = "Relational"
    w_task: float = 0.0  # SimCSE off: Jasper distils without a task loss
    w_kd: float = 1.0  # the relational terms carry the whole loss
    lambda_sim: float = 3.0  # weight of L_sim (Jasper: 200 with λ_resim 20; see the module doc)
    lambda_resim: float = 1.0  # weight of L_resim (0 switches it off)
    margin: float = 0.015  # L_resim's margin (Jasper)
    max_pairs: int | None = 2048  # L_resim uses at most this many in-batch pairs (exact: B ≤ 64)
    min_dim: int = 32  # smallest student prefix of the halving series
    dims: list[int] | None = None  # explicit student prefixes; None → halving_dims(D_s, min_dim)
    weights: list[float] | None = None  # one weight per dim; None → 1 each (MRL, Jasper)

    def rules(self) -> dict[str, bool]:
        """Non-negative weights and margin, a sane pair cap, positive dims, weights with dims."""
        return {
            **super().rules(),
            "lambda_sim, lambda_resim, margin ≥ 0": min(
                self.lambda_sim, self.lambda_resim, self.margin
            )
            >= 0,
            "max_pairs ≥ 2 or None": self.max_pairs is None or self.max_pairs >= 2,
            "min_dim ≥ 1": self.min_dim >= 1,
            "explicit dims with weights (one weight per dim)": (
                self.weights is None or self.dims is not None
            ),
        }

    def resolve_dims(self, width: int) -> list[int]:
        """The student prefixes for a student of ``width`` (explicit ones in their given order)."""
        dims = list(self.dims) if self.dims else halving_dims(width, self.min_dim)
        if max(dims) > width:
            raise ValueError(f"Relational dims {dims} exceed the student width {width}.")
        return dims


class RelationalLoss(Objective):
    """Jasper's similarity and relative-similarity distillation at every student prefix.

    ``L = w_kd·Σ_m w_m (λ_sim·MSE(S(s_{:m}), S(t)) + λ_resim·L_resim(S(s_{:m}), S(t)))``
    (``+ w_task·InfoNCE(s1, s2)`` only when ``w_task > 0``; then the student runs twice).

    Args:
        student: the encoder being trained; no projection is owned (the losses are width-free).
        teacher_dim: D_t of the cached ``t_pooled`` (checked against each batch).
        params: ``RelationalParams``; default λ_sim 3, λ_resim 1, margin 0.015, dims halving
            from D_s to 32 with weight 1, no SimCSE.

    The batch (``DistillDataset.collate`` on the teacher cache) holds ``input_ids`` /
    ``attention_mask`` (B, T_s) and ``t_pooled`` (B, D_t). Logs: ``loss``, ``sim``, ``resim``
    (and ``task`` with SimCSE on).

    References:
        Zhang et al., "Jasper and Stella: distillation of SOTA embedding models", 2024,
        https://arxiv.org/abs/2412.19048

    Example:
        >>> objective = RelationalLoss(student, teacher_dim=768)  # student: a SentenceEncoder
        >>> objective.dims  # for a student of width 384
        [384, 192, 96, 48]
        >>> loss, logs = objective(batch, step=0, total_steps=100)  # batch: with t_pooled
    """

    name = "Relational"
    batch_keys = BATCH_KEYS
    batch_hint = "build it with DistillDataset.collate on the teacher cache."

    def __init__(
        self, student: SentenceEncoder, teacher_dim: int, params: RelationalParams | None = None
    ) -> None:
        super().__init__(student, params or RelationalParams())
        self.teacher_dim = teacher_dim
        self.dims = self.params.resolve_dims(student.dim)
        self.weights = check_matryoshka_dims(self.dims, [student.dim], self.params.weights)

    @property
    def uses_task(self) -> bool:
        """SimCSE (and its second pass) only with ``w_task > 0``."""
        return self.params.w_task > 0

    def kd_terms(
        self, out: Outputs, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, Logged]:
        """The relational loss over the global batch; logs ``sim`` and ``resim``."""
        t = batch["t_pooled"]  # (B, D_t)
        if t.shape[-1] != self.teacher_dim:
            raise ValueError(
                f"t_pooled has width {t.shape[-1]} but teacher_dim is {self.teacher_dim}; build "
                f"the objective from this cache's TeacherInfo."
            )
        s = gather_across_ranks(out["sentence_embedding"])  # (W·B, D_s), keeps the graph
        t = gather_across_ranks(t.float())  # (W·B, D_t)
        p = self.params
        loss, parts = relational_loss(
            s, t, self.dims, self.weights, p.lambda_sim, p.lambda_resim, p.margin, p.max_pairs
        )
        return loss, dict(parts)
