"""ComfyUI's InstructPix2Pix class type, InstructPixToPixConditioning, on graphflow's
InstructPix2Pix conditioning (``gf_diffusion.ip2p``).

As ComfyUI: the image is cut to multiples of 8 (centred), encoded with the VAE, and its
latent put on every entry of both prompts (ComfyUI's ``concat_latent_image``; graphflow's
``ConditioningEntry.concat_latent``, unscaled, which is what ComfyUI's SD 1.x InstructPix2Pix
model feeds its UNet); the latent output is all zeros of the image latent's shape. KSampler
then runs the checkpoint with plain cfg, both prompts carrying the image (ComfyUI's
behaviour); graphflow's ``diffusion.instruct_pix2pix_sampler`` adds the image guidance
scale of diffusers' pipeline.
"""

from __future__ import annotations

from gf_diffusion.ip2p import image_latent, with_image
from gf_diffusion.types import Conditioning, Vae
from gf_diffusion.types import Latent as LatentType
from graphflow import Image, NodeContext, Outputs

from .names import comfy_node
from .nodes_latent import crop_to_factor, whole_then_tiled

COMFY_BLOCK = 8  # ComfyUI cuts the image to multiples of 8 whatever the VAE


@comfy_node(
    "InstructPixToPixConditioning",
    display_name=None,
    category="conditioning/instructpix2pix",
    output_names=("positive", "negative", "latent"),
)
def instruct_pix_to_pix_conditioning(
    positive: Conditioning,
    negative: Conditioning,
    vae: Vae,
    pixels: Image,
    ctx: NodeContext = None,
) -> Outputs(positive=Conditioning, negative=Conditioning, latent=LatentType):
    """Attach the image to edit to both prompts, for an InstructPix2Pix checkpoint.

    The image (cut to multiples of 8, centred) is encoded with the VAE; its latent goes on
    every entry of both prompts and latent is an empty latent of its size, to sample with
    KSampler (plain cfg, as ComfyUI) or graphflow's InstructPix2Pix sampler (with an image
    guidance scale).
    """
    pixels = crop_to_factor(pixels, COMFY_BLOCK)
    if min(pixels.shape[1:3]) == 0:
        raise ValueError(f"the image is smaller than {COMFY_BLOCK} pixels on a side")
    concat, empty = whole_then_tiled(lambda tiling: image_latent(vae, pixels, ctx, tiling))
    return with_image(positive, concat), with_image(negative, concat), empty


NODES = [instruct_pix_to_pix_conditioning]
