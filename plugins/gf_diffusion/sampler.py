"""The sampler: classifier-free guided denoising with any diffusers scheduler.

The loop follows diffusers' Stable Diffusion pipelines step for step (same noise draws from
the same CPU generator, uncond and cond batched into one model call, the same scheduler
calls), so a graph gives the pipeline's image for the same seed. On top: denoise strength
(img2img), Imagen-style dynamic thresholding, weighted combined prompts, per-step progress,
interrupt checks and cheap latent previews.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from graphflow import Float, Int, NodeContext, node
from graphflow.runtime.handles import compute_device

from . import inpaint_concat, regions, unet_call
from .types import Conditioning as ConditioningType
from .types import Latent as LatentType
from .types import Model, Scheduler
from .unet_call import StepInfo
from .values import Conditioning

PREVIEW_EVERY = 5


def _stacked(conditioning: Conditioning, batch: int, device, dtype):
    """Embeddings of every entry repeated for the batch, pooled likewise (or None)."""
    embeds = [
        e.embeds.to(device=device, dtype=dtype).repeat(batch, 1, 1) for e in conditioning.entries
    ]
    pooled = None
    if all(e.pooled is not None for e in conditioning.entries):
        pooled = [
            e.pooled.to(device=device, dtype=dtype).repeat(batch, 1) for e in conditioning.entries
        ]
    return embeds, pooled


def _same_length(embeds: list) -> list:
    """Prompts of different token lengths (long prompts are 77·k tokens) repeated to their
    least common multiple, as ComfyUI does: attention over a sequence repeated whole gives
    the same result, so each prompt means what it meant alone."""
    import math

    lengths = {e.shape[1] for e in embeds}
    if len(lengths) == 1:
        return embeds
    target = math.lcm(*lengths)
    return [e.repeat(1, target // e.shape[1], 1) for e in embeds]


def _alpha_bar(scheduler, t) -> float | None:
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        return None
    index = round(float(t))
    return float(alphas[min(max(index, 0), len(alphas) - 1)])


def dynamic_threshold(
    prediction, model_input, alpha_bar: float, percentile: float, prediction_type: str
):
    """Imagen's dynamic thresholding on the predicted x0, returned as the same kind of output.

    x0 is clipped per sample to the ``percentile`` of its absolute values (at least 1) and
    rescaled into [-1, 1]; the prediction is then re-expressed from the clipped x0.
    """
    import torch

    a, s = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
    if prediction_type == "v_prediction":
        x0 = a * model_input - s * prediction
    else:
        x0 = (model_input - s * prediction) / a
    flat = x0.reshape(x0.shape[0], -1).abs().float()
    limit = torch.quantile(flat, percentile, dim=1).clamp(min=1.0).to(x0.dtype)
    limit = limit.view(-1, *([1] * (x0.dim() - 1)))
    x0 = x0.clamp(-limit, limit) / limit
    epsilon = (model_input - a * x0) / s
    if prediction_type == "v_prediction":
        return a * epsilon - s * x0
    return epsilon


def _preview(latents) -> Any:
    """A cheap RGB look at the first latent: its first three channels, normalised."""
    first = latents[0, :3].float()
    low, high = first.amin(), first.amax()
    return ((first - low) / (high - low + 1e-6)).permute(1, 2, 0).cpu()


def _step_kwargs(scheduler, generator, eta: float) -> dict:
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


def _sdxl_added_kwargs(model, pooled_batches, latents, downscale: int) -> dict | None:
    """SDXL's extra inputs: pooled text embedding and (original, crop, target) size ids."""
    import torch

    if getattr(model.config, "addition_embed_type", None) != "text_time":
        return None
    if pooled_batches is None:
        raise ValueError("this is an SDXL model: its conditioning needs the pooled embedding")
    height, width = latents.shape[-2] * downscale, latents.shape[-1] * downscale
    time_ids = torch.tensor(
        [[height, width, 0, 0, height, width]], dtype=latents.dtype, device=latents.device
    )
    text_embeds = torch.cat(pooled_batches)
    return {"text_embeds": text_embeds, "time_ids": time_ids.repeat(text_embeds.shape[0], 1)}


@dataclass
class _Guidance:
    """The prompts as the denoising loop feeds them to the model, and how to combine them."""

    encoder_states: Any  # every prompt's embeddings, batched (negatives first when guided)
    groups: int  # how many prompts the batch holds
    n_neg: int
    guided: bool
    pos_entries: list  # the ConditioningEntry objects of each prompt, in batch order
    neg_entries: list
    added: dict | None  # SDXL's added conditioning

    @property
    def entries(self) -> list:
        """Every entry whose rows the batched model input holds, in order."""
        return [*self.neg_entries, *self.pos_entries] if self.guided else self.pos_entries


def _guidance(unet, positive, negative, latents, downscale: int, cfg: float, dtype) -> _Guidance:
    """Stack the prompts for one batched model call per step (uncond first when guided)."""
    import torch

    batch, device = latents.shape[0], latents.device
    guided = cfg > 1.0 and getattr(unet.config, "time_cond_proj_dim", None) is None
    pos_embeds, pos_pooled = _stacked(positive, batch, device, dtype)
    neg_embeds, neg_pooled = _stacked(negative, batch, device, dtype)
    groups = [*neg_embeds, *pos_embeds] if guided else pos_embeds
    pooled = None
    if pos_pooled is not None:
        pooled = [*neg_pooled, *pos_pooled] if guided and neg_pooled is not None else pos_pooled
    added = _sdxl_added_kwargs(unet, pooled, latents, downscale)
    return _Guidance(
        torch.cat(_same_length(groups)),
        len(groups),
        len(neg_embeds),
        guided,
        list(positive.entries),
        list(negative.entries),
        added,
    )


@dataclass
class _Inpainting:
    """What the latent noise mask needs each step (diffusers' inpainting pipeline with a
    4-channel UNet): outside ``mask`` the latent is the original ``init`` noised with
    ``noise`` to the next timestep, and ``init`` itself after the last step."""

    mask: Any  # (B, 1, h, w) on the latents' device, 1 = repaint
    init: Any  # the clean latent (the posterior sample when the latent carries one)
    noise: Any  # the initial noise draw

    def blend(self, sched, latents, timesteps, index: int):
        """``latents`` after step ``index`` with the unmasked region put back."""
        if index < len(timesteps) - 1:
            original = sched.add_noise(self.init, self.noise, timesteps[index + 1].reshape(1))
        else:
            original = self.init
        return (1 - self.mask) * original + self.mask * latents


def sampler_mask(noise_mask, samples):
    """``Latent.noise_mask`` as the native sampler uses it: (B, 1, h, w) at the latent's size,
    resized like diffusers' inpainting pipeline (nearest) and broadcast over the batch."""
    planes = inpaint_concat.as_mask_planes(noise_mask)
    planes = inpaint_concat.resize_planes(planes, samples.shape[-2:], "nearest")
    planes = inpaint_concat.fit_batch(planes, samples.shape[0], "noise mask")
    return planes.to(device=samples.device, dtype=samples.dtype)


def _drawn_init(latent, samples, generator, device, dtype):
    """The clean starting latent: a posterior sample drawn with the sampler's generator (as
    diffusers' img2img and inpainting pipelines draw it), else the samples themselves."""
    if latent.posterior is None:
        return samples
    drawn = latent.posterior.sample(generator)
    return ((drawn - latent.shift_factor) * latent.scaling_factor).to(device, dtype)


def _noise(latent, shape, generator, device, dtype):
    """The starting noise. A latent taken out of a batch (``batch_index``, as Latent From
    Batch leaves it) gets the noise its items had in the whole batch: one draw for items
    0..max(index), then the items it holds, so sampling one item alone reproduces it."""
    from diffusers.utils.torch_utils import randn_tensor

    index = latent.batch_index
    if not index or len(index) != shape[0]:
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    whole = randn_tensor(
        (max(index) + 1, *shape[1:]), generator=generator, device=device, dtype=dtype
    )
    return whole[list(index)]


def _start(sched, latent, samples, steps: int, denoise: float, generator, device, dtype):
    """(initial latents, timesteps to run, inpainting state or None); latents are None when
    nothing is left to do."""
    masked = latent.noise_mask is not None
    sched.set_timesteps(steps, device=device)
    if denoise >= 1.0:
        init = _drawn_init(latent, samples, generator, device, dtype) if masked else None
        noise = _noise(latent, samples.shape, generator, device, dtype)
        inpainting = (
            _Inpainting(sampler_mask(latent.noise_mask, samples), init, noise) if masked else None
        )
        return noise * sched.init_noise_sigma, sched.timesteps, inpainting
    start = steps - min(int(steps * denoise), steps)
    timesteps = sched.timesteps[start * sched.order :]
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(start * sched.order)
    if len(timesteps) == 0:
        return None, timesteps, None
    init = _drawn_init(latent, samples, generator, device, dtype)
    noise = _noise(latent, init.shape, generator, device, dtype)
    inpainting = (
        _Inpainting(sampler_mask(latent.noise_mask, samples), init, noise) if masked else None
    )
    latents = sched.add_noise(init, noise, timesteps[:1].repeat(samples.shape[0]))
    return latents, timesteps, inpainting


def _denoise(
    unet, sched, latents, timesteps, guide: _Guidance, cfg, percentile, step_kwargs, ctx,
    downscale: int = 8, inpainting: _Inpainting | None = None,
):  # fmt: skip
    """The denoising loop: one batched model call and one scheduler step per timestep
    (then, with a noise mask, the unmasked region put back)."""
    import torch

    batch = latents.shape[0]
    prediction_type = sched.config.get("prediction_type", "epsilon")
    image_size = (latents.shape[-2] * downscale, latents.shape[-1] * downscale)
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            model_input = torch.cat([latents] * guide.groups) if guide.groups > 1 else latents
            model_input = sched.scale_model_input(model_input, t)
            step = StepInfo(
                step_index=i, step_count=len(timesteps), image_size=image_size,
                latent=None if inpainting is None else inpainting.init,
                noise_mask=None if inpainting is None else inpainting.mask,
            )  # fmt: skip
            out = unet_call.forward(
                unet, model_input, t, guide.encoder_states, guide.added, guide.entries,
                batch, step,
            )  # fmt: skip
            chunks = list(out.chunk(guide.groups))
            if guide.guided:
                uncond = regions.combine(chunks[: guide.n_neg], guide.neg_entries, step)
                cond = regions.combine(chunks[guide.n_neg :], guide.pos_entries, step)
                prediction = uncond + cfg * (cond - uncond)
            else:
                prediction = regions.combine(chunks, guide.pos_entries, step)
            if percentile > 0:
                alpha_bar = _alpha_bar(sched, t)
                if alpha_bar is not None:
                    prediction = dynamic_threshold(
                        prediction, model_input[:batch], alpha_bar, percentile, prediction_type
                    )
            latents = sched.step(prediction, t, latents, **step_kwargs, return_dict=False)[0]
            if inpainting is not None:
                latents = inpainting.blend(sched, latents, timesteps, i)
            if ctx is not None:
                if (i + 1) % PREVIEW_EVERY == 0 or i == len(timesteps) - 1:
                    ctx.preview(_preview(latents))
                ctx.progress(i + 1, len(timesteps))
    return latents


@node("diffusion.sampler", category="diffusion/sampling", display_name="Sampler")
def sampler(
    model: Model,
    positive: ConditioningType,
    negative: ConditioningType,
    latent: LatentType,
    scheduler: Scheduler,
    seed: Int(min=0, max=2**63 - 1) = 0,
    steps: Int(min=1, max=1000) = 20,
    cfg: Float(0.0, 30.0, step=0.1) = 7.5,
    denoise: Float(0.0, 1.0, step=0.01) = 1.0,
    dynamic_threshold_percentile: Float(0.0, 1.0, step=0.005) = 0.0,
    eta: Float(0.0, 1.0, step=0.01) = 0.0,
    ctx: NodeContext = None,
) -> LatentType:
    """Denoise latents under the prompt's guidance (the heart of text-to-image).

    cfg is the classifier-free guidance scale (ε = ε_uncond + cfg·(ε_cond − ε_uncond); 1 turns
    guidance off). denoise < 1 starts from the input latent at the matching step (img2img).
    dynamic_threshold_percentile > 0 clips the predicted image at that percentile (Imagen),
    which keeps high cfg from burning colours. eta adds noise for DDIM. A latent with a noise
    mask (Set Latent Noise Mask, VAE Encode for Inpainting) is repainted only where the mask
    is 1: elsewhere it is put back after every step, noised to the next one (diffusers'
    inpainting pipeline), and is the original after the last. The same seed gives the same
    image on the same device. The model runs on the run's device (moved back there
    if it was offloaded), with its patches applied.
    """
    import torch

    with model.on_device(compute_device(model, ctx)) as unet:
        device = unet.device
        dtype = positive.entries[0].embeds.dtype
        generator = torch.Generator("cpu").manual_seed(seed)
        sched = scheduler.__class__.from_config(scheduler.config)
        samples = latent.samples.to(device=device, dtype=dtype)
        expected = unet_call.latent_channels(unet)
        if samples.shape[1] != expected:
            raise ValueError(
                f"latent has {samples.shape[1]} channels but the model expects {expected}: "
                "make the empty latent with this checkpoint's VAE"
            )
        latents, timesteps, inpainting = _start(
            sched, latent, samples, steps, denoise, generator, device, dtype
        )
        if latents is None:
            return latent.replaced(samples)
        guide = _guidance(unet, positive, negative, latents, latent.downscale, cfg, dtype)
        step_kwargs = _step_kwargs(sched, generator, eta)
        latents = _denoise(
            unet,
            sched,
            latents,
            timesteps,
            guide,
            cfg,
            dynamic_threshold_percentile,
            step_kwargs,
            ctx,
            latent.downscale,
            inpainting,
        )
    return latent.replaced(latents)


NODES = [sampler]
