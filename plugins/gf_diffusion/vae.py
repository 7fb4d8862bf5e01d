"""VAE nodes: latents to images (tiled for large images) and images to latents.

The VAE input is a handle: each node takes the module on the run's device for its call.
"""

from __future__ import annotations

from contextlib import contextmanager

from graphflow import Choice, Image, Int, NodeContext, node
from graphflow.runtime.handles import compute_device

from .latents import vae_geometry
from .types import Latent as LatentType
from .types import Vae
from .values import Latent, register_posterior_codec

TILING = ["auto", "on", "off"]


@contextmanager
def _tiling(vae, factor: int, mode: str, tile_size: int, image_side: int):
    """Use diffusers' tiled VAE (overlapping tiles, blended seams) for this call only."""
    use = mode == "on" or (mode == "auto" and image_side > tile_size)
    saved = (vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size)
    if use:
        vae.use_tiling = True
        vae.tile_sample_min_size = tile_size
        vae.tile_latent_min_size = tile_size // factor
    else:
        vae.use_tiling = False
    try:
        yield
    finally:
        vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size = saved


@node("diffusion.vae_decode", category="diffusion/latent", display_name="VAE Decode")
def vae_decode(
    vae: Vae,
    latent: LatentType,
    tiling: Choice(TILING) = "auto",
    tile_size: Int(min=32, max=4096, step=8) = 512,
    ctx: NodeContext = None,
) -> Image:
    """Turn latents into images (B, H, W, C in 0..1).

    Images larger than tile_size are decoded in overlapping tiles with blended seams, so
    memory stays bounded ("auto"); "on"/"off" force it.
    """
    import torch

    factor, _, scaling, shift = vae_geometry(vae)
    with vae.on_device(compute_device(vae, ctx)) as module:
        z = latent.samples.to(device=module.device, dtype=module.dtype) / scaling + shift
        side = max(z.shape[-2:]) * factor
        with torch.no_grad(), _tiling(module, factor, tiling, tile_size, side):
            decoded = module.decode(z, return_dict=False)[0]
    return (decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float()


@node("diffusion.vae_encode", category="diffusion/latent", display_name="VAE Encode")
def vae_encode(
    vae: Vae,
    image: Image,
    mode: Choice(["sample", "mean"]) = "sample",
    tiling: Choice(TILING) = "auto",
    tile_size: Int(min=32, max=4096, step=8) = 512,
    ctx: NodeContext = None,
) -> LatentType:
    """Turn images into latents (for img2img).

    "sample" keeps the VAE's distribution so the sampler draws from it with its own seed (as
    diffusers' img2img does); "mean" uses its mean, deterministic whatever the seed.
    """
    import torch

    factor, _, scaling, shift = vae_geometry(vae)
    with vae.on_device(compute_device(vae, ctx)) as module:
        x = image.permute(0, 3, 1, 2).to(device=module.device, dtype=module.dtype) * 2 - 1
        with torch.no_grad(), _tiling(module, factor, tiling, tile_size, max(x.shape[-2:])):
            posterior = module.encode(x).latent_dist
    samples = (posterior.mode() - shift) * scaling
    register_posterior_codec(posterior)
    return Latent(samples, posterior if mode == "sample" else None, scaling, shift, factor)


NODES = [vae_decode, vae_encode]
