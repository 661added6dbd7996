"""Weight interpolation with the starting point (WiSE-FT, ``models/merge.py``): known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samd_common.models import load_encoder
from samd_common.models.merge import interpolate_encoder, interpolate_weights


def _states() -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(3, 2, generator=g), "ids": torch.arange(4)}
    tuned = {"w": torch.randn(3, 2, generator=g), "ids": torch.arange(4) + 1}
    return base, tuned


def test_interpolation_hits_both_ends_and_the_midpoint():
    base, tuned = _states()
    assert torch.equal(interpolate_weights(base, tuned, 0.0)["w"], base["w"])
    assert torch.equal(interpolate_weights(base, tuned, 1.0)["w"], tuned["w"])
    half = interpolate_weights(base, tuned, 0.5)
    assert torch.allclose(half["w"], (base["w"] + tuned["w"]) / 2)
    assert torch.equal(half["ids"], tuned["ids"])  # integer buffers are not blended
    assert half["w"] is not tuned["w"]  # a new state dict: the inputs are untouched


@pytest.mark.parametrize(
    ("change", "match"),
    [("alpha", "alpha must be in"), ("keys", "differ in their tensors"), ("shape", "shape")],
)
def test_interpolation_rejects_other_models_and_bad_alpha(change, match):
    base, tuned = _states()
    alpha = 1.5 if change == "alpha" else 0.5
    if change == "keys":
        tuned["extra"] = torch.zeros(1)
    if change == "shape":
        tuned["w"] = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=match):
        interpolate_weights(base, tuned, alpha)


def test_interpolated_encoder_at_zero_embeds_like_the_start(tiny_dirs):
    base = load_encoder(str(tiny_dirs["student"]), device="cpu")
    tuned = load_encoder(str(tiny_dirs["student"]), device="cpu")
    with torch.no_grad():  # a "trained" student: every weight moved
        for p in tuned.parameters():
            p.add_(0.05 * torch.randn_like(p))
    texts = ["a short text", "another one, a little longer"]
    moved = tuned.encode(texts)
    assert not np.allclose(moved, base.encode(texts), atol=1e-4)
    interpolate_encoder(tuned, base, 0.0)
    np.testing.assert_allclose(tuned.encode(texts), base.encode(texts), atol=1e-6)
