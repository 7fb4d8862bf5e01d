"""Classical edge maps for ControlNet: Canny, gradient magnitude, Laplacian "line art".

Every node reads the luminance of each image of the batch (Rec. 601 weights, as ComfyUI's
Canny and OpenCV use) and returns white edges on black in three channels, the form edge
ControlNets are trained on. No weights, no downloads.

``canny_like_kornia`` is the torch Canny that ComfyUI's Canny node gets from kornia (written
from kornia's documented algorithm), for the ComfyUI class type; ``image.canny`` uses
scikit-image's implementation, which interpolates the gradient direction in its
non-maximum suppression instead of rounding it to 45°.
"""

from __future__ import annotations

import math
from typing import Any

from graphflow import Boolean, Choice, Float, Image, node

LUMA = (0.299, 0.587, 0.114)  # Rec. 601, as kornia's rgb_to_grayscale and OpenCV
GRADIENT_OPERATORS = ["sobel", "scharr", "prewitt"]
LINE_POLARITIES = ["dark lines", "light lines", "both"]
THRESHOLD = Float(0.0, 1.0, step=0.01)
SIGMA = Float(0.0, 10.0, step=0.1)


def luminance(image: Any) -> Any:
    """(B, H, W) float64 NumPy luminance of an IMAGE (grey images as they are)."""
    import numpy as np

    pixels = image.detach().cpu().float().numpy().astype(np.float64)
    if pixels.shape[-1] < 3:
        return pixels[..., 0]
    return pixels[..., :3] @ np.array(LUMA)


def as_edge_image(maps: Any, like: Any) -> Any:
    """(B, H, W) maps in 0..1 (NumPy or torch) → an IMAGE (B, H, W, 3) like ``like``."""
    import torch

    maps = torch.as_tensor(maps, dtype=torch.float32).clamp(0.0, 1.0)
    return maps[..., None].expand(*maps.shape, 3).contiguous().to(like.device, like.dtype)


def finish_map(
    strength_map: Any, strength: float = 1.0, normalise: bool = False, threshold: float = 0.0
) -> Any:
    """Scale one (H, W) edge strength map: stretched so its maximum is 1 (normalise), times
    strength, clipped to 0..1; threshold > 0 then makes it 0/1 (edge where above)."""
    import numpy as np

    out = np.asarray(strength_map, dtype=np.float64)
    if normalise and out.max() > 0:
        out = out / out.max()
    out = np.clip(out * strength, 0.0, 1.0)
    if threshold > 0.0:
        out = (out > threshold).astype(np.float64)
    return out


# --------------------------------------------------------------------------- nodes


@node("image.canny", category="image/preprocessors", display_name="Canny Edges")
def canny(
    image: Image,
    low_threshold: THRESHOLD = 0.4,
    high_threshold: THRESHOLD = 0.8,
    sigma: SIGMA = 1.0,
) -> Image:
    """Thin, black-and-white edge lines (Canny), for a Canny ControlNet.

    The luminance is blurred (Gaussian, sigma pixels), its Sobel gradient found, thinned to
    one-pixel lines, and kept where the gradient is above high_threshold or, when above
    low_threshold, connected to such a line. Thresholds are in unnormalised Sobel units on
    0..1 images, as in ComfyUI's Canny (a sharp black-to-white step reaches about 2.6 at
    sigma 1): lower them for more, fainter edges. Uses scikit-image's Canny.
    """
    from skimage.feature import canny as skimage_canny

    if low_threshold > high_threshold:
        raise ValueError(
            f"low_threshold ({low_threshold}) is above high_threshold ({high_threshold}); "
            "set it lower"
        )
    maps = [
        skimage_canny(grey, sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold)
        for grey in luminance(image)
    ]
    return as_edge_image(_stack(maps), image)


@node("image.gradient_edges", category="image/preprocessors", display_name="Gradient Edges")
def gradient_edges(
    image: Image,
    operator: Choice(GRADIENT_OPERATORS) = "sobel",
    sigma: SIGMA = 1.0,
    strength: Float(0.0, 16.0, step=0.1) = 1.0,
    normalise: Boolean = True,
    threshold: THRESHOLD = 0.0,
) -> Image:
    """Soft edges: the gradient magnitude of the luminance (Sobel, Scharr or Prewitt).

    sigma blurs first (0 = none), which keeps texture and noise out. Without normalise a
    sharp black-to-white step is 1; normalise stretches each image so that its strongest
    edge is 1. strength multiplies the result (clipped to 1); threshold > 0 makes it black
    and white.
    """
    from scipy import ndimage
    from skimage import filters

    gradient = getattr(filters, operator)
    maps = []
    for grey in luminance(image):
        if sigma > 0:
            grey = ndimage.gaussian_filter(grey, sigma, mode="nearest")
        # skimage returns sqrt((gx² + gy²) / 2) with unit-sum kernels: ×√2 makes a step 1.
        magnitude = gradient(grey, mode="nearest") * math.sqrt(2.0)
        maps.append(finish_map(magnitude, strength, normalise, threshold))
    return as_edge_image(_stack(maps), image)


@node("image.line_art", category="image/preprocessors", display_name="Line Art (Laplacian)")
def line_art(
    image: Image,
    sigma: Float(0.5, 10.0, step=0.1) = 1.0,
    lines: Choice(LINE_POLARITIES) = "dark lines",
    strength: Float(0.0, 16.0, step=0.1) = 1.0,
    normalise: Boolean = True,
    threshold: THRESHOLD = 0.0,
) -> Image:
    """Soft line drawing from the Laplacian of Gaussian of the luminance ("line-art-like").

    Thin dark strokes and the dark side of edges come out white ("dark lines", what pencil
    line art looks like), or the light ones ("light lines"), or both. sigma sets the line
    width in pixels. Scaled like Gradient Edges: normalise stretches each image to a
    maximum of 1, strength multiplies, threshold > 0 makes it black and white. A classical
    stand-in for a learned line-art preprocessor.
    """
    import numpy as np
    from scipy import ndimage

    maps = []
    for grey in luminance(image):
        # σ²·∇²G is scale-normalised: the response to a line matched to sigma stays alike.
        log = ndimage.gaussian_laplace(grey, sigma, mode="nearest") * sigma**2
        if lines == "dark lines":
            response = np.maximum(log, 0.0)
        elif lines == "light lines":
            response = np.maximum(-log, 0.0)
        else:
            response = np.abs(log)
        maps.append(finish_map(response * 4.0, strength, normalise, threshold))
    return as_edge_image(_stack(maps), image)


def _stack(maps: list) -> Any:
    import numpy as np

    return np.stack([np.asarray(m, dtype=np.float32) for m in maps])


# --------------------------------------------------------------------------- kornia's Canny


def _gaussian_taps(size: int, sigma: float) -> Any:
    import torch

    x = torch.arange(size, dtype=torch.float32) - size // 2
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


def _blur_and_gradient(grey: Any, kernel_size: int, sigma: float) -> tuple[Any, Any]:
    """Gaussian blur (reflected border) then unnormalised Sobel (replicated border)."""
    import torch
    import torch.nn.functional as F

    taps = _gaussian_taps(kernel_size, sigma).to(grey)
    half = kernel_size // 2
    blurred = F.pad(grey, (half, half, half, half), mode="reflect")
    blurred = F.conv2d(blurred, taps.view(1, 1, 1, -1))
    blurred = F.conv2d(blurred, taps.view(1, 1, -1, 1))
    padded = F.pad(blurred, (1, 1, 1, 1), mode="replicate")
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).to(grey)
    gx = F.conv2d(padded, sobel_x.view(1, 1, 3, 3))
    gy = F.conv2d(padded, sobel_x.t().reshape(1, 1, 3, 3))
    return gx, gy


# The 8 neighbours, counter-clockwise from "right" in image coordinates (y down): the index
# of a gradient direction rounded to 45° is round(angle / 45°) mod 8.
_NEIGHBOURS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def _thin(magnitude: Any, gx: Any, gy: Any, eps: float) -> Any:
    """Non-maximum suppression along the gradient rounded to 45°: a pixel stays when its
    magnitude beats both neighbours along that direction (see _above) and is not zero."""
    import torch
    import torch.nn.functional as F

    height, width = magnitude.shape[-2:]
    padded = F.pad(magnitude, (1, 1, 1, 1), value=math.sqrt(eps))
    around = torch.stack(
        [padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy, dx in _NEIGHBOURS],
        dim=2,
    )
    direction = torch.round(torch.nan_to_num(torch.atan2(gy, gx)) * (4 / math.pi))
    ahead = (direction % 8).long()
    behind = ((direction + 4) % 8).long()
    both = torch.gather(around, 2, torch.stack([ahead, behind], dim=2))
    keep = _above(magnitude, both[:, :, 0], ahead) & _above(magnitude, both[:, :, 1], behind)
    return magnitude * (keep & (magnitude > math.sqrt(eps)))


def _above(magnitude: Any, neighbour: Any, direction: Any) -> Any:
    """magnitude > neighbour, or equal to it when the neighbour is right (0) or below (2):
    of two equal pixels across a step, the left (upper) one stays, as in OpenCV."""
    tie_wins = (direction == 0) | (direction == 2)
    return (magnitude > neighbour) | (tie_wins & (magnitude == neighbour))


def _hysteresis(weak: Any, strong: Any) -> Any:
    """Strong pixels plus the weak ones joined to them through 8-neighbours (repeated until
    nothing changes)."""
    import torch.nn.functional as F

    edges = strong
    while True:
        grown = F.max_pool2d(edges, 3, 1, padding=1) * weak
        grown = (grown + strong).clamp(max=1.0)
        if bool((grown == edges).all()):
            return edges
        edges = grown


def canny_like_kornia(
    planes: Any,
    low_threshold: float,
    high_threshold: float,
    kernel_size: int = 5,
    sigma: float = 1.0,
    eps: float = 1e-6,
) -> Any:
    """Canny edges (B, 1, H, W) of 0/1 of (B, C, H, W) images, by kornia's ``canny`` rules.

    Grey from RGB (Rec. 601), a kernel_size Gaussian blur with a reflected border, the
    unnormalised Sobel gradient with a replicated one, magnitude √(gx² + gy² + eps),
    non-maximum suppression along the direction rounded to 45°, strict thresholds and
    8-connected hysteresis. ComfyUI's Canny calls kornia with these defaults.
    """
    import torch

    if not 0 < low_threshold <= high_threshold:
        raise ValueError(
            f"thresholds must satisfy 0 < low ≤ high (got low {low_threshold}, high "
            f"{high_threshold})"
        )
    planes = planes.to(torch.float32)
    grey = planes[:, :1] if planes.shape[1] == 1 else planes[:, :3]
    if grey.shape[1] == 3:
        grey = (grey * torch.tensor(LUMA).to(grey).view(1, 3, 1, 1)).sum(1, keepdim=True)
    gx, gy = _blur_and_gradient(grey, kernel_size, sigma)
    magnitude = _thin(torch.sqrt(gx * gx + gy * gy + eps), gx, gy, eps)
    weak = (magnitude > low_threshold).to(torch.float32)
    strong = (magnitude > high_threshold).to(torch.float32)
    return _hysteresis(weak, strong)


NODES = [canny, gradient_edges, line_art]
