"""ComfyUI's resampling rules (its ``common_upscale``), for latents and images alike.

ComfyUI scales channels-first tensors with torch's ``interpolate`` as is (no antialiasing,
``align_corners=False``), with two methods of its own: ``bislerp`` (bilinear positions,
spherical interpolation of each pixel's channel vector, used on latents) and ``lanczos``
(Pillow's Lanczos-3, used on images; here graphflow's own Pillow-compatible filter from
gf_image/transform.py). ``crop="center"`` first cuts the source to the target's aspect ratio.
The arithmetic follows ComfyUI's (measured against v0.3.64); the code is our own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

LATENT_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
IMAGE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
CROP_METHODS = ["disabled", "center"]
_PARALLEL = 1e-5  # |dot| this close to 1: ComfyUI takes the first vector (or lerps, if opposed)


def center_crop(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The centred part of (…, H, W) ``samples`` with the aspect ratio of width × height.

    As ComfyUI: the cut on each side is ``round((old − old · ratio) / 2)`` pixels along the
    axis that is too long; nothing is cut when the aspects already match.
    """
    old_height, old_width = samples.shape[-2:]
    old_aspect, new_aspect = old_width / old_height, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_width - old_width * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_height - old_height * (old_aspect / new_aspect)) / 2)
    return samples[..., y : old_height - y, x : old_width - x]


def _bilinear_positions(old: int, new: int):
    """(lower index, upper index, fraction) of each of ``new`` samples along an axis of
    ``old``: the source point torch's bilinear interpolation (align_corners=False) reads,
    clamped to the axis, split into its two neighbours."""
    import torch

    position = (torch.arange(new, dtype=torch.float64) + 0.5) * (old / new) - 0.5
    position = position.clamp(0, old - 1)
    lower = position.floor()
    fraction = (position - lower).to(torch.float32)
    lower = lower.to(torch.int64)
    return lower, (lower + 1).clamp(max=old - 1), fraction


def _slerp_vectors(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """ComfyUI's slerp of row vectors a, b (N, C) by t (N, 1).

    Directions are slerped and the length is the lerp of the two lengths. A zero vector has a
    zero direction. Nearly parallel pairs give ``a`` (whatever t), nearly opposite ones the
    plain lerp — ComfyUI's edge cases, kept so that results agree.
    """
    import torch

    norm_a = a.norm(dim=-1, keepdim=True)
    norm_b = b.norm(dim=-1, keepdim=True)
    unit_a = torch.where(norm_a == 0, 0.0, a / norm_a)
    unit_b = torch.where(norm_b == 0, 0.0, b / norm_b)
    dot = (unit_a * unit_b).sum(-1, keepdim=True)
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) * unit_a + torch.sin(t * omega) * unit_b) / sin_omega
    result = direction * (norm_a * (1 - t) + norm_b * t)
    result = torch.where(dot < _PARALLEL - 1, a * (1 - t) + b * t, result)
    return torch.where(dot > 1 - _PARALLEL, a, result)


def _bislerp_axis(samples: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Resample (N, C, H, W) along ``dim`` (2 or 3) to ``size`` by slerping neighbours."""
    lower, upper, fraction = _bilinear_positions(samples.shape[dim], size)
    first = samples.index_select(dim, lower.to(samples.device)).movedim(1, -1)
    second = samples.index_select(dim, upper.to(samples.device)).movedim(1, -1)
    shape = [1] * first.dim()
    shape[dim - 1] = size  # the channel axis moved to the end, so the others shift down
    t = fraction.to(samples.device).view(shape).expand(*first.shape[:-1], 1)
    channels = first.shape[-1]
    mixed = _slerp_vectors(
        first.reshape(-1, channels), second.reshape(-1, channels), t.reshape(-1, 1)
    )
    return mixed.reshape(first.shape).movedim(-1, 1)


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """ComfyUI's "bislerp": (N, C, H, W) → (N, C, height, width), the width first, then the
    height, each a slerp between the two bilinear neighbours (computed in float32)."""
    import torch

    out = _bislerp_axis(samples.to(torch.float32), width, 3)
    return _bislerp_axis(out, height, 2).to(samples.dtype)


def lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Lanczos-3 (Pillow's filter) of (N, C, H, W) image planes in 0..1.

    ComfyUI rounds to 8-bit and back around Pillow; graphflow's float filter skips the
    rounding, so results agree within one 8-bit step.
    """
    from gf_image.transform import resize

    image = samples.movedim(1, -1)
    return resize(image, height, width, "lanczos").movedim(-1, 1)


def common_upscale(
    samples: torch.Tensor, width: int, height: int, method: str, crop: str
) -> torch.Tensor:
    """Resize (N, C, H, W) ``samples`` to height × width as ComfyUI's common_upscale does."""
    import torch.nn.functional as F

    if method not in LATENT_METHODS + IMAGE_METHODS:
        raise ValueError(f"unknown upscale_method {method!r}")
    if crop not in CROP_METHODS:
        raise ValueError(f"unknown crop {crop!r}; choose one of {CROP_METHODS}")
    if width < 1 or height < 1:
        raise ValueError(f"cannot resize to {width}×{height}")
    source = center_crop(samples, width, height) if crop == "center" else samples
    if method == "bislerp":
        return bislerp(source, width, height)
    if method == "lanczos":
        return lanczos(source, width, height)
    return F.interpolate(source, size=(height, width), mode=method)
