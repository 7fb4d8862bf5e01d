"""Noise nodes: additive Gaussian noise, photon shot noise and film grain.

Every node is seeded: the same image, settings and seed give the same noise on any device.
Random numbers are drawn by a CPU generator, as the diffusion sampler does, and moved to the
image's device (the random numbers cross, the image stays where it is; shot noise is the
exception: torch's Poisson sampler draws where its rates are, so the rates visit the CPU).
Work is done in float32; the result has the input's dtype and device, layout (B, H, W, C),
values clamped to 0..1.

Film grain follows the Boolean model of silver-halide grain (see ``film_grain`` and
docs/image_nodes.md for the derivation).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from graphflow import Boolean, Float, Image, Int, NodeContext, node

if TYPE_CHECKING:
    import torch

SEED = Int(min=0, max=2**63 - 1)

# Rec. 709 luma: what "monochrome" grain follows, as a black-and-white emulsion would.
LUMA = (0.2126, 0.7152, 0.0722)

# Exposure is kept below 1: full coverage needs infinitely many grains (rate −log(1 − u)).
MAX_EXPOSURE = 1.0 - 1e-4


def _generator(seed: int) -> torch.Generator:
    """A CPU generator: one seed gives the same random numbers whatever the image's device."""
    import torch

    return torch.Generator().manual_seed(int(seed))


def _as_float(image: torch.Tensor) -> torch.Tensor:
    """The image in float32 for computing (half precision would bias small noise)."""
    import torch

    return image.to(torch.float32)


@node("image.gaussian_noise", category="image/noise", display_name="Gaussian Noise")
def gaussian_noise(
    image: Image,
    sigma: Float(0.0, 1.0, step=0.005) = 0.05,
    seed: SEED = 0,
    monochrome: Boolean = False,
) -> Image:
    """Add Gaussian noise of standard deviation sigma (in 0..1 pixel units).

    Each pixel gets an independent normal sample of mean 0; with monochrome the three channels
    share one sample (grey noise), otherwise each channel has its own (colour noise). The
    result is clamped to 0..1, so near black and white the noise is cut off and no longer has
    mean 0: statistics are exact only where value ± 3·sigma stays inside 0..1.
    """
    import torch

    pixels = _as_float(image)
    batch, height, width, channels = pixels.shape
    shape = (batch, height, width, 1 if monochrome else channels)
    noise = torch.randn(shape, generator=_generator(seed)).to(pixels.device) * sigma
    return (pixels + noise).clamp(0.0, 1.0).to(image.dtype)


@node("image.shot_noise", category="image/noise", display_name="Shot Noise")
def shot_noise(
    image: Image,
    photons: Float(1.0, 1_000_000.0, step=1.0) = 200.0,
    seed: SEED = 0,
) -> Image:
    """Photon shot noise: each pixel counts a Poisson number of photons.

    photons is the mean photon count of a pixel at full intensity (1.0). A pixel of value v
    expects v × photons photons; the node draws a Poisson sample with that mean and divides by
    photons again. In photon units the variance equals the mean (the Poisson law), so the
    noise grows as the square root of the brightness: dark areas are relatively noisier, and
    fewer photons mean a noisier image (a dim scene or high ISO). Channels are independent, as
    the red, green and blue sites of a sensor are. Values above 1 are clipped, as a sensor
    clips at its full well; near white the statistics are therefore cut off.
    """
    import torch

    pixels = _as_float(image).clamp(0.0, 1.0)  # a negative rate is not a Poisson mean
    rates = (pixels * photons).cpu()  # torch.poisson samples on its input's device
    counts = torch.poisson(rates, generator=_generator(seed)).to(pixels.device)
    return (counts / photons).clamp(0.0, 1.0).to(image.dtype)


# -- film grain -----------------------------------------------------------------------------


def _supersampling(grain_size: float) -> int:
    """Subpixels per pixel side: at least 2, and enough that a grain spans ~2 cells in radius.

    Grains smaller than a pixel must be resolved on a finer grid, or the area each pixel sees
    covered (what makes grain look like grain) would not be right; bigger grains still need
    2 cells a side, or a pixel on a grain's edge is all in or all out (jagged, aliased
    grains). Capped at 4 (16 cells per pixel) to bound memory; the smallest grain size
    (0.25 px) is then 1 cell in radius.
    """
    return max(2, min(4, math.ceil(2.0 / grain_size)))


def _disc_rows(radius: float) -> list[tuple[int, int]]:
    """A disc of the given radius in cells, centred on (0, 0), as (row offset dy, half
    width w) pairs: the cells (dy, dx) with |dx| ≤ w."""
    reach = math.floor(radius)
    rows = []
    for dy in range(-reach, reach + 1):
        left = radius * radius + 1e-6 - dy * dy
        rows.append((dy, math.floor(math.sqrt(left))))
    return rows


def _disc_sum(field: torch.Tensor, rows: list[tuple[int, int]], reach: int) -> torch.Tensor:
    """Sum of ``field`` over the disc around each cell; ``field`` is padded by ``reach``.

    Small discs: the shifted field added once per cell of the disc (on CPU several times
    faster than a one-channel conv2d, and exact for whole-number counts). Larger ones: each
    row of the disc is a run of cells, summed as the difference of two prefix sums along
    the width, so the work grows with the diameter instead of the area. Prefix sums are in
    float64 (float32 on Apple's MPS): sums of rates keep their precision, counts stay exact.
    """
    import torch

    height = field.shape[-2] - 2 * reach
    width = field.shape[-1] - 2 * reach
    if sum(2 * half + 1 for _, half in rows) <= 4 * len(rows):
        total = torch.zeros(height, width, dtype=field.dtype, device=field.device)
        for dy, half in rows:
            band = field[reach + dy : reach + dy + height]
            for dx in range(-half, half + 1):
                total += band[:, reach + dx : reach + dx + width]
        return total
    wide = torch.float32 if field.device.type == "mps" else torch.float64  # MPS has no float64
    prefix = torch.nn.functional.pad(field.to(wide).cumsum(-1), (1, 0))
    total = torch.zeros(height, width, dtype=wide, device=field.device)
    for dy, half in rows:
        band = prefix[reach + dy : reach + dy + height]
        total += band[:, reach + half + 1 : reach + half + 1 + width]
        total -= band[:, reach - half : reach - half + width]
    return total.to(field.dtype)


def _grain_residual(
    exposure: torch.Tensor, grain_size: float, generator: torch.Generator
) -> torch.Tensor:
    """One Boolean-model grain field minus its expectation, for an exposure plane (H, W).

    Grain centres form a Poisson process; each grain is a disc of radius ``grain_size``
    pixels. Discretised on cells of 1/k pixel: a cell holds a grain centre with probability
    1 − exp(−rate), and a point is covered when any cell of the disc around it holds one, with
    probability 1 − exp(−Σ rate over the disc). Choosing rate = −log(1 − u) / (cells per disc)
    makes that probability the exposure u, which is what "grain density follows exposure"
    means here. Each pixel then sees the fraction of its area that is covered. Returned is that
    fraction minus its exact expectation, so the grain adds no bias, only texture.
    """
    import torch
    import torch.nn.functional as F

    cells = _supersampling(grain_size)
    rows = _disc_rows(grain_size * cells)
    reach = max(half for _, half in rows)
    area = sum(2 * half + 1 for _, half in rows)  # cells per disc
    rate = -torch.log1p(-exposure.clamp(0.0, MAX_EXPOSURE)) / area
    height, width = rate.shape  # the exposure is constant over a pixel
    rate = rate[:, None, :, None].expand(height, cells, width, cells)
    rate = rate.reshape(height * cells, width * cells)
    # Grains centred just outside the image still cover its border: sample them too.
    rate = F.pad(rate[None, None], (reach, reach, reach, reach), mode="replicate")[0, 0]
    occupied = torch.rand(rate.shape, generator=generator).to(rate.device)
    occupied = (occupied < -torch.expm1(-rate)).to(torch.float32)
    covered = (_disc_sum(occupied, rows, reach) > 0.5).to(torch.float32)
    expected = -torch.expm1(-_disc_sum(rate, rows, reach))
    residual = covered.sub_(expected)
    return F.avg_pool2d(residual[None, None], cells)[0, 0]  # the covered fraction of a pixel


@node("image.film_grain", version="1.1.0", category="image/noise", display_name="Film Grain")
def film_grain(
    image: Image,
    grain_size: Float(0.25, 10.0, step=0.05) = 0.5,
    intensity: Float(0.0, 1.0, step=0.01) = 0.15,
    monochrome: Boolean = False,
    seed: SEED = 0,
    ctx: NodeContext = None,
) -> Image:
    """Overlay synthetic silver-halide film grain (Boolean grain model).

    The image is treated as an emulsion: opaque round grains of radius grain_size pixels are
    scattered at random, as many as it takes to cover, on average, a fraction of each area
    equal to its brightness. Each pixel sees the fraction of its area covered. Grain is
    therefore strongest in the mid-tones and fades out in deep shadows and bright highlights
    (where coverage is almost always none or full), and bigger grains give coarser,
    blotchier texture. The node adds the difference between that rendering and its average
    to the image, times intensity: at 1 a flat area looks exactly like the grain rendering,
    smaller values blend towards the clean image; detail of the image is kept either way.

    monochrome: one grain layer following the luminance, added to all channels (black and
    white film); otherwise each channel has its own grains (the three dye layers of colour
    film). The same seed gives the same grain. After Newson, Delon and Galerne, "A Stochastic
    Film Grain Model for Resolution-Independent Rendering" (2017).
    """
    import torch

    pixels = _as_float(image)
    # (B, H, W, C) → one (H, W) exposure plane per batch item and grain layer.
    if monochrome:
        luma = torch.tensor(LUMA, device=pixels.device)[: pixels.shape[-1]]
        planes = (pixels * luma).sum(-1, keepdim=True) / luma.sum()
    else:
        planes = pixels
    planes = planes.permute(0, 3, 1, 2)
    generator = _generator(seed)
    grain = torch.empty_like(planes)
    batch, layers = planes.shape[:2]
    # One plane at a time: the subpixel grid is up to 16× the image, so this bounds memory.
    for item in range(batch):
        for layer in range(layers):
            grain[item, layer] = _grain_residual(planes[item, layer], grain_size, generator)
            if ctx is not None:
                ctx.progress(item * layers + layer + 1, batch * layers)
    grain = grain.permute(0, 2, 3, 1)  # (B, H, W, 1 or C); broadcasts over channels
    return (pixels + intensity * grain).clamp(0.0, 1.0).to(image.dtype)


NODES = [gaussian_noise, shot_noise, film_grain]
