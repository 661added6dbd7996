"""Weight interpolation between a student before and after distillation (WiSE-FT).

``θ(α) = θ₀ + α·(θ₁ − θ₀)``: α = 1 is the trained student, α = 0 the undistilled one. Wortsman et
al. (CVPR 2022) found that interpolating a fine-tuned model with its starting point keeps most
of the in-domain gain and recovers the robustness the fine-tuning lost out of domain; here the
"fine-tuning" is distillation onto a corpus that covers the in-domain tasks only. It costs
nothing at training time and needs only the two weight sets, so α can be chosen after training
on the dev protocol (``scripts/evaluate.py --interpolate-from``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from samd_common.models.encoder import SentenceEncoder

CITATION = """@inproceedings{wortsman2022robust,
  title     = {Robust fine-tuning of zero-shot models},
  author    = {Wortsman, Mitchell and Ilharco, Gabriel and Kim, Jong Wook and Li, Mike and
               Kornblith, Simon and Roelofs, Rebecca and Gontijo-Lopes, Raphael and
               Hajishirzi, Hannaneh and Farhadi, Ali and Namkoong, Hongseok and Schmidt, Ludwig},
  booktitle = {CVPR},
  year      = {2022},
  note      = {arXiv:2109.01903}
}"""


def interpolate_weights(
    base: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """``θ₀ + α·(θ₁ − θ₀)`` for every floating-point tensor of two state dicts of one model.

    Args:
        base: θ₀, the state dict before training.
        tuned: θ₁, the state dict after training (same names and shapes).
        alpha: the share of the update kept, in [0, 1] (1 → ``tuned``, 0 → ``base``).

    Returns:
        A new state dict (``tuned``'s devices and dtypes); integer buffers (e.g. position ids)
        are taken from ``tuned`` unchanged.

    Example:
        >>> a, b = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
        >>> interpolate_weights(a, b, 0.25)["w"].tolist()
        [0.25, 0.25]
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (1 = the trained weights), got {alpha}.")
    if base.keys() != tuned.keys():
        only = sorted(set(base) ^ set(tuned))[:5]
        raise ValueError(
            f"The two weight sets differ in their tensors ({only} …): interpolate a student with "
            f"the model it was trained from (same architecture, same depth)."
        )
    out = {}
    for name, t1 in tuned.items():
        t0 = base[name]
        if t0.shape != t1.shape:
            raise ValueError(
                f"{name}: shape {tuple(t0.shape)} before training, {tuple(t1.shape)} after; "
                f"interpolate a student with the model it was trained from."
            )
        if not t1.is_floating_point():
            out[name] = t1.clone()
            continue
        start = t0.to(device=t1.device, dtype=torch.float32)
        out[name] = torch.lerp(start, t1.float(), float(alpha)).to(t1.dtype)  # exact at 0 and 1
    return out


def interpolate_encoder(
    tuned: SentenceEncoder, base: SentenceEncoder, alpha: float
) -> SentenceEncoder:
    """Set ``tuned``'s weights (backbone and dense head) to ``θ₀ + α·(θ₁ − θ₀)``, in place.

    Args:
        tuned: the trained student (θ₁); modified and returned.
        base: the same model before training (θ₀); unchanged.
        alpha: the share of the update kept, in [0, 1].

    Returns:
        ``tuned``, now holding the interpolated weights.
    """
    state = interpolate_weights(base.state_dict(), tuned.state_dict(), alpha)
    tuned.load_state_dict(state)
    return tuned
