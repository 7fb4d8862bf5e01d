"""Inpainting nodes: repaint the masked part of an image, three ways.

- **Latent noise mask** (``diffusion.set_latent_mask``, any checkpoint): the sampler denoises
  only where the mask is 1 and puts the original back elsewhere after every step.
- **VAE Encode for Inpaint** (``diffusion.vae_encode_inpaint``): the masked pixels are made
  0.5 grey before encoding and the mask, grown, becomes the noise mask; sample at denoise 1.
- **Inpaint Conditioning** (``diffusion.inpaint_conditioning``, for 9-channel inpainting
  checkpoints): the prompts carry the mask and the masked image's latent, which the model
  takes as extra input channels (``inpaint_concat.py``).

The tensor work follows ComfyUI's VAEEncodeForInpaint / InpaintModelConditioning (sides cut
to multiples of the VAE's factor, centred; grey = (x − 0.5)·(1 − round(m)) + 0.5; the mask
grown by a box kernel). graphflow's nodes want the mask at the image's size (a mismatch is an
error naming both); ComfyUI's class types (gf_comfy/nodes_inpaint.py) resize it, as ComfyUI.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from graphflow import Boolean, Image, Int, Mask, NodeContext, Outputs, node

from .inpaint_concat import as_mask_planes, resize_planes
from .latents import vae_geometry
from .types import Conditioning as ConditioningType
from .types import Latent as LatentType
from .types import Vae
from .values import Conditioning, Latent

CATEGORY = "diffusion/inpaint"


def _size(height: int, width: int) -> str:
    return f"{width}×{height}"


def mask_for_pixels(mask: Any, pixels: Any, resize: bool) -> Any:
    """The mask as (B, 1, H, W) for IMAGE ``pixels`` (B, H, W, C): resized to them
    (bilinear, as ComfyUI) when ``resize``, else it must be their size."""
    planes = as_mask_planes(mask, "mask").to(pixels.device)
    height, width = pixels.shape[1:3]
    if resize:
        planes = resize_planes(planes, (height, width), "bilinear")
    elif tuple(planes.shape[-2:]) != (height, width):
        raise ValueError(
            f"mask is {_size(*planes.shape[-2:])} but the image is {_size(height, width)}; "
            "resize one of them first (ComfyUI's class type resizes the mask)"
        )
    if planes.shape[0] not in (1, pixels.shape[0]):
        raise ValueError(
            f"mask batch of {planes.shape[0]} does not fit image batch of {pixels.shape[0]}; "
            "give one mask for all images or one per image"
        )
    return planes


def crop_to_factor(pixels: Any, mask: Any, factor: int) -> tuple[Any, Any]:
    """IMAGE (B, H, W, C) and mask (B, 1, H, W) cut to multiples of ``factor`` per side,
    centred as ComfyUI cuts (offset = half the remainder, rounded down)."""
    height, width = pixels.shape[1:3]
    h, w = height // factor * factor, width // factor * factor
    if min(h, w) == 0:
        raise ValueError(
            f"the image ({_size(height, width)}) is smaller than the VAE's {factor}-pixel block"
        )
    top, left = (height % factor) // 2, (width % factor) // 2
    return pixels[:, top : top + h, left : left + w], mask[..., top : top + h, left : left + w]


def grey_masked(pixels: Any, mask: Any) -> Any:
    """RGB pixels with the masked ones (mask rounded to 0/1) set to 0.5 grey:
    (x − 0.5)·(1 − round(m)) + 0.5, as ComfyUI; other channels are dropped."""
    keep = (1.0 - mask.round()).permute(0, 2, 3, 1)
    return (pixels[..., :3] - 0.5) * keep + 0.5


def grow_mask(mask: Any, pixels: int) -> Any:
    """The mask rounded to 0/1 and grown by a ``pixels``×``pixels`` box (ComfyUI's
    grow_mask_by: a convolution with padding ⌈(n−1)/2⌉, clamped, cut back to size)."""
    import torch

    if pixels == 0:
        return mask.round()
    kernel = torch.ones((1, 1, pixels, pixels), dtype=mask.dtype, device=mask.device)
    padding = math.ceil((pixels - 1) / 2)
    grown = torch.nn.functional.conv2d(mask.round(), kernel, padding=padding).clamp(0, 1)
    return grown[..., : mask.shape[-2], : mask.shape[-1]].round()


def _encode(vae, pixels, ctx) -> Latent:
    """The VAE's mean latent of IMAGE ``pixels`` (deterministic, so outputs cache)."""
    from .vae import vae_encode

    return vae_encode.function(
        vae=vae, image=pixels, mode="mean", tiling="auto", tile_size=512, ctx=ctx
    )


def encode_for_inpaint(vae, pixels, mask, grow_mask_by: int, resize: bool, ctx=None) -> Latent:
    """ComfyUI's VAEEncodeForInpaint: the latent of the image with its masked pixels grey,
    carrying the mask grown by ``grow_mask_by`` pixels as its noise mask."""
    factor = vae_geometry(vae)[0]
    planes = mask_for_pixels(mask, pixels, resize)
    pixels, planes = crop_to_factor(pixels, planes, factor)
    latent = _encode(vae, grey_masked(pixels, planes), ctx)
    return replace(latent, noise_mask=grow_mask(planes, grow_mask_by))


def inpaint_conditioning_values(positive, negative, vae, pixels, mask, noise_mask: bool,
                                resize: bool, ctx=None):  # fmt: skip
    """ComfyUI's InpaintModelConditioning: (positive, negative, latent). Every prompt entry
    gets the mask (at the latent's size, rounded) and the grey-masked image's latent as its
    extra channels; the latent is the whole image's, with the mask as noise mask if asked."""
    factor = vae_geometry(vae)[0]
    planes = mask_for_pixels(mask, pixels, resize)
    pixels, planes = crop_to_factor(pixels, planes, factor)
    concat_latent = _encode(vae, grey_masked(pixels, planes), ctx).samples
    concat_mask = resize_planes(planes, concat_latent.shape[-2:], "bilinear").round()
    concat_mask = concat_mask.to(concat_latent.device)
    latent = _encode(vae, pixels[..., :3], ctx)
    if noise_mask:
        latent = replace(latent, noise_mask=planes)

    def carrying(conditioning: Conditioning) -> Conditioning:
        return Conditioning(
            [
                replace(e, concat_latent=concat_latent, concat_mask=concat_mask)
                for e in conditioning.entries
            ]
        )

    return carrying(positive), carrying(negative), latent


def attach_noise_mask(latent: Latent, mask: Any, strict: bool = True) -> Latent:
    """A copy of ``latent`` whose noise mask is ``mask`` (B|1, 1, H, W). ``strict``: the mask
    must be the latent's image size or its own size, and its batch 1 or the latent's."""
    planes = as_mask_planes(mask, "mask")
    if strict:
        batch, _, height, width = latent.samples.shape
        image = (height * latent.downscale, width * latent.downscale)
        if tuple(planes.shape[-2:]) not in (image, (height, width)):
            raise ValueError(
                f"mask is {_size(*planes.shape[-2:])} but the latent is for a "
                f"{_size(*image)} image ({_size(height, width)} latent pixels); resize the mask "
                "to one of these"
            )
        if planes.shape[0] not in (1, batch):
            raise ValueError(
                f"mask batch of {planes.shape[0]} does not fit latent batch of {batch}; give "
                "one mask for all or one per latent"
            )
    return replace(latent, noise_mask=planes)


@node("diffusion.set_latent_mask", category=CATEGORY, display_name="Set Latent Noise Mask")
def set_latent_mask(latent: LatentType, mask: Mask) -> LatentType:
    """Inpaint with any checkpoint: the sampler repaints only where the mask is 1 (soft
    values blend) and keeps the rest of the latent, re-noised to each step so the seam
    blends in. The mask is at the image's size (or the latent's); one mask serves a batch.
    Use denoise < 1 to keep the masked area's colours, 1 to repaint it from noise.
    """
    return attach_noise_mask(latent, mask)


@node("diffusion.vae_encode_inpaint", category=CATEGORY, display_name="VAE Encode for Inpaint")
def vae_encode_inpaint(
    pixels: Image,
    vae: Vae,
    mask: Mask,
    grow_mask_by: Int(min=0, max=64) = 6,
    ctx: NodeContext = None,
) -> LatentType:
    """Encode an image for repainting its masked area from scratch (sample at denoise 1).

    The masked pixels are made 0.5 grey first, so nothing of them survives; the mask is
    grown by grow_mask_by pixels (a square) so the seam is repainted too, and becomes the
    latent's noise mask. Sides are cut to multiples of the VAE's factor (centred). The mask
    must be the image's size.
    """
    return encode_for_inpaint(vae, pixels, mask, grow_mask_by, resize=False, ctx=ctx)


@node("diffusion.inpaint_conditioning", category=CATEGORY, display_name="Inpaint Conditioning")
def inpaint_conditioning(
    positive: ConditioningType,
    negative: ConditioningType,
    vae: Vae,
    pixels: Image,
    mask: Mask,
    noise_mask: Boolean = True,
    ctx: NodeContext = None,
) -> Outputs(positive=ConditioningType, negative=ConditioningType, latent=LatentType):
    """Prompts and latent for an inpainting checkpoint (9-channel UNet, e.g. SD 1.5
    inpainting): both prompts carry the mask and the latent of the image with its masked
    pixels grey, which the model sees beside the latent it denoises.

    latent is the whole image's; noise_mask also makes the sampler keep the unmasked area
    exactly (turn it off for diffusers' inpainting pipeline, which does not). Works with
    other checkpoints too, where it is a latent noise mask. The mask must be the image's size.
    """
    return inpaint_conditioning_values(
        positive, negative, vae, pixels, mask, noise_mask, resize=False, ctx=ctx
    )


NODES = [set_latent_mask, vae_encode_inpaint, inpaint_conditioning]
