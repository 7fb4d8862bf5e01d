"""The VAE's compression made visible (gf_vision/vae_view.py): PSNR, the latent's channels
as pictures, the size report, and a round trip through graphflow-tiny's VAE."""

from __future__ import annotations

import math

import pytest
import torch

from gf_vision.vae_view import (
    NEGATIVE,
    POSITIVE,
    channel_pictures,
    compression_report,
    psnr,
    vae_round_trip,
    whole_blocks,
)


def test_psnr_of_identical_images_is_infinite():
    image = torch.rand(2, 8, 8, 3)
    assert psnr(image, image.clone()) == math.inf


def test_psnr_of_a_known_error_is_ten_log_of_one_over_its_mse():
    image = torch.full((1, 16, 16, 3), 0.5)
    signs = torch.ones(16, 16)
    signs[::2] = -1  # every pixel off by exactly 0.05: MSE = 0.0025
    noisy = image + 0.05 * signs[None, :, :, None]
    assert psnr(image, noisy) == pytest.approx(10 * math.log10(1 / 0.0025))  # 26.02 dB
    assert psnr(image, image + 0.1) == pytest.approx(20.0)  # RMS doubled: 6 dB less
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(image, image[:, :8])


def test_channel_pictures_are_blocks_of_the_latent_in_diverging_colours():
    latent = torch.zeros(2, 4, 3, 5)
    latent[0, 1, 0, 0] = 2.0  # item 0's largest |value|: full red
    latent[0, 2, 1, 1] = -1.0  # half way to blue
    latent[1, 3, 2, 4] = -0.5  # item 1's own largest: full blue
    pictures, bound = channel_pictures(latent, factor=4)
    assert pictures.shape == (8, 12, 20, 3) and bound == 2.0
    assert torch.equal(pictures[0], torch.ones(12, 20, 3))  # channel 0 of item 0: all zero
    red = pictures[1, :4, :4]
    assert torch.allclose(red, torch.tensor(POSITIVE).expand(4, 4, 3))
    assert torch.allclose(pictures[1, 4:, :], torch.ones(8, 20, 3))  # the block is 4×4
    halfway = (torch.ones(3) + torch.tensor(NEGATIVE)) / 2
    assert torch.allclose(pictures[2, 5, 5], halfway)
    assert torch.allclose(pictures[7, 8:, 16:], torch.tensor(NEGATIVE).expand(4, 4, 3))


def test_report_counts_pixel_and_latent_values():
    report = compression_report(torch.zeros(1, 32, 32, 3), torch.zeros(1, 4, 8, 8), [27.5])
    first, second = report.splitlines()
    assert "32×32×3 = 3,072 values" in first and "8×8×4 = 256 values" in first
    assert first.endswith("÷4 per side): 12.0× fewer numbers")
    assert second == "item 0: round-trip PSNR 27.50 dB"
    sd = compression_report(torch.zeros(1, 512, 512, 3), torch.zeros(1, 4, 64, 64), [])
    assert "48.0× fewer" in sd


def test_sides_are_cut_to_whole_blocks_around_the_centre():
    image = torch.arange(1 * 10 * 7 * 1, dtype=torch.float32).reshape(1, 10, 7, 1)
    cut = whole_blocks(image, 4)
    assert cut.shape == (1, 8, 4, 1)
    assert torch.equal(cut, image[:, 1:9, 1:5])
    with pytest.raises(ValueError, match="smaller than one"):
        whole_blocks(torch.zeros(1, 3, 8, 3), 4)


@pytest.fixture(scope="module")
def tiny_vae():
    """graphflow-tiny's VAE (4× downscale, 4 channels) as a VAE handle."""
    from diffusers import AutoencoderKL

    from gf_diffusion.embedded import EMBEDDED_CHECKPOINTS
    from graphflow.runtime.models import ModelManager

    folder = EMBEDDED_CHECKPOINTS["graphflow-tiny"] / "vae"
    return ModelManager().load("vae", folder, lambda: AutoencoderKL.from_pretrained(folder).eval())


def _item(colour=(0.95, 0.1, 0.1)) -> torch.Tensor:
    """A Fashion-MNIST-like item: a shaded, tinted shape on black, 32×32."""
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    shape = (((x - 16) / 9) ** 2 + ((y - 16) / 12) ** 2 < 1).float() * (0.6 + 0.4 * y / 32)
    return (shape[..., None] * torch.tensor(colour))[None]


@pytest.mark.slow
def test_round_trip_panels_reconstruction_and_psnr(tiny_vae):
    from gf_diffusion.vae import vae_decode, vae_encode

    images = torch.cat([_item(), _item((0.15, 0.3, 1.0))])
    decoded, panels, labels, report, whole = vae_round_trip.function(tiny_vae, images, 4.0)
    assert decoded.shape == (2, 32, 32, 3)
    assert panels.shape == (2 * 7, 32, 32, 3)  # original, round trip, error, 4 channels
    names = labels.splitlines()
    assert names[:7] == ["original", "round trip", "|error| x 4"] + [
        f"channel {c}" for c in range(4)
    ]
    assert names[7:] == names[:7]
    assert torch.equal(panels[0], images[0]) and torch.equal(panels[8], decoded[1])
    expected = vae_decode.function(tiny_vae, vae_encode.function(tiny_vae, images, "mean"))
    assert torch.allclose(decoded, expected, atol=1e-6)
    error = ((images - decoded).abs() * 4).clamp(0, 1)
    assert torch.allclose(panels[2], error[0], atol=1e-6)
    assert whole == pytest.approx(psnr(images, decoded))
    assert 18 < whole < 60  # a close copy, not an exact one
    assert "12.0× fewer numbers" in report and "item 1: round-trip PSNR" in report


@pytest.mark.slow
def test_the_vae_keeps_smooth_items_better_than_noise(tiny_vae):
    noise = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    smooth = vae_round_trip.function(tiny_vae, _item(), 4.0)[4]
    rough = vae_round_trip.function(tiny_vae, noise, 4.0)[4]
    assert smooth > rough + 6, (smooth, rough)
