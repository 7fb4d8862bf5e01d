"""Basic transforms: scale, crop and blend images.

Everything runs with torch on the image's own device, in float32, and returns the input's
dtype in the IMAGE layout (B, H, W, C), values 0..1.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from graphflow import Choice, Float, Image, Int, node

from .io import MAX_PIXELS

if TYPE_CHECKING:
    import torch

SCALE_METHODS = ["nearest", "bilinear", "bicubic", "lanczos", "area"]
LANCZOS_LOBES = 3  # Lanczos-3, as Pillow and most editors use
SIDE = Int(0, 16384)


# -- resampling ------------------------------------------------------------------------------


def _lanczos_taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input index, weight), each (n_out, taps), of Lanczos-3 resampling along one axis.

    Pixel j covers [j, j + 1) and output pixel i is centred on (i + 0.5) · n_in / n_out. When
    downscaling the kernel is stretched by the factor, so it also low-passes (antialias). Taps
    falling outside the image are dropped and the rest renormalised (Pillow does the same).
    """
    import torch

    ratio = n_in / n_out
    support = max(ratio, 1.0)
    centres = (torch.arange(n_out, dtype=torch.float64) + 0.5) * ratio
    taps = math.ceil(2 * LANCZOS_LOBES * support) + 1
    first = torch.floor(centres - LANCZOS_LOBES * support - 0.5).to(torch.int64)
    index = first[:, None] + torch.arange(taps)[None, :]
    x = (index + 0.5 - centres[:, None]) / support
    weight = torch.sinc(x) * torch.sinc(x / LANCZOS_LOBES)
    weight = torch.where((x.abs() < LANCZOS_LOBES) & (index >= 0) & (index < n_in), weight, 0.0)
    return index.clamp(0, n_in - 1), weight / weight.sum(1, keepdim=True)


def _area_taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input index, weight) of area resampling: each output pixel averages what it covers.

    Output pixel i covers [i, i + 1) · n_in / n_out in input pixels; each input pixel weighs
    by the length of its overlap, so non-integer factors are exact too (unlike adaptive
    pooling, which counts partly covered pixels whole).
    """
    import torch

    ratio = n_in / n_out
    starts = torch.arange(n_out, dtype=torch.float64) * ratio
    taps = math.ceil(ratio) + 1
    index = torch.floor(starts).to(torch.int64)[:, None] + torch.arange(taps)[None, :]
    overlap = torch.minimum(starts[:, None] + ratio, index + 1.0) - torch.maximum(
        starts[:, None], index.to(torch.float64)
    )
    weight = torch.where(index < n_in, overlap.clamp(min=0.0), 0.0)
    return index.clamp(0, n_in - 1), weight / weight.sum(1, keepdim=True)


def _resample_axis(planes: torch.Tensor, dim: int, taps: tuple) -> torch.Tensor:
    """Resample (B, C, H, W) along ``dim`` (-2 or -1) with banded (index, weight) taps.

    A loop over the few taps of each output pixel (index_select + multiply-add) needs memory
    for one output only, where a dense (n_out × n_in) matrix would grow with both sizes.
    """
    index, weight = taps
    index = index.to(planes.device)
    weight = weight.to(device=planes.device, dtype=planes.dtype)
    total = None
    for tap in range(index.shape[1]):
        w = weight[:, tap] if dim == -1 else weight[:, tap, None]
        part = planes.index_select(dim, index[:, tap]) * w
        total = part if total is None else total.add_(part)
    return total


def resize(image: torch.Tensor, height: int, width: int, method: str) -> torch.Tensor:
    """Resize an IMAGE (B, H, W, C) to height × width with one of ``SCALE_METHODS``.

    Downscaling is antialiased for every method but nearest (which by definition picks one
    source pixel): bilinear and bicubic through torch's antialiased kernels (the same as
    Pillow's), lanczos and area through the banded filters above. Bicubic and lanczos ring a
    little at hard edges; the result is clamped to 0..1.
    """
    import torch
    import torch.nn.functional as F

    if method not in SCALE_METHODS:
        raise ValueError(f"unknown scale method {method!r}; choose one of {SCALE_METHODS}")
    planes = image.to(torch.float32).permute(0, 3, 1, 2)
    in_height, in_width = planes.shape[-2:]
    if (in_height, in_width) == (height, width):
        return image.clone()
    if method == "nearest":
        # nearest-exact picks the source pixel whose centre is nearest (Pillow's NEAREST).
        out = F.interpolate(planes, size=(height, width), mode="nearest-exact")
    elif method in ("bilinear", "bicubic"):
        # antialias=True also when upscaling: the same kernels both ways (bicubic a = −0.5).
        out = F.interpolate(
            planes, size=(height, width), mode=method, align_corners=False, antialias=True
        )
    else:
        taps = _lanczos_taps if method == "lanczos" else _area_taps
        out = _resample_axis(planes, -2, taps(in_height, height))
        out = _resample_axis(out, -1, taps(in_width, width))
    return out.clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous().to(image.dtype)


def target_size(
    in_height: int, in_width: int, factor: float, width: int, height: int
) -> tuple[int, int]:
    """(height, width) the scale node makes.

    factor when both sides are 0; else the sides given, a side of 0 following the other so as
    to keep the aspect ratio.
    """
    if width == 0 and height == 0:
        return max(1, round(in_height * factor)), max(1, round(in_width * factor))
    if width == 0:
        return height, max(1, round(in_width * height / in_height))
    if height == 0:
        return max(1, round(in_height * width / in_width)), width
    return height, width


@node("image.scale", category="image/transform", display_name="Scale Image")
def scale_image(
    image: Image,
    method: Choice(SCALE_METHODS) = "bicubic",
    factor: Float(0.01, 16.0, step=0.01) = 1.0,
    width: SIDE = 0,
    height: SIDE = 0,
) -> Image:
    """Resize images by a factor or to a width and height.

    With width and height both 0 the image is scaled by factor. Otherwise factor is ignored:
    set both sides for an exact size (the aspect ratio may change), or one of them and leave
    the other 0 to keep the aspect ratio.

    Methods: nearest (blocky, no smoothing: pixel art, masks), bilinear, bicubic (sharper),
    lanczos (Lanczos-3, sharpest, Pillow-compatible) and area (each output pixel averages the
    input pixels it covers; best for reducing). Downscaling is antialiased for all but
    nearest. Bicubic and lanczos may ring at hard edges; results are clamped to 0..1.
    """
    _, in_height, in_width, _ = image.shape
    height, width = target_size(in_height, in_width, factor, width, height)
    if height * width > MAX_PIXELS:
        raise ValueError(
            f"scaling to {width}×{height} ({height * width / 1e6:.0f} MP) is refused; "
            f"images above {MAX_PIXELS / 1e6:.0f} MP are not made"
        )
    return resize(image, height, width, method)


@node("image.crop", category="image/transform", display_name="Crop Image")
def crop_image(
    image: Image,
    x: Int(min=0) = 0,
    y: Int(min=0) = 0,
    width: Int(min=1) = 512,
    height: Int(min=1) = 512,
) -> Image:
    """Cut out the width × height rectangle whose top-left corner is at (x, y).

    The rectangle must lie inside the image; if it does not, the run fails with a message
    giving the image size and which edge is crossed (the image size is only known when the
    workflow runs).
    """
    _, in_height, in_width, _ = image.shape
    crossed = []
    if x + width > in_width:
        crossed.append(f"x + width = {x} + {width} = {x + width} exceeds the width {in_width}")
    if y + height > in_height:
        crossed.append(f"y + height = {y} + {height} = {y + height} exceeds the height {in_height}")
    if crossed:
        raise ValueError(
            f"crop {width}×{height} at ({x}, {y}) leaves the {in_width}×{in_height} image: "
            + "; ".join(crossed)
        )
    # A copy, not a view: a view would keep the whole source image alive in the cache.
    return image[:, y : y + height, x : x + width, :].clone()


def _overlay(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Multiply where the base is dark, screen where it is light (the base decides)."""
    import torch

    return torch.where(a < 0.5, 2.0 * a * b, 1.0 - 2.0 * (1.0 - a) * (1.0 - b))


# Each mode combines base a and layer b into the blended colour (the usual formulas).
BLEND_MODES = {
    "normal": lambda a, b: b,
    "multiply": lambda a, b: a * b,
    "screen": lambda a, b: 1.0 - (1.0 - a) * (1.0 - b),
    "overlay": _overlay,
    "difference": lambda a, b: (a - b).abs(),
}


@node("image.blend", category="image/transform", display_name="Blend Images")
def blend_images(
    base: Image,
    layer: Image,
    factor: Float(0.0, 1.0, step=0.01) = 0.5,
    mode: Choice(list(BLEND_MODES)) = "normal",
) -> Image:
    """Blend layer onto base: base + factor × (mode(base, layer) − base).

    Modes: normal (the layer itself), multiply (darkens: 0.5 × 0.5 = 0.25), screen
    (lightens: 1 − (1 − a)(1 − b)), overlay (multiply in the base's shadows, screen in its
    highlights: adds contrast) and difference (|a − b|). factor 0 gives the base, 1 the full
    mode result.

    If the layer's size differs from the base's, the layer is resized to it (bilinear,
    stretched: the aspect ratio is not kept; crop or scale it first to control that). A batch
    of one is used with every image of the other batch; other batch sizes must match.
    """
    import torch

    a = base.to(torch.float32)
    b = layer.to(device=a.device, dtype=torch.float32)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"cannot blend images with {a.shape[-1]} and {b.shape[-1]} channels")
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise ValueError(
            f"cannot blend a batch of {b.shape[0]} layers onto a batch of {a.shape[0]} bases; "
            "batch sizes must match or one of them be 1"
        )
    if b.shape[1:3] != a.shape[1:3]:
        b = resize(b, a.shape[1], a.shape[2], "bilinear")
    blended = BLEND_MODES[mode](a, b)
    return torch.lerp(a, blended, factor).clamp(0.0, 1.0).to(base.dtype)


NODES = [scale_image, crop_image, blend_images]
