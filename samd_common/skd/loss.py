"""SKD — sense-dictionary knowledge distillation (Wang et al., Findings of ACL 2025).

The teacher's last-layer token states are clustered per token id into a *sense dictionary*
(``skd.clustering``): token v → centroids ``C_v`` (k_v × D_t). Distillation is token-level
classification: for a student token mapped to a teacher token with id v, the student predicts
which of v's senses the teacher's state is closest to, ``z = C_v · W h_s``, with target
``argmax_k C_v · h_t`` and cross-entropy over v's senses. ``W`` is the identity when the student
is the teacher's own first layers (same tokenizer and width, the reference setting) and a
trainable projection otherwise. Our cross-tokenizer variant maps student tokens to teacher
tokens through span groups (``alignment.batch_span_groups``): every (student j, teacher i) pair
of the same group is one classification, so one-to-many and many-to-one segmentations both work.
At inference each projected student state may be replaced by its nearest sense ("replace").

``L = w_kd · mean_{(j,i)} CE(C_v W h_s[j], argmax_k C_v h_t[i]) [+ w_task · InfoNCE]``

References:
    Wang et al., "Multi-Sense Embeddings for Language Models and Knowledge Distillation",
    Findings of ACL 2025, https://arxiv.org/abs/2504.06036
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samd_common.distributed import masked_mean_across_ranks
from samd_common.losses.base import Logged, Objective, Outputs
from samd_common.losses.params import DistillParams
from samd_common.models import SentenceEncoder
from samd_common.skd.senses import SenseTable, tokenizer_fingerprint

CITATION = """@inproceedings{wang-etal-2025-multi-sense,
  title     = {Multi-Sense Embeddings for Language Models and Knowledge Distillation},
  author    = {Wang, Qitong and Zaki, Mohammed J and Kollias, Georgios and Kalantzis, Vasileios},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2025},
  pages     = {13353--13369},
  year      = {2025},
  doi       = {10.18653/v1/2025.findings-acl.691},
  note      = {arXiv:2504.06036}
}"""

BATCH_KEYS = ("input_ids", "attention_mask", "t_hidden", "t_input_ids", "s_group", "t_group")
_CHUNK = 1 << 24  # pair × centroid scores computed at once (64 MiB in fp32)


def span_group_pairs(
    s_group: torch.Tensor, t_group: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (student token, teacher token) pair that shares a span group.

    Args:
        s_group: (B, T_s) long span-group ids, −1 for none.
        t_group: (B, T_t) long span-group ids, −1 for none.

    Returns:
        ``(b, j, i)``: (P,) long each; sample, student position, teacher position.
    """
    same = (s_group[:, :, None] == t_group[:, None, :]) & (s_group[:, :, None] >= 0)  # (B,T_s,T_t)
    b, j, i = same.nonzero(as_tuple=True)
    return b, j, i


def sense_scores(
    x: torch.Tensor, entries: torch.Tensor, centroids: torch.Tensor, offsets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dot products of each vector with the senses of its dictionary entry, padded.

    Args:
        x: (P, D) vectors (projected student states or teacher states).
        entries: (P,) long dictionary rows (entry index, not token id), all ≥ 0.
        centroids: (N, D) all senses, entry e owning rows ``offsets[e]:offsets[e+1]``.
        offsets: (E + 1,) long.

    Returns:
        ``(scores, valid)``: (P, K) fp32 with −inf at padding, (P, K) bool; K = largest k_v
        among the entries present.
    """
    if len(entries) == 0:
        return x.new_zeros(0, 0, dtype=torch.float32), torch.zeros(0, 0, dtype=torch.bool)
    uniq, inv = torch.unique(entries, return_inverse=True)  # (U,), (P,)
    start = offsets[uniq]
    count = offsets[uniq + 1] - start  # (U,)
    first = torch.cumsum(count, 0) - count  # each entry's first row in the gathered block
    rows = start.repeat_interleave(count) + (
        torch.arange(int(count.sum()), device=x.device) - first.repeat_interleave(count)
    )  # (R,)
    block = centroids[rows].float()  # (R, D)
    k = torch.arange(int(count.max()), device=x.device)  # (K,)
    cols = first[inv][:, None] + k  # (P, K) columns of the (P, R) score matrix
    valid = k[None, :] < count[inv][:, None]  # (P, K)
    cols = cols.clamp(max=len(rows) - 1)
    step = max(1, _CHUNK // max(len(rows), 1))
    parts = [
        (x[a : a + step].float() @ block.T).gather(1, cols[a : a + step])  # (p, R) → (p, K)
        for a in range(0, len(x), step)
    ]
    return torch.cat(parts).masked_fill(~valid, -torch.inf), valid


def lookup_entries(
    token_ids: torch.Tensor, entry_of_id: torch.Tensor, offsets: torch.Tensor, min_senses: int = 1
) -> torch.Tensor:
    """Dictionary entry of each token id; −1 without one or with fewer than ``min_senses`` senses.

    Args:
        token_ids: (...) long token ids.
        entry_of_id: (V,) long entry of each id, −1 without one.
        offsets: (E + 1,) long row ranges of the entries' senses.
        min_senses: entries with fewer senses count as none (at least 1).

    Returns:
        (...) long entries.
    """
    entry = torch.full_like(token_ids, -1)
    known = (token_ids >= 0) & (token_ids < len(entry_of_id))
    entry[known] = entry_of_id[token_ids[known]]
    ok = entry >= 0
    size = torch.zeros_like(entry)
    size[ok] = offsets[entry[ok] + 1] - offsets[entry[ok]]
    return torch.where(size >= max(min_senses, 1), entry, -1)


def _check_sense_shapes(
    student_states: torch.Tensor,
    teacher_states: torch.Tensor,
    teacher_ids: torch.Tensor,
    s_group: torch.Tensor,
    t_group: torch.Tensor,
    centroids: torch.Tensor,
) -> None:
    """Raise ``ValueError`` unless the shapes are those of :func:`sense_distillation_loss`."""
    (b_s, t_s, d), t_t = student_states.shape, teacher_states.shape[1]
    if teacher_states.shape != (b_s, t_t, d) or centroids.shape[1] != d:
        raise ValueError(
            f"student_states {tuple(student_states.shape)} must be projected to the teacher "
            f"width D_t of teacher_states {tuple(teacher_states.shape)} and centroids "
            f"{tuple(centroids.shape)}; project with W first."
        )
    shapes_ok = s_group.shape == (b_s, t_s) and t_group.shape == teacher_ids.shape == (b_s, t_t)
    if not shapes_ok:
        raise ValueError("s_group must be (B, T_s); t_group and teacher_ids (B, T_t).")


def sense_distillation_loss(
    student_states: torch.Tensor,
    teacher_states: torch.Tensor,
    teacher_ids: torch.Tensor,
    s_group: torch.Tensor,
    t_group: torch.Tensor,
    centroids: torch.Tensor,
    offsets: torch.Tensor,
    entry_of_id: torch.Tensor,
    min_senses: int = 2,
) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
    """Sense classification loss over all span-group pairs with a dictionary entry.

    ``L = mean_{(b,j,i)} CE(C_v · x[b,j], argmax_k C_v · h_t[b,i])``, ``v = teacher_ids[b,i]``.

    Args:
        student_states: (B, T_s, D_t) projected student token states ``W h_s`` (with gradient).
        teacher_states: (B, T_t, D_t) teacher last-layer token states.
        teacher_ids: (B, T_t) long teacher token ids.
        s_group: (B, T_s) long span-group ids (−1 none); the same tokenizer gives 1:1 groups.
        t_group: (B, T_t) long span-group ids (−1 none).
        centroids: (N, D_t) senses of all entries.
        offsets: (E + 1,) long row ranges of the entries.
        entry_of_id: (V_t,) long entry of each teacher token id, −1 without one.
        min_senses: entries with fewer senses are skipped (one sense gives a constant 0).

    Returns:
        ``(loss, stats)``: 0-d fp32 loss — an exact 0 still attached to ``student_states`` when no
        pair has an entry — and ``pairs`` (float, pairs used), ``sense_acc`` (0-d tensor, share of
        pairs whose argmax matches the target; a tensor so that logging needs no extra sync).

    References:
        Wang et al., "Multi-Sense Embeddings for Language Models and Knowledge Distillation",
        Findings of ACL 2025, https://arxiv.org/abs/2504.06036
    """
    _check_sense_shapes(student_states, teacher_states, teacher_ids, s_group, t_group, centroids)
    zero = student_states.sum() * 0.0  # keeps the graph when nothing is supervised
    b, j, i = span_group_pairs(s_group, t_group)
    entry = lookup_entries(teacher_ids[b, i], entry_of_id, offsets, min_senses)
    keep = entry >= 0  # (P,) mapped to an entry with enough senses
    b, j, i, entry = b[keep], j[keep], i[keep], entry[keep]
    if len(entry) == 0:  # still a collective under DDP, like the branch below
        empty = torch.zeros(1, device=zero.device)
        loss = masked_mean_across_ranks(empty, empty) + zero
        return loss, {"pairs": 0.0, "sense_acc": torch.zeros((), device=zero.device)}
    with torch.autocast(device_type=student_states.device.type, enabled=False):
        with torch.no_grad():
            target_scores, _ = sense_scores(teacher_states[b, i], entry, centroids, offsets)
            target = target_scores.argmax(1)  # (P,) the teacher's nearest sense
        logits, _ = sense_scores(student_states[b, j], entry, centroids, offsets)  # (P, K)
        ce = F.cross_entropy(logits, target, reduction="none")  # (P,)
        loss = masked_mean_across_ranks(ce, torch.ones_like(ce)) + zero
    acc = (logits.detach().argmax(1) == target).float().mean()
    return loss, {"pairs": float(len(entry)), "sense_acc": acc}


def replace_with_senses(
    states: torch.Tensor,
    b: torch.Tensor,
    j: torch.Tensor,
    entry: torch.Tensor,
    centroids: torch.Tensor,
    offsets: torch.Tensor,
) -> torch.Tensor:
    """Replace inference: each mapped token state becomes its nearest sense (dot product).

    A student position mapped to several teacher tokens (a span group with several teacher
    tokens) takes the best-scoring sense over all of them; unmapped positions stay as they are.

    Args:
        states: (B, T, D_t) projected student token states.
        b: (P,) sample of each (position, entry) candidate.
        j: (P,) position.
        entry: (P,) dictionary entry (≥ 0).
        centroids: (N, D_t).
        offsets: (E + 1,).

    Returns:
        (B, T, D_t) states with mapped positions replaced.
    """
    out = states.clone()
    if len(entry) == 0:
        return out
    scores, _ = sense_scores(states[b, j], entry, centroids, offsets)  # (P, K)
    best, k = scores.max(1)  # (P,)
    flat = b * states.shape[1] + j  # (P,) position id
    top = torch.full((states.shape[0] * states.shape[1],), -torch.inf, device=states.device)
    top = top.scatter_reduce(0, flat, best, reduce="amax")
    win = best >= top[flat]  # the best candidate of each position (ties: any)
    rows = offsets[entry[win]] + k[win]
    out[b[win], j[win]] = centroids[rows].to(out.dtype)
    return out


class SenseDictionary(nn.Module):
    """A sense table as non-persistent buffers (kept out of checkpoints; the path is in config)."""

    def __init__(self, table) -> None:
        super().__init__()
        # np.array copies: the table may be a read-only memory map (torch warns on those)
        ids = torch.as_tensor(np.array(table.token_ids), dtype=torch.long)
        lookup = torch.full((int(ids.max()) + 1 if len(ids) else 1,), -1, dtype=torch.long)
        lookup[ids] = torch.arange(len(ids))
        self.register_buffer("entry_of_id", lookup, persistent=False)
        self.register_buffer(
            "offsets", torch.as_tensor(np.array(table.offsets), dtype=torch.long), False
        )
        self.register_buffer(
            "centroids", torch.as_tensor(np.array(table.vectors, dtype=np.float32)), False
        )
        self.meta = dict(table.meta)

    @property
    def dim(self) -> int:
        """Sense width D_t."""
        return int(self.centroids.shape[1])

    def entries(self, token_ids: torch.Tensor, min_senses: int = 1) -> torch.Tensor:
        """Entry of each token id (−1 without one, or with fewer than ``min_senses`` senses)."""
        return lookup_entries(token_ids, self.entry_of_id, self.offsets, min_senses)


@dataclass
class SKDParams(DistillParams):
    """SKD hyper-parameters (reference: sense loss only, dot-product senses, lr 5e-6)."""

    method = "SKD"
    w_task: float = 0.0  # SimCSE weight; 0 in the reference (DESIGN §6 default 0.5 not used)
    w_kd: float = 1.0  # weight of the sense loss
    dictionary: str | None = None  # folder of the sense dictionary (clustering.cluster_senses)
    projection: str = "auto"  # auto | identity | linear; auto = identity iff same tokenizer+width
    min_senses: int = 2  # entries with fewer senses are not trained on
    mode: str = "all"  # all (one dictionary from every task) | sep (one per task); pipeline only

    def rules(self) -> dict[str, bool]:
        """The shared weight rules, known projection and mode, ``min_senses ≥ 1``."""
        return {
            **super().rules(),
            "projection in auto|identity|linear": self.projection in ("auto", "identity", "linear"),
            "mode in all|sep": self.mode in ("all", "sep"),
            "min_senses ≥ 1": self.min_senses >= 1,
        }


def _check_dictionary(p: SKDParams, dictionary, student: SentenceEncoder, teacher_width) -> None:
    """Raise ``ValueError`` without a dictionary, or for an identity W across widths."""
    if dictionary is None or (isinstance(dictionary, (str, Path)) and not str(dictionary)):
        raise ValueError(
            "SKD needs params['dictionary']: the folder written by clustering.cluster_senses "
            "(`python scripts/skd.py cluster …`); samd_common.skd.run.run_skd builds and passes it."
        )
    if teacher_width and p.projection == "identity":
        if teacher_width != student.backbone.config.hidden_size:
            raise ValueError("projection='identity' needs the teacher's width; use 'linear'.")


class SKDLoss(Objective):
    """SKD objective: owns the student, the projection W and the sense dictionary.

    ``L = w_kd · mean_{(j,i)} CE(C_v W h_s[j], argmax_k C_v h_t[i]) [+ w_task · InfoNCE]``; the
    student runs once unless ``w_task > 0``.

    Args:
        student: the encoder being trained.
        dictionary: a clustered ``SenseTable`` or its folder; None takes ``params.dictionary``.
        params: ``SKDParams``; default the reference (sense loss only).
        teacher_hidden_dim: the teacher's token-state width, checked against an identity W.

    The batch (``DistillDataset.collate`` on the teacher cache) holds ``input_ids`` /
    ``attention_mask`` (B, T_s), ``t_hidden`` (B, T_t, D_t), ``t_input_ids`` (B, T_t) and the span
    groups ``s_group`` (B, T_s), ``t_group`` (B, T_t). Logs: ``loss``, ``sense``, ``pairs``,
    ``sense_acc`` and, with ``w_task > 0``, ``task``.

    References:
        Wang et al., "Multi-Sense Embeddings for Language Models and Knowledge Distillation",
        Findings of ACL 2025, https://arxiv.org/abs/2504.06036

    Example:
        >>> objective = SKDLoss(student, "work/dictionary-all")  # clustering.cluster_senses output
        >>> loss, logs = objective(batch, step=0, total_steps=100)  # batch: as above
        >>> loss.backward()  # reaches the student and W (when W is not the identity)
    """

    name = "SKD"
    batch_keys = BATCH_KEYS
    batch_hint = "build it with DistillDataset.collate on the teacher cache."

    def __init__(
        self,
        student: SentenceEncoder,
        dictionary=None,
        params: SKDParams | None = None,
        teacher_hidden_dim: int | None = None,
    ) -> None:
        super().__init__(student, params or SKDParams())
        p = self.params
        dictionary = p.dictionary if dictionary is None else dictionary
        _check_dictionary(p, dictionary, student, teacher_hidden_dim)
        if isinstance(dictionary, (str, Path)):
            dictionary = SenseTable.load(dictionary)
        if dictionary.meta.get("kind") != "senses":
            raise ValueError(
                "SKDLoss needs a clustered sense dictionary (kind='senses'); run "
                "clustering.cluster_senses (scripts/skd.py cluster) on the gathered states first."
            )
        self.senses = SenseDictionary(dictionary)
        d_s, d_t = student.backbone.config.hidden_size, self.senses.dim
        same_tok = dictionary.meta.get("tokenizer") == tokenizer_fingerprint(student.tokenizer)
        kind = p.projection
        if kind == "auto":
            kind = "identity" if same_tok and d_s == d_t else "linear"
        if kind == "identity" and d_s != d_t:
            raise ValueError(
                f"projection='identity' needs equal widths; student {d_s}, senses {d_t}."
            )
        self.same_tokenizer = same_tok
        self.proj = nn.Identity() if kind == "identity" else nn.Linear(d_s, d_t, bias=False)
        if kind == "linear" and d_s == d_t:
            nn.init.eye_(self.proj.weight)  # square: start from the identity map

    def project(self, token_states: torch.Tensor) -> torch.Tensor:
        """(B, T, D_s) → (B, T, D_t): ``W h_s``."""
        return self.proj(token_states)

    @property
    def uses_task(self) -> bool:
        """SimCSE (and its second pass) only with ``w_task > 0``."""
        return self.params.w_task > 0

    def kd_terms(
        self, out: Outputs, batch: dict[str, torch.Tensor], step: int, total_steps: int
    ) -> tuple[torch.Tensor, Logged]:
        """The sense loss; logs it, the pairs used and the sense accuracy."""
        x = self.project(out["token_embeddings"])  # (B, T_s, D_t)
        kd, stats = sense_distillation_loss(
            x,
            batch["t_hidden"],
            batch["t_input_ids"],
            batch["s_group"],
            batch["t_group"],
            self.senses.centroids,
            self.senses.offsets,
            self.senses.entry_of_id,
            self.params.min_senses,
        )
        return kd, {"sense": kd, **stats}


def build_skd(student: SentenceEncoder, teacher, params: dict) -> SKDLoss:
    """Build SKD from registry-style arguments: ``params["dictionary"]`` is the sense folder.

    The registry (``methods.build``) does the same for ``get_method("SKD")``; this spelling also
    accepts ``teacher=None``.

    Raises:
        ValueError: no dictionary given, or invalid parameters.
    """
    width = teacher.hidden_dim if teacher is not None else None
    return SKDLoss(student, params=SKDParams.from_dict(params), teacher_hidden_dim=width)
