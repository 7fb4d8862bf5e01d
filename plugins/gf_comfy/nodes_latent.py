"""ComfyUI's latent class types: empty latents, VAE decode/encode (plain and tiled), latent
upscaling, and batch slicing/repeating, on graphflow's Latent values and VAE nodes.

graphflow latents are scaled by the VAE's scaling factor where ComfyUI's are not; every
method here but bislerp is linear with weights summing to one, so it commutes with that
scaling, and bislerp is computed in ComfyUI's (unscaled) space. ComfyUI's optional LATENT
keys ``batch_index`` and ``noise_mask`` are fields of graphflow's Latent.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Any

from gf_diffusion import latent_tools
from gf_diffusion.latents import vae_geometry
from gf_diffusion.resample import CROP_METHODS, LATENT_METHODS
from gf_diffusion.types import Latent as LatentType
from gf_diffusion.types import Vae
from gf_diffusion.vae import vae_decode, vae_encode
from gf_diffusion.values import Latent
from graphflow import Choice, Float, Image, Int, NodeContext

from .names import comfy_node

MAX_RESOLUTION = 16384
SD_GEOMETRY = vae_geometry(None)  # (8, 4, 0.18215, 0.0): gf_diffusion's empty-latent default


ComfyLatent = Latent  # ComfyUI's optional LATENT keys (batch_index, noise_mask) are Latent's


def with_samples(latent: Latent, samples: Any, **changes: Any) -> Latent:
    """``latent`` around new samples, keeping its geometry and ComfyUI keys (no posterior:
    the samples are final)."""
    extra = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(latent, samples=samples, posterior=None, **extra)


# --------------------------------------------------------------------------- empty and VAE


def fit_empty_latent(latent: Latent, geometry: tuple[int, int, float, float]) -> Latent:
    """An all-zero latent remade in another VAE's geometry for the same image size.

    EmptyLatentImage cannot see the model, so it makes SD's geometry (8×, 4 channels); a
    sampler that knows its model's VAE (``vae_geometry``: factor, channels, scaling, shift)
    calls this so that, say, graphflow-tiny (4×) gets a latent for the image size asked
    for. Latents with content, or already in that geometry, are returned as they are.
    """
    import torch

    factor, channels, scaling, shift = geometry
    samples = latent.samples
    same = (latent.downscale, samples.shape[1]) == (factor, channels)
    if same or samples.count_nonzero():
        return latent
    height, width = (side * latent.downscale // factor for side in samples.shape[-2:])
    zeros = torch.zeros(samples.shape[0], channels, height, width, dtype=samples.dtype)
    return dataclasses.replace(
        latent,
        samples=zeros.to(samples.device),
        posterior=None,
        scaling_factor=scaling,
        shift_factor=shift,
        downscale=factor,
    )


@comfy_node("EmptyLatentImage", display_name="Empty Latent Image", category="latent")
def empty_latent_image(
    width: Int(min=16, max=MAX_RESOLUTION, step=8) = 512,
    height: Int(min=16, max=MAX_RESOLUTION, step=8) = 512,
    batch_size: Int(min=1, max=4096) = 1,
) -> LatentType:
    """A batch of blank (all-zero) latents for images of width × height, to be denoised.

    As in ComfyUI the latent has 4 channels at 1/8 of the size (sides rounded down); it
    carries SD's scaling factor, as graphflow's Empty Latent does when no VAE is connected.
    """
    import torch

    factor, channels, scaling, shift = SD_GEOMETRY
    samples = torch.zeros(batch_size, channels, height // factor, width // factor)
    return Latent(samples, None, scaling, shift, factor)


def whole_then_tiled(run):
    """``run("off")`` — the whole image at once, as ComfyUI decodes and encodes — and, when
    the accelerator runs out of memory, ``run("on")`` in 512-pixel tiles."""
    import torch

    try:
        return run("off")
    except torch.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return run("on")


@comfy_node("VAEDecode", display_name="VAE Decode", category="latent")
def vae_decode_comfy(samples: LatentType, vae: Vae, ctx: NodeContext = None) -> Image:
    """Decode latents into images (in tiles only if the whole image does not fit in
    memory)."""
    return whole_then_tiled(
        lambda tiling: vae_decode.function(
            vae=vae, latent=samples, tiling=tiling, tile_size=512, ctx=ctx
        )
    )


def crop_to_factor(pixels: Any, factor: int) -> Any:
    """IMAGE cut to multiples of ``factor`` per side, centred as ComfyUI cuts (the offset is
    half the remainder, rounded down), first three channels only."""
    height, width = pixels.shape[1:3]
    h, w = height // factor * factor, width // factor * factor
    top, left = (height % factor) // 2, (width % factor) // 2
    return pixels[:, top : top + h, left : left + w, :3]


def _encode(vae, pixels, ctx, tiling: str, tile_size: int) -> Latent:
    factor = vae_geometry(vae)[0]
    pixels = crop_to_factor(pixels, factor)
    if min(pixels.shape[1:3]) == 0:
        raise ValueError(f"the image is smaller than the VAE's {factor}-pixel block")
    # ComfyUI draws one sample from the VAE's posterior with the global RNG; its mean is
    # the same up to the posterior's tiny spread, and deterministic (so it caches).
    return vae_encode.function(
        vae=vae, image=pixels, mode="mean", tiling=tiling, tile_size=tile_size, ctx=ctx
    )


@comfy_node("VAEEncode", display_name="VAE Encode", category="latent")
def vae_encode_comfy(pixels: Image, vae: Vae, ctx: NodeContext = None) -> LatentType:
    """Encode images into latents (sides cut to multiples of 8, centred, as ComfyUI does;
    in tiles only if the whole image does not fit in memory)."""
    return whole_then_tiled(lambda tiling: _encode(vae, pixels, ctx, tiling, 512))


@contextmanager
def _tile_overlap(vae, overlap: int, tile_size: int):
    """Set diffusers' tile overlap (a share of the tile) for one call, restored after."""
    module = vae.unpatched
    saved = module.tile_overlap_factor
    module.tile_overlap_factor = overlap / tile_size
    try:
        yield
    finally:
        module.tile_overlap_factor = saved


def _tiled_overlap(tile_size: int, overlap: int) -> int:
    """ComfyUI's rule: an overlap above a quarter of the tile becomes a quarter."""
    return tile_size // 4 if tile_size < overlap * 4 else overlap


@comfy_node(
    "VAEDecodeTiled",
    display_name="VAE Decode (Tiled)",
    category="_for_testing",
)
def vae_decode_tiled(
    samples: LatentType,
    vae: Vae,
    tile_size: Int(min=64, max=4096, step=32) = 512,
    overlap: Int(min=0, max=4096, step=32) = 64,
    temporal_size: Int(min=8, max=4096, step=4) = 64,
    temporal_overlap: Int(min=4, max=4096, step=4) = 8,
    ctx: NodeContext = None,
) -> Image:
    """Decode latents in tiles of tile_size pixels overlapping by overlap pixels (blended).

    An overlap above a quarter of the tile is reduced to a quarter. temporal_size and
    temporal_overlap only concern video VAEs; image VAEs ignore them.
    """
    overlap = _tiled_overlap(tile_size, overlap)
    with _tile_overlap(vae, overlap, tile_size):
        return vae_decode.function(
            vae=vae, latent=samples, tiling="on", tile_size=tile_size, ctx=ctx
        )


@comfy_node(
    "VAEEncodeTiled",
    display_name="VAE Encode (Tiled)",
    category="_for_testing",
)
def vae_encode_tiled(
    pixels: Image,
    vae: Vae,
    tile_size: Int(min=64, max=4096, step=64) = 512,
    overlap: Int(min=0, max=4096, step=32) = 64,
    temporal_size: Int(min=8, max=4096, step=4) = 64,
    temporal_overlap: Int(min=4, max=4096, step=4) = 8,
    ctx: NodeContext = None,
) -> LatentType:
    """Encode images in tiles of tile_size pixels overlapping by overlap pixels (blended).

    An overlap above a quarter of the tile is reduced to a quarter. temporal_size and
    temporal_overlap only concern video VAEs; image VAEs ignore them.
    """
    overlap = _tiled_overlap(tile_size, overlap)
    with _tile_overlap(vae, overlap, tile_size):
        return _encode(vae, pixels, ctx, "on", tile_size)


# --------------------------------------------------------------------------- upscaling


def upscale_latent(latent: Latent, width: int, height: int, method: str, crop: str) -> Latent:
    """``latent`` resized to width × height latent pixels by ComfyUI's rules (the native
    latent tools' implementation)."""
    return latent_tools.resized(latent, width, height, method, crop)


def latent_target(latent: Latent, width: int, height: int) -> tuple[int, int]:
    """(width, height) in latent pixels that LatentUpscale makes from pixel sizes.

    As ComfyUI: a side of 0 follows the other's aspect ratio, each side is at least 64
    pixels, and pixels become latent pixels by floor division.
    """
    latent_height, latent_width = latent.samples.shape[-2:]
    if width == 0:
        height = max(64, height)
        width = max(64, round(latent_width * height / latent_height))
    elif height == 0:
        width = max(64, width)
        height = max(64, round(latent_height * width / latent_width))
    else:
        width, height = max(64, width), max(64, height)
    return width // latent.downscale, height // latent.downscale


@comfy_node("LatentUpscale", display_name="Upscale Latent", category="latent")
def latent_upscale(
    samples: LatentType,
    upscale_method: Choice(LATENT_METHODS),
    width: Int(min=0, max=MAX_RESOLUTION, step=8) = 512,
    height: Int(min=0, max=MAX_RESOLUTION, step=8) = 512,
    crop: Choice(CROP_METHODS) = "disabled",
) -> LatentType:
    """Resize latents to the size of a width × height image.

    Both 0 keeps the latent as is; one 0 keeps the aspect ratio. crop "center" first cuts
    the latent to the target's aspect ratio. bislerp slerps neighbouring latent vectors
    (keeps their norm, which sampling likes); the others are torch's interpolations.
    """
    if width == 0 and height == 0:
        return samples
    latent_width, latent_height = latent_target(samples, width, height)
    return upscale_latent(samples, latent_width, latent_height, upscale_method, crop)


@comfy_node("LatentUpscaleBy", display_name="Upscale Latent By", category="latent")
def latent_upscale_by(
    samples: LatentType,
    upscale_method: Choice(LATENT_METHODS),
    scale_by: Float(min=0.01, max=8.0, step=0.01) = 1.5,
) -> LatentType:
    """Resize latents by a factor (each side rounded to whole latent pixels)."""
    latent_height, latent_width = samples.samples.shape[-2:]
    width = max(1, round(latent_width * scale_by))
    height = max(1, round(latent_height * scale_by))
    return upscale_latent(samples, width, height, upscale_method, "disabled")


# --------------------------------------------------------------------------- batches


@comfy_node("LatentFromBatch", display_name="Latent From Batch", category="latent/batch")
def latent_from_batch(
    samples: LatentType,
    batch_index: Int(min=0, max=63) = 0,
    length: Int(min=1, max=64) = 1,
) -> LatentType:
    """Take length latents from batch_index on (both clipped to the batch).

    The result remembers which items they were, so a sampler gives them the noise they
    would have had in the whole batch (a seed reproduces one image of a batch).
    """
    return latent_tools.from_batch(samples, batch_index, length)


@comfy_node("RepeatLatentBatch", display_name="Repeat Latent Batch", category="latent/batch")
def repeat_latent_batch(samples: LatentType, amount: Int(min=1, max=64) = 1) -> LatentType:
    """Repeat the whole latent batch amount times.

    Items that came from LatentFromBatch get new batch positions after the originals', so
    each repeat is sampled with different noise.
    """
    return latent_tools.repeated(samples, amount)


NODES = [
    empty_latent_image,
    vae_decode_comfy,
    vae_encode_comfy,
    vae_decode_tiled,
    vae_encode_tiled,
    latent_upscale,
    latent_upscale_by,
    latent_from_batch,
    repeat_latent_batch,
]
