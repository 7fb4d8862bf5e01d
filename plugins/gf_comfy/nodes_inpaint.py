"""ComfyUI's inpainting class types on graphflow's inpainting code (gf_diffusion/inpaint.py):
VAEEncodeForInpaint, SetLatentNoiseMask and InpaintModelConditioning.

As in ComfyUI, a mask of another size than the image is resized to it (bilinear) and a
latent noise mask of any size is accepted (the samplers resize it); graphflow's own nodes
refuse mismatched sizes instead.
"""

from __future__ import annotations

from gf_diffusion.inpaint import attach_noise_mask, encode_for_inpaint, inpaint_conditioning_values
from gf_diffusion.types import Conditioning as ConditioningType
from gf_diffusion.types import Latent as LatentType
from gf_diffusion.types import Vae
from graphflow import Boolean, Image, Int, Mask, NodeContext, Outputs

from .names import ComfyInput, comfy_node

NOISE_MASK_TIP = (
    "Add a noise mask to the latent so sampling will only happen within the mask. Might "
    "improve results or completely break things depending on the model."
)


@comfy_node(
    "VAEEncodeForInpaint", display_name="VAE Encode (for Inpainting)", category="latent/inpaint"
)
def vae_encode_for_inpaint(
    pixels: Image,
    vae: Vae,
    mask: Mask,
    grow_mask_by: Int(min=0, max=64) = 6,
    ctx: NodeContext = None,
) -> LatentType:
    """Encode an image with its masked pixels made 0.5 grey; the mask, grown by
    grow_mask_by pixels, becomes the latent's noise mask (sample it at denoise 1.0)."""
    return encode_for_inpaint(vae, pixels, mask, grow_mask_by, resize=True, ctx=ctx)


@comfy_node("SetLatentNoiseMask", display_name="Set Latent Noise Mask", category="latent/inpaint")
def set_latent_noise_mask(samples: LatentType, mask: Mask) -> LatentType:
    """Attach a mask to latents: samplers only change them where the mask is 1."""
    return attach_noise_mask(samples, mask, strict=False)


@comfy_node(
    "InpaintModelConditioning",
    display_name="InpaintModelConditioning",
    category="conditioning/inpaint",
    inputs={"noise_mask": ComfyInput(tooltip=NOISE_MASK_TIP)},
    output_names=("positive", "negative", "latent"),
)
def inpaint_model_conditioning(
    positive: ConditioningType,
    negative: ConditioningType,
    vae: Vae,
    pixels: Image,
    mask: Mask,
    noise_mask: Boolean = True,
    ctx: NodeContext = None,
) -> Outputs(positive=ConditioningType, negative=ConditioningType, latent=LatentType):
    """Conditioning for inpainting models: both prompts carry the mask and the latent of the
    image with its masked pixels grey (the model's extra input channels); the latent is the
    whole image's, with the mask as its noise mask when noise_mask is on."""
    return inpaint_conditioning_values(
        positive, negative, vae, pixels, mask, noise_mask, resize=True, ctx=ctx
    )


NODES = [vae_encode_for_inpaint, set_latent_noise_mask, inpaint_model_conditioning]
