"""Latent tools: resizing latents (the hires fix's first half) and picking or repeating
items of a latent batch.

Resizing follows ComfyUI's LatentUpscale (``resample.py``: torch's interpolations, and
bislerp, which slerps neighbouring latent vectors). A resized latent keeps its noise mask at
its own size (samplers resize masks to the latent) and its batch index. Batch tools keep
``Latent.batch_index`` as ComfyUI's LatentFromBatch does, so an item taken out of a batch is
sampled with the noise it had in the whole batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from graphflow import Choice, Float, Int, node

from .resample import CROP_METHODS, LATENT_METHODS, common_upscale
from .types import Latent as LatentType
from .values import Latent

MAX_SIDE = 16384


def _with_samples(latent: Latent, samples: Any, **changes: Any) -> Latent:
    """``latent`` around new ``samples`` (no posterior: they are final), other fields kept
    unless given in ``changes``."""
    return dataclasses.replace(latent, samples=samples, posterior=None, **changes)


def resized(latent: Latent, width: int, height: int, method: str, crop: str = "disabled"):
    """``latent`` resized to width × height latent pixels by ComfyUI's rules (bislerp works
    on the unscaled latent, as ComfyUI's latents are, then scales back)."""
    if method not in LATENT_METHODS:
        raise ValueError(f"upscale method {method!r} is not one of {LATENT_METHODS}")
    samples = latent.samples
    if method == "bislerp":  # not linear: slerp the unscaled latents, then rescale
        unscaled = samples / latent.scaling_factor + latent.shift_factor
        out = common_upscale(unscaled, width, height, method, crop)
        out = (out - latent.shift_factor) * latent.scaling_factor
    else:
        out = common_upscale(samples, width, height, method, crop)
    return _with_samples(latent, out.to(samples.dtype))


@node("diffusion.upscale_latent", category="diffusion/latent", display_name="Upscale Latent")
def upscale_latent(
    latent: LatentType,
    method: Choice(LATENT_METHODS) = "nearest-exact",
    width: Int(min=8, max=MAX_SIDE, step=8) = 1024,
    height: Int(min=8, max=MAX_SIDE, step=8) = 1024,
    crop: Choice(CROP_METHODS) = "disabled",
) -> LatentType:
    """Resize a latent to the latent of a width × height image (the hires fix: sample
    small, upscale the latent, then sample again with denoise about 0.5).

    The size is in image pixels, turned into latent pixels with the latent's own VAE scale
    (8 for SD, 4 for graphflow-tiny). crop "center" first cuts the latent to the target's
    aspect ratio. bislerp keeps the latent vectors' lengths (sampling likes that); the
    others are torch's nearest-exact, bilinear, area and bicubic. The noise mask is kept.
    """
    factor = latent.downscale
    if width % factor or height % factor:
        raise ValueError(
            f"width {width} and height {height} must be multiples of this latent's VAE "
            f"scale ({factor}); try {width // factor * factor}×{height // factor * factor}"
        )
    return resized(latent, width // factor, height // factor, method, crop)


@node("diffusion.upscale_latent_by", category="diffusion/latent", display_name="Upscale Latent By")
def upscale_latent_by(
    latent: LatentType,
    method: Choice(LATENT_METHODS) = "nearest-exact",
    scale_by: Float(min=0.01, max=8.0, step=0.01) = 2.0,
) -> LatentType:
    """Resize a latent by a factor (each side rounded to whole latent pixels, at least 1),
    e.g. 2 before a second sampler pass at denoise about 0.5 (the hires fix)."""
    height, width = latent.samples.shape[-2:]
    new_width, new_height = max(1, round(width * scale_by)), max(1, round(height * scale_by))
    return resized(latent, new_width, new_height, method)


def _masks_for_batch(masks: Any, batch: int) -> Any:
    """Noise masks cycled to cover ``batch`` items (ComfyUI repeats a shorter mask batch)."""
    if masks.shape[0] < batch:
        repeats = -(-batch // masks.shape[0])
        masks = masks.repeat(repeats, *([1] * (masks.dim() - 1)))[:batch]
    return masks


def from_batch(latent: Latent, batch_index: int, length: int) -> Latent:
    """``length`` items of ``latent`` from ``batch_index`` on (both clipped to the batch),
    remembering their positions in the batch (ComfyUI's LatentFromBatch)."""
    source = latent.samples
    start = min(source.shape[0] - 1, int(batch_index))
    length = min(source.shape[0] - start, int(length))
    mask = latent.noise_mask
    if mask is not None and mask.shape[0] > 1:
        mask = _masks_for_batch(mask, source.shape[0])[start : start + length].clone()
    elif mask is not None:
        mask = mask.clone()  # one mask serves every item
    known = latent.batch_index
    indices = list(range(start, start + length)) if known is None else known[start : start + length]
    samples = source[start : start + length].clone()
    return _with_samples(latent, samples, batch_index=indices, noise_mask=mask)


def repeated(latent: Latent, amount: int) -> Latent:
    """The whole batch ``amount`` times; items with known batch positions get new ones after
    the originals' (ComfyUI's RepeatLatentBatch), so each repeat gets different noise."""
    source = latent.samples
    samples = source.repeat(int(amount), *([1] * (source.dim() - 1)))
    mask = latent.noise_mask
    if mask is not None and mask.shape[0] > 1:
        mask = mask.repeat(int(amount), *([1] * (mask.dim() - 1)))
    known = latent.batch_index
    if known is not None:
        offset = max(known) - min(known) + 1
        known = known + [x + i * offset for i in range(1, int(amount)) for x in known]
    return _with_samples(latent, samples, batch_index=known, noise_mask=mask)


@node("diffusion.latent_from_batch", category="diffusion/latent", display_name="Latent From Batch")
def latent_from_batch(
    latent: LatentType,
    batch_index: Int(min=0, max=63) = 0,
    length: Int(min=1, max=64) = 1,
) -> LatentType:
    """Take length latents from batch_index on (both clipped to the batch).

    They remember which items they were: a sampler gives each the noise it had in the whole
    batch, so one picture of a batch can be redone (with a hires pass, say) alone.
    """
    return from_batch(latent, batch_index, length)


@node(
    "diffusion.repeat_latent_batch",
    category="diffusion/latent",
    display_name="Repeat Latent Batch",
)
def repeat_latent_batch(latent: LatentType, amount: Int(min=1, max=64) = 1) -> LatentType:
    """Repeat the whole latent batch amount times (e.g. several variations of one img2img
    start); each repeat is sampled with its own noise."""
    return repeated(latent, amount)


NODES = [upscale_latent, upscale_latent_by, latent_from_batch, repeat_latent_batch]
