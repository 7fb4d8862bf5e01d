"""Perceptual compression made visible: how much a VAE shrinks an image, what it loses on
the way back, and what its latent looks like.

A latent diffusion model does not denoise pixels. Its VAE encodes an H × W × 3 image into an
(H/f) × (W/f) × c latent (SD: f = 8, c = 4, so 48× fewer numbers; graphflow-tiny: f = 4,
c = 4, 12×), the denoiser works there, and the decoder turns the result back into pixels.
The encoder is trained to keep what the eye notices and drop the rest (fine texture, exact
values), so the round trip encode → decode is close but not exact. How close is measured by
the peak signal-to-noise ratio of pixel values in 0..1:

    PSNR = 10 · log₁₀(1 / MSE)  dB,   MSE = mean((x − x̂)²)

(∞ for identical images; each halving of the error's RMS adds 6 dB; 30 dB and more is hard
to tell apart by eye.)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gf_diffusion.types import Vae
from graphflow import Float, Image, NodeContext, Outputs, String, node

if TYPE_CHECKING:
    import torch

CATEGORY = "vision/latent space"
NEGATIVE, POSITIVE = (0.13, 0.40, 0.85), (0.85, 0.15, 0.15)  # the ends of the channel colours


def psnr(original: torch.Tensor, other: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images with values in 0..1 (∞ when equal)."""
    if original.shape != other.shape:
        raise ValueError(f"images differ in shape: {tuple(original.shape)}, {tuple(other.shape)}")
    mse = float(((original.double() - other.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def channel_pictures(samples: torch.Tensor, factor: int) -> tuple[torch.Tensor, float]:
    """Each channel of latents (B, c, h, w) as an RGB picture of (B·c, h·f, w·f, 3), nearest
    neighbour so every latent value is an f × f block.

    Colours are diverging and shared by all channels of an item: white is 0, full blue is
    −m and full red is +m, m the largest |value| of the item's latent (returned, the
    largest over the batch). So the channels can be compared with each other.
    """
    import torch

    latents = samples.float().cpu()
    batch, channels = latents.shape[:2]
    bound = latents.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
    scaled = (latents / bound).reshape(batch * channels, *latents.shape[2:], 1)
    white = torch.ones(3)
    low, high = torch.tensor(NEGATIVE), torch.tensor(POSITIVE)
    level = scaled.abs()
    pictures = torch.where(
        scaled < 0, white + (low - white) * level, white + (high - white) * level
    )
    pictures = pictures.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)
    return pictures, float(bound.max())


def whole_blocks(image: torch.Tensor, factor: int) -> torch.Tensor:
    """The centre of an image (B, H, W, C) cut to sides that are multiples of ``factor``
    (each latent value stands for an f × f block of pixels)."""
    height, width = image.shape[1] // factor * factor, image.shape[2] // factor * factor
    if height == 0 or width == 0:
        raise ValueError(f"the image is smaller than one {factor}×{factor} block of the VAE")
    top, left = (image.shape[1] - height) // 2, (image.shape[2] - width) // 2
    return image[:, top : top + height, left : left + width]


def compression_report(image: torch.Tensor, samples: torch.Tensor, psnrs: list[float]) -> str:
    """Sizes of the image and the latent, the ratio of their numbers of values, and the
    round trip's PSNR of each item."""
    _, height, width, colours = image.shape
    _, channels, lat_h, lat_w = samples.shape
    pixels, latent_values = height * width * colours, channels * lat_h * lat_w
    lines = [
        f"image {width}×{height}×{colours} = {pixels:,} values; "
        f"latent {lat_w}×{lat_h}×{channels} = {latent_values:,} values "
        f"(÷{width // lat_w} per side): {pixels / latent_values:.1f}× fewer numbers",
    ]
    lines += [f"item {i}: round-trip PSNR {value:.2f} dB" for i, value in enumerate(psnrs)]
    return "\n".join(lines)


@node("vision.vae_round_trip", category=CATEGORY, display_name="VAE Round Trip")
def vae_round_trip(
    vae: Vae,
    image: Image,
    error_gain: Float(1.0, 100.0, step=0.5) = 4.0,
    ctx: NodeContext = None,
) -> Outputs(reconstruction=Image, panels=Image, labels=String, report=String, psnr=Float):
    """Encode images with a VAE and decode them again: what the latent keeps and loses.

    reconstruction is the decoded image. panels shows, per image, the original, the round
    trip, the error |x − x̂| × error_gain, and each latent channel scaled up to the image's
    size (blue negative, white 0, red positive), with labels for Image Grid (columns =
    3 + channels gives one row per image). The report gives the image and latent sizes,
    how many times fewer numbers the latent holds, and each image's round-trip PSNR; psnr
    is that of the whole batch. The encoder's mean is used, so the result is the same
    every run. Sides that are not multiples of the VAE's block are cut to them (centred).
    """
    import torch

    from gf_diffusion.latents import vae_geometry
    from gf_diffusion.vae import vae_decode, vae_encode

    original = whole_blocks(image[..., :3].float().cpu(), vae_geometry(vae)[0])
    latent = vae_encode(vae, original, mode="mean", tiling="off", ctx=ctx)
    decoded = vae_decode(vae, latent, tiling="off", ctx=ctx).float().cpu()
    error = ((original - decoded).abs() * error_gain).clamp(0, 1)
    channels, bound = channel_pictures(latent.samples, latent.downscale)
    count = latent.samples.shape[1]
    per_item = [
        torch.cat([original[i : i + 1], decoded[i : i + 1], error[i : i + 1],
                   channels[i * count : (i + 1) * count]])
        for i in range(original.shape[0])
    ]  # fmt: skip
    names = ["original", "round trip", f"|error| x {error_gain:g}"]  # ASCII: the font has no ×
    names += [f"channel {c}" for c in range(count)]
    psnrs = [psnr(original[i], decoded[i]) for i in range(original.shape[0])]
    report = compression_report(original, latent.samples, psnrs)
    report += f"\nlatent colours: ±{bound:.2f} (the largest |value|) is full blue / red"
    return (
        decoded,
        torch.cat(per_item),
        "\n".join(names * original.shape[0]),
        report,
        psnr(original, decoded),
    )


NODES = [vae_round_trip]
