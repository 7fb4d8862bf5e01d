"""graphflow-sr-x4: the committed weights load and beat bicubic on a photo it never saw."""

from __future__ import annotations

import pytest
import torch

from gf_image.examples import example_photo_array
from gf_image.sr_model import (
    EMBEDDED_WEIGHTS,
    GraphflowSR,
    bicubic_down,
    bicubic_up,
    load_sr_model,
    psnr_y,
    save_sr_model,
    sr_descriptor,
    to_tensor,
)
from gf_image.upscale import ensemble_runner, upscale_tiled

# A 192×192 crop of skimage "coffee" (cup rim, saucer, beans): held out of training by
# scripts/train_sr.py. Reduced to 48×48 by the training degradation, then upscaled ×4.
COFFEE = (slice(100, 292), slice(180, 372))
# Measured on this crop with the committed weights: bicubic 28.04 dB, ours 30.48 dB (+2.44;
# 30.69 dB with the ×8 self-ensemble).
# The margin is half the measured gain: an untrained (= bicubic) or wrongly loaded network
# fails, a retrained one of similar quality passes.
MIN_GAIN_DB = 1.2


@pytest.fixture(scope="module")
def crop() -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high): the held-out crop and its ×4 reduction, (1, 3, H, W) in 0..1."""
    high = to_tensor(example_photo_array("coffee")[COFFEE])
    return bicubic_down(high), high


def test_committed_weights_load_and_scale_by_4(crop):
    low, _ = crop
    model = load_sr_model()
    assert isinstance(model, GraphflowSR) and model.scale == 4
    with torch.inference_mode():
        out = model(low)
        odd = model(torch.rand(2, 3, 13, 21))
    assert out.shape == (1, 3, 192, 192)
    assert odd.shape == (2, 3, 52, 84)
    assert torch.isfinite(out).all()


def test_beats_bicubic_on_held_out_crop(crop):
    low, high = crop
    with torch.inference_mode():
        ours = load_sr_model()(low).clamp(0, 1)
    bicubic = psnr_y(bicubic_up(low), high)
    gain = psnr_y(ours, high) - bicubic
    assert gain > MIN_GAIN_DB, f"only {gain:+.2f} dB over bicubic ({bicubic:.2f} dB)"


def test_untrained_network_is_bicubic(crop):
    # The residual design: before training the output is (almost exactly) the bicubic upscale,
    # so the gain above comes from the committed weights, not from the bicubic base.
    low, high = crop
    torch.manual_seed(0)
    with torch.inference_mode():
        fresh = GraphflowSR()(low).clamp(0, 1)
    assert abs(psnr_y(fresh, high) - psnr_y(bicubic_up(low), high)) < 0.1


def test_spandrel_descriptor_matches_and_tiles(crop):
    low, _ = crop
    descriptor = sr_descriptor()
    assert descriptor.scale == 4 and descriptor.input_channels == 3
    with torch.inference_mode():
        direct = load_sr_model()(low).clamp(0, 1)
        whole = descriptor(low)
        tiled = upscale_tiled(descriptor, low, 4, tile=24, overlap=8)
    assert torch.allclose(whole, direct, atol=1e-5)
    assert tiled.shape == whole.shape
    # 8 px of overlap at low resolution hides the seams: only small blending differences.
    assert (tiled - whole).abs().mean() < 2e-3


def test_width_and_depth_come_from_the_file(tmp_path):
    # Any width/depth trains and loads: the loader reads them from the tensor shapes, and the
    # reloaded network (module and spandrel descriptor alike) computes the same function.
    torch.manual_seed(1)
    model = GraphflowSR(num_feat=8, num_blocks=3).eval()
    with torch.no_grad():  # make every layer matter (conv_out starts near zero)
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    path = tmp_path / "small.safetensors"
    save_sr_model(model, path, {"name": "small"})
    low = torch.rand(1, 3, 9, 11)
    loaded = load_sr_model(path)
    assert (loaded.conv_in.out_channels, len(loaded.blocks)) == (8, 3)
    with torch.inference_mode():
        expected = model(low)
        assert torch.allclose(loaded(low), expected, atol=1e-6)
        descriptor = sr_descriptor(path)
        assert torch.allclose(descriptor(low), expected.clamp(0, 1), atol=1e-6)
    assert descriptor.scale == 4 and "3nb" in descriptor.tags


def test_spandrel_does_not_misdetect_the_file():
    # spandrel's EDSR and "Compact" resemble this network but differ (EDSR has no bicubic base,
    # Compact a nearest-neighbour one); our keys are named so that spandrel refuses the file
    # instead of loading it wrongly.
    spandrel = pytest.importorskip("spandrel")
    with pytest.raises(spandrel.UnsupportedModelError):
        spandrel.ModelLoader().load_from_file(str(EMBEDDED_WEIGHTS))


def test_self_ensemble_maps_every_variant_back():
    # A position-dependent "model" (nearest ×2 plus a ramp that only the identity keeps in
    # place): each flipped/transposed call must be undone exactly, so the average of an
    # equivariant model is the model itself and a non-equivariant one gets symmetrised.
    image = torch.rand(1, 3, 5, 7)
    nearest = ensemble_runner(lambda x: x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert torch.allclose(nearest(image), image.repeat_interleave(2, 2).repeat_interleave(2, 3))
    ramp = ensemble_runner(lambda x: torch.arange(x.shape[3], dtype=x.dtype).expand_as(x))
    # Unflipped the ramp runs 0..6 along the width; mapped back, the flipped calls give 6 - x
    # (mean 3) and the transposed ones a 0..4 ramp along the height and its flip (mean 2).
    assert torch.allclose(ramp(image), torch.full_like(image, 2.5))


def test_self_ensemble_is_more_faithful_on_the_held_out_crop(crop):
    low, high = crop
    model = load_sr_model()
    with torch.inference_mode():
        single = psnr_y(model(low).clamp(0, 1), high)
        ensemble = psnr_y(ensemble_runner(model)(low).clamp(0, 1), high)
    assert ensemble > single + 0.02, f"ensemble {ensemble:.2f} dB vs single {single:.2f} dB"
