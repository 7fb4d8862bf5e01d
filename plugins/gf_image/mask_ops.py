"""Pure tensor operations on masks: the one implementation behind graphflow's mask nodes
(masks.py) and ComfyUI's mask class types (gf_comfy/nodes_mask.py).

MASK: float (B, H, W) in 0..1 (1 = selected). A (H, W) mask is read as a batch of one. A
batch of one is used with every item of the other batch; other batch sizes must match.
Sizes must match unless a function says it resizes; a mismatch is a ValueError naming both.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CHANNELS = ["red", "green", "blue", "alpha"]
GROW_SHAPES = ["tapered", "square", "round"]
COMPOSITE_OPERATIONS = ["multiply", "add", "subtract", "and", "or", "xor"]


# -- shapes and batches ----------------------------------------------------------------------


def as_mask(mask: torch.Tensor) -> torch.Tensor:
    """The mask as float32 (B, H, W); (H, W) becomes a batch of one."""
    import torch

    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"a mask is (B, H, W); got a tensor of shape {tuple(mask.shape)}")
    return mask.to(torch.float32)


def size_text(height: int, width: int) -> str:
    """``64×48`` (width × height), the way sizes are written in messages."""
    return f"{width}×{height}"


def check_size(mask: torch.Tensor, height: int, width: int, other: str = "the image") -> None:
    """ValueError unless the mask is height × width ("mask is 64×48 but the image is 32×32")."""
    if tuple(mask.shape[-2:]) != (height, width):
        raise ValueError(
            f"mask is {size_text(*mask.shape[-2:])} but {other} is {size_text(height, width)}; "
            "resize or crop one of them first (or use a node option that resizes)"
        )


def batch_size(a: int, b: int, a_name: str = "mask", b_name: str = "image") -> int:
    """The batch two inputs make together: equal sizes, or one of them 1; else ValueError."""
    if a == b or b == 1:
        return a
    if a == 1:
        return b
    raise ValueError(
        f"{a_name} batch of {a} does not fit {b_name} batch of {b}; batch sizes must match "
        "or one of them be 1"
    )


def expand_batch(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """A batch-1 tensor repeated to ``size`` (a view); a batch of ``size`` as is."""
    if tensor.shape[0] == size:
        return tensor
    return tensor.expand(size, *tensor.shape[1:])


# -- image ↔ mask ----------------------------------------------------------------------------


def image_to_mask(image: torch.Tensor, channel: str) -> torch.Tensor:
    """One channel of an IMAGE (B, H, W, C) as a MASK: red, green, blue or alpha (the fourth
    channel's value, which only RGBA images have)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; choose one of {CHANNELS}")
    index = CHANNELS.index(channel)
    if index >= image.shape[-1]:
        raise ValueError(
            f"the image has {image.shape[-1]} channels, so no {channel} channel; an image "
            "file's transparency comes as the mask output of Load Image"
        )
    return as_mask(image[..., index]).clone()


def mask_to_image(mask: torch.Tensor) -> torch.Tensor:
    """A grey RGB IMAGE (B, H, W, 3) whose every channel is the mask."""
    return as_mask(mask)[..., None].expand(-1, -1, -1, 3).contiguous()


def solid(value: float, width: int, height: int, batch: int = 1) -> torch.Tensor:
    """A batch of masks filled with ``value``."""
    import torch

    return torch.full((batch, height, width), float(value), dtype=torch.float32)


def invert(mask: torch.Tensor) -> torch.Tensor:
    """1 − mask."""
    return 1.0 - as_mask(mask)


def threshold(mask: torch.Tensor, value: float) -> torch.Tensor:
    """1 where the mask is above ``value``, else 0."""
    return (as_mask(mask) > value).float()


def color_to_mask(image: torch.Tensor, color: int, tolerance: int = 0) -> torch.Tensor:
    """1 where a pixel's 8-bit RGB is within ``tolerance`` (per channel, 0..255) of ``color``
    (0xRRGGBB); tolerance 0 is an exact match. Values are clamped to 0..1 and rounded to 8
    bits first, as a saved PNG would hold them."""
    import torch

    rgb = (image[..., :3].clamp(0.0, 1.0) * 255.0).round().to(torch.int32)
    target = torch.tensor([(color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF])
    distance = (rgb - target.to(rgb.device, torch.int32)).abs().amax(-1)
    return (distance <= tolerance).float()


# -- morphology and blur ---------------------------------------------------------------------


def _dilate_once(planes: torch.Tensor, cross: bool) -> torch.Tensor:
    """One 3×3 grey dilation of (B, 1, H, W): the square, or the plus-shaped cross (edges
    repeat the border pixel, as scipy's default 'reflect' mode does)."""
    import torch
    import torch.nn.functional as F

    padded = F.pad(planes, (1, 1, 1, 1), mode="replicate")
    if not cross:
        return F.max_pool2d(padded, 3, stride=1)
    height, width = planes.shape[-2:]
    centre = padded[..., 1 : height + 1, 1 : width + 1]
    up, down = padded[..., 0:height, 1 : width + 1], padded[..., 2 : height + 2, 1 : width + 1]
    left, right = padded[..., 1 : height + 1, 0:width], padded[..., 1 : height + 1, 2 : width + 2]
    return torch.stack([centre, up, down, left, right]).amax(0)


def _dilate_round(planes: torch.Tensor, radius: int) -> torch.Tensor:
    """Grey dilation of (B, 1, H, W) by a disk of ``radius``: for each row offset dy, a
    horizontal max over half-width ⌊√(r² − dy²)⌋, shifted by dy (2r + 1 cheap passes)."""
    import torch
    import torch.nn.functional as F

    height, width = planes.shape[-2:]
    padded = F.pad(planes, (radius, radius, radius, radius), mode="replicate")
    out = None
    for dy in range(-radius, radius + 1):
        half = math.isqrt(radius * radius - dy * dy)
        rows = padded[..., radius + dy : radius + dy + height, :]
        row_max = F.max_pool2d(rows, (1, 2 * half + 1), stride=1)
        part = row_max[..., radius - half : radius - half + width]
        out = part if out is None else torch.maximum(out, part)
    return out


def grow(mask: torch.Tensor, pixels: int, shape: str = "tapered") -> torch.Tensor:
    """Grow the mask by ``pixels`` (shrink it when negative): grey dilation or erosion.

    shape "tapered" repeats a 3×3 cross (corners cut: a pixel grows into a diamond, ComfyUI's
    GrowMask with tapered_corners), "square" a 3×3 square (a pixel grows into a
    (2n + 1)² square), "round" a disk of radius n.
    """
    if shape not in GROW_SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {GROW_SHAPES}")
    mask = as_mask(mask)
    if pixels == 0:
        return mask.clone()
    # Erosion is the dilation of the inverse; border pixels repeat either way.
    planes = (mask if pixels > 0 else 1.0 - mask)[:, None]
    steps = abs(pixels)
    if shape == "round":
        planes = _dilate_round(planes, steps)
    elif shape == "square":
        planes = _dilate_square(planes, steps)
    else:
        for _ in range(steps):
            planes = _dilate_once(planes, cross=True)
    out = planes[:, 0]
    return out if pixels > 0 else 1.0 - out


def _dilate_square(planes: torch.Tensor, steps: int) -> torch.Tensor:
    """n 3×3 square dilations at once: one (2n + 1)² max filter."""
    import torch.nn.functional as F

    padded = F.pad(planes, (steps, steps, steps, steps), mode="replicate")
    return F.max_pool2d(padded, 2 * steps + 1, stride=1)


def gaussian_kernel(radius: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of standard deviation ``radius``, cut at 3σ."""
    import torch

    half = max(1, math.ceil(3.0 * radius))
    x = torch.arange(-half, half + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / radius) ** 2)
    return kernel / kernel.sum()


def blur(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Gaussian blur with standard deviation ``radius`` pixels (as Pillow's GaussianBlur
    radius); edges repeat the border pixel, so a solid mask stays solid. 0 returns a copy."""
    import torch.nn.functional as F

    mask = as_mask(mask)
    if radius <= 0:
        return mask.clone()
    kernel = gaussian_kernel(radius).to(mask.device)
    half = kernel.numel() // 2
    planes = mask[:, None]
    planes = F.conv2d(F.pad(planes, (half, half, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    planes = F.conv2d(F.pad(planes, (0, 0, half, half), mode="replicate"), kernel.view(1, 1, -1, 1))
    return planes[:, 0].clamp(0.0, 1.0)


def edge_ramp(length: int, near: int, far: int) -> torch.Tensor:
    """(length,) factors: 1/n, 2/n ... n/n over the first ``near`` and, mirrored, the last
    ``far`` positions, 1 between (each side's count clamped to ``length``)."""
    import torch

    ramp = torch.ones(length, dtype=torch.float32)
    near, far = min(near, length), min(far, length)
    if near:
        ramp[:near] *= torch.arange(1, near + 1, dtype=torch.float32) / near
    if far:
        ramp[length - far :] *= torch.arange(far, 0, -1, dtype=torch.float32) / far
    return ramp


def feather_edges(mask: torch.Tensor, left: int, top: int, right: int, bottom: int) -> torch.Tensor:
    """Fade the mask linearly to its borders: the k-th column from the left edge (k = 1..left)
    is multiplied by k / left, likewise for the other sides (ComfyUI's FeatherMask)."""
    mask = as_mask(mask)
    height, width = mask.shape[-2:]
    rows = edge_ramp(height, top, bottom).to(mask.device)
    columns = edge_ramp(width, left, right).to(mask.device)
    return mask * rows[:, None] * columns[None, :]


# -- cropping and compositing ----------------------------------------------------------------


def crop(mask: torch.Tensor, x: int, y: int, width: int, height: int) -> torch.Tensor:
    """The width × height rectangle at (x, y); ValueError naming the edge it crosses."""
    mask = as_mask(mask)
    in_height, in_width = mask.shape[-2:]
    crossed = []
    if x + width > in_width:
        crossed.append(f"x + width = {x + width} exceeds the width {in_width}")
    if y + height > in_height:
        crossed.append(f"y + height = {y + height} exceeds the height {in_height}")
    if crossed:
        raise ValueError(
            f"crop {width}×{height} at ({x}, {y}) leaves the {in_width}×{in_height} mask: "
            + "; ".join(crossed)
        )
    return mask[:, y : y + height, x : x + width].clone()


def _combine(a: torch.Tensor, b: torch.Tensor, operation: str) -> torch.Tensor:
    import torch

    if operation == "multiply":
        return a * b
    if operation == "add":
        return a + b
    if operation == "subtract":
        return a - b
    # Logic on masks rounded to 0/1 first (0.5 counts as 0: round half to even).
    logic = {"and": torch.logical_and, "or": torch.logical_or, "xor": torch.logical_xor}
    if operation not in logic:
        raise ValueError(f"unknown operation {operation!r}; choose one of {COMPOSITE_OPERATIONS}")
    return logic[operation](a.round().bool(), b.round().bool()).float()


def composite_masks(
    destination: torch.Tensor, source: torch.Tensor, x: int, y: int, operation: str
) -> torch.Tensor:
    """Combine ``source`` into ``destination`` with its top-left corner at (x, y).

    Where they overlap the result is ``operation``(destination, source) clamped to 0..1
    (multiply, add, subtract; and, or, xor on the masks rounded to 0/1); elsewhere the
    destination is kept. The source may be any size; what falls outside is ignored.
    """
    destination, source = as_mask(destination), as_mask(source)
    size = batch_size(source.shape[0], destination.shape[0], "source", "destination")
    out = expand_batch(destination, size).clone()
    height, width = out.shape[-2:]
    bottom, right = min(y + source.shape[-2], height), min(x + source.shape[-1], width)
    if x < width and y < height:
        part = expand_batch(source, size)[:, : bottom - y, : right - x]
        out[:, y:bottom, x:right] = _combine(out[:, y:bottom, x:right], part, operation)
    return out.clamp(0.0, 1.0)


def paste(
    destination: torch.Tensor, source: torch.Tensor, x: int, y: int, mask: torch.Tensor | None
) -> torch.Tensor:
    """IMAGE ``source`` blended onto ``destination`` with its top-left corner at (x, y):
    mask · source + (1 − mask) · destination where they overlap (a missing mask is all 1).

    Batches must already agree (same size); ``mask`` is source-sized (B or 1, h, w).
    What falls outside the destination is ignored.
    """
    out = destination.clone()
    height, width = out.shape[1:3]
    if x >= width or y >= height:
        return out
    bottom, right = min(y + source.shape[1], height), min(x + source.shape[2], width)
    part = source[:, : bottom - y, : right - x].to(out.dtype)
    below = out[:, y:bottom, x:right]
    if mask is None:
        out[:, y:bottom, x:right] = part
    else:
        alpha = mask[:, : bottom - y, : right - x, None].to(out.dtype)
        out[:, y:bottom, x:right] = alpha * part + (1.0 - alpha) * below
    return out


def resize_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The mask resized to height × width, bilinear (as ComfyUI resizes composite masks)."""
    import torch.nn.functional as F

    mask = as_mask(mask)
    if tuple(mask.shape[-2:]) == (height, width):
        return mask
    return F.interpolate(mask[:, None], size=(height, width), mode="bilinear")[:, 0]
