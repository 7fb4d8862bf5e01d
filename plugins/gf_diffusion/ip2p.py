"""InstructPix2Pix: edit an image by an instruction ("make it snowy").

An InstructPix2Pix checkpoint's UNet takes 8 channels: the noisy latent and the latent of
the image being edited (SD 1.x: the VAE posterior's mode, *not* multiplied by the scaling
factor, which is how the model was trained and how diffusers and ComfyUI feed it). The
conditioning node puts that latent on every prompt entry (``ConditioningEntry.concat_latent``;
``unet_call.forward`` appends it) and makes an empty latent of the image's size. The sampler
reproduces diffusers' ``StableDiffusionInstructPix2PixPipeline`` step for step: one batched
model call on [text + image, negative + image, negative + no image] and

    ε = ε_uncond + g·(ε_text − ε_image) + ig·(ε_image − ε_uncond)

with g the text guidance scale and ig the image guidance scale (how closely the result keeps
to the image). Any other sampler (``diffusion.sampler``, ComfyUI's KSampler) also runs such a
checkpoint with plain cfg when both prompts carry the image, as ComfyUI does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from graphflow import Float, Image, Int, NodeContext, Outputs, node
from graphflow.runtime.handles import compute_device

from . import regions, unet_call
from .latents import vae_geometry
from .sampler import PREVIEW_EVERY, _preview, _same_length, _stacked, _step_kwargs
from .types import Conditioning as ConditioningType
from .types import Latent as LatentType
from .types import Model, Scheduler, Vae
from .unet_call import StepInfo
from .vae import vae_encode
from .values import Conditioning, Latent

IP2P_CHANNELS = 8


def image_latent(vae, image, ctx: NodeContext | None, tiling: str = "auto") -> tuple[Any, Latent]:
    """(the image's latent as an InstructPix2Pix UNet takes it, an empty latent of its size).

    The first is the VAE posterior's mode, unscaled (B, C, h, w); the second is an all-zero
    :class:`Latent` in the VAE's geometry, to be sampled. ``tiling``: as ``diffusion.vae_encode``.
    """
    import torch

    encoded = vae_encode.function(
        vae=vae, image=image[..., :3], mode="sample", tiling=tiling, tile_size=512, ctx=ctx
    )
    concat = encoded.posterior.mode()
    empty = replace(encoded, samples=torch.zeros_like(encoded.samples), posterior=None)
    return concat, empty


def with_image(conditioning: Conditioning, concat) -> Conditioning:
    """A copy of ``conditioning`` whose every entry carries ``concat`` as its image latent."""
    return Conditioning([replace(e, concat_latent=concat) for e in conditioning.entries])


@node(
    "diffusion.instruct_pix2pix_conditioning",
    category="diffusion/conditioning",
    display_name="InstructPix2Pix Conditioning",
)
def instruct_pix2pix_conditioning(
    positive: ConditioningType,
    negative: ConditioningType,
    vae: Vae,
    image: Image,
    ctx: NodeContext = None,
) -> Outputs(positive=ConditioningType, negative=ConditioningType, latent=LatentType):
    """Attach the image to edit to both prompts, for an InstructPix2Pix checkpoint.

    The image is encoded with the VAE (its posterior's mode, unscaled, as the model takes
    it); latent is an empty latent of the image's size to sample from. Sides must be
    multiples of the VAE's downscale factor (8 for SD).
    """
    factor = vae_geometry(vae)[0]
    height, width = image.shape[1:3]
    if height % factor or width % factor:
        raise ValueError(
            f"the image is {width}×{height}: its sides must be multiples of {factor} for "
            "this VAE (crop or resize it first)"
        )
    concat, empty = image_latent(vae, image, ctx)
    return with_image(positive, concat), with_image(negative, concat), empty


def check_ip2p_model(unet) -> None:
    """Raise a ValueError naming what to use when ``unet`` is not an SD InstructPix2Pix UNet."""
    channels = int(unet.config.in_channels)
    if channels != IP2P_CHANNELS:
        kind = "an inpainting model" if channels == 9 else "not an InstructPix2Pix checkpoint"
        raise ValueError(
            f"this model's UNet takes {channels} input channels ({kind}); the InstructPix2Pix "
            f"sampler needs an InstructPix2Pix checkpoint (8 channels): use diffusion.sampler "
            "for other models"
        )
    if getattr(unet.config, "addition_embed_type", None) == "text_time":
        raise ValueError("SDXL InstructPix2Pix checkpoints are not supported by this sampler")


def _image_entries(positive: Conditioning, negative: Conditioning, samples) -> tuple[list, list]:
    """The prompt entries with their image latents checked against the latent to sample.

    Every positive entry must carry one; a negative entry without one takes the first
    positive entry's (the pipeline's negative + image prediction).
    """
    if not positive.entries or not negative.entries:
        raise ValueError("both the positive and the negative conditioning need a prompt")
    if any(e.concat_latent is None for e in positive.entries):
        raise ValueError(
            "the positive conditioning carries no image to edit: pass the prompts through "
            "diffusion.instruct_pix2pix_conditioning (or ComfyUI's InstructPixToPixConditioning)"
        )
    fallback = positive.entries[0].concat_latent
    negatives = [
        e if e.concat_latent is not None else replace(e, concat_latent=fallback)
        for e in negative.entries
    ]
    for entry in [*positive.entries, *negatives]:
        concat = entry.concat_latent
        batch_ok = concat.shape[0] in (1, samples.shape[0])
        if concat.shape[2:] != samples.shape[2:] or not batch_ok:
            raise ValueError(
                f"the image latent is {tuple(concat.shape)} but the latent to sample is "
                f"{tuple(samples.shape)}: sample the latent that "
                "diffusion.instruct_pix2pix_conditioning made for this image"
            )
    return list(positive.entries), negatives


def _groups(positive, negative, samples, guided: bool):
    """(entries in batch order, group sizes): [text+image, negative+image, negative+zeros]
    when guided, else [text+image] only (as the pipeline does without guidance)."""
    pos, neg = _image_entries(positive, negative, samples)
    if not guided:
        return pos, [len(pos)]
    without = [replace(e, concat_latent=None) for e in neg]
    return [*pos, *neg, *without], [len(pos), len(neg), len(neg)]


def _initial_noise(sched, samples, steps: int, generator):
    """(pure noise for the latent's shape, the timesteps), drawn as the pipeline draws it:
    after the scheduler's timesteps are set, from the CPU generator, times the scheduler's
    initial sigma."""
    from diffusers.utils.torch_utils import randn_tensor

    sched.set_timesteps(steps, device=samples.device)
    noise = randn_tensor(
        samples.shape, generator=generator, device=samples.device, dtype=samples.dtype
    )
    return noise * sched.init_noise_sigma, sched.timesteps


def _denoise(unet, sched, latents, timesteps, entries, sizes, scales, step_kwargs, ctx, down):
    """One batched model call per step and the pipeline's three-way guidance."""
    import torch

    batch = latents.shape[0]
    groups = len(entries)
    device, dtype = latents.device, latents.dtype
    stacked, _ = _stacked(Conditioning(entries), batch, device, dtype)
    states = torch.cat(_same_length(stacked))
    image_size = (latents.shape[-2] * down, latents.shape[-1] * down)
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            model_in = torch.cat([latents] * groups) if groups > 1 else latents
            model_in = sched.scale_model_input(model_in, t)
            step = StepInfo(step_index=i, step_count=len(timesteps), image_size=image_size)
            out = unet_call.forward(unet, model_in, t, states, None, entries, batch, step)
            chunks = list(out.chunk(groups))
            parts, start = [], 0
            for size in sizes:
                group = slice(start, start + size)
                parts.append(regions.combine(chunks[group], entries[group], step))
                start += size
            if len(parts) == 3:
                text, image, uncond = parts
                g, ig = scales
                prediction = uncond + g * (text - image) + ig * (image - uncond)
            else:
                prediction = parts[0]
            latents = sched.step(prediction, t, latents, **step_kwargs, return_dict=False)[0]
            if ctx is not None:
                if (i + 1) % PREVIEW_EVERY == 0 or i == len(timesteps) - 1:
                    ctx.preview(_preview(latents))
                ctx.progress(i + 1, len(timesteps))
    return latents


@node(
    "diffusion.instruct_pix2pix_sampler",
    category="diffusion/sampling",
    display_name="InstructPix2Pix Sampler",
)
def instruct_pix2pix_sampler(
    model: Model,
    positive: ConditioningType,
    negative: ConditioningType,
    latent: LatentType,
    scheduler: Scheduler,
    seed: Int(min=0, max=2**63 - 1) = 0,
    steps: Int(min=1, max=1000) = 20,
    guidance_scale: Float(0.0, 30.0, step=0.1) = 7.5,
    image_guidance_scale: Float(0.0, 30.0, step=0.05) = 1.5,
    ctx: NodeContext = None,
) -> LatentType:
    """Edit the image the prompts carry by the positive prompt's instruction.

    Needs an InstructPix2Pix checkpoint and the outputs of InstructPix2Pix Conditioning.
    ε = ε_uncond + guidance_scale·(ε_text − ε_image) + image_guidance_scale·(ε_image −
    ε_uncond): guidance_scale is how strongly the instruction is followed, image_guidance_scale
    how closely the result keeps to the image (1: not pulled towards it beyond the model's own
    prediction). Guidance is off when guidance_scale ≤ 1 or image_guidance_scale < 1, as in
    diffusers' pipeline, whose images this reproduces for the same seed.
    """
    import torch

    with model.on_device(compute_device(model, ctx)) as unet:
        check_ip2p_model(unet)
        device = unet.device
        dtype = positive.entries[0].embeds.dtype if positive.entries else torch.float32
        samples = latent.samples.to(device=device, dtype=dtype)
        expected = unet_call.latent_channels(unet)
        if samples.shape[1] != expected:
            raise ValueError(
                f"latent has {samples.shape[1]} channels but the model expects {expected}: "
                "use the latent of diffusion.instruct_pix2pix_conditioning"
            )
        guided = guidance_scale > 1.0 and image_guidance_scale >= 1.0
        entries, sizes = _groups(positive, negative, samples, guided)
        generator = torch.Generator("cpu").manual_seed(seed)
        sched = scheduler.__class__.from_config(scheduler.config)
        latents, timesteps = _initial_noise(sched, samples, steps, generator)
        step_kwargs = _step_kwargs(sched, generator, 0.0)
        scales = (guidance_scale, image_guidance_scale)
        latents = _denoise(
            unet, sched, latents, timesteps, entries, sizes, scales, step_kwargs, ctx,
            latent.downscale,
        )  # fmt: skip
    return latent.replaced(latents)


NODES = [instruct_pix2pix_conditioning, instruct_pix2pix_sampler]
