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


def _trained_weights(tmp_path, alpha: float) -> tuple[dict, dict]:
    """SAMD's train stage on the smoke preset with ``interpolate=alpha``: (θ₀, θ after)."""
    import samd_common.experiment as ex
    from samd_common.experiment import make_config

    cfg = make_config(
        "SAMD", preset="smoke", output_dir=str(tmp_path / str(alpha)), interpolate=alpha
    )
    run = ex.start_run(cfg)
    for stage in (ex.load_inputs, ex.load_models, ex.cache_teacher):
        stage(run)
    start = {k: v.clone() for k, v in run.student.state_dict().items()}
    ex.train_method(run)
    return start, run.student.state_dict()


def test_the_train_stage_keeps_the_configured_share_of_the_update(tmp_path):
    """``TrainConfig.interpolate``: α = 0 leaves the student as it was, α = ½ lands halfway
    between it and the α = 1 student (training is deterministic for a seed)."""
    start, full = _trained_weights(tmp_path, 1.0)
    _, none = _trained_weights(tmp_path, 0.0)
    _, half = _trained_weights(tmp_path, 0.5)
    name = "backbone.encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(full[name], start[name])  # training moved it
    for key, value in start.items():
        assert torch.equal(none[key], value)
        if value.is_floating_point():
            assert torch.allclose(half[key], (value + full[key]) / 2, atol=1e-6)


def test_samd_keeps_half_of_its_update_by_default():
    """SAMD's registry default (the dev study, results/bench-dev/README.md finding 10); the
    baselines keep the trained weights."""
    from samd_common.experiment import make_config

    assert make_config("SAMD", preset="bench").train.interpolate == 0.5
    assert make_config("Relational", preset="bench").train.interpolate == 1.0
    assert make_config("SAMD", preset="demo").train.interpolate == 1.0  # the preset's choice
    with pytest.raises(ValueError, match="interpolate"):
        make_config("SAMD", preset="smoke", interpolate=1.5)
