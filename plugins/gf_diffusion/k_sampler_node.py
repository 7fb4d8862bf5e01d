"""diffusion.k_sampler: graphflow's node for ComfyUI-style sampling in sigma space (the same
samplers, schedules, denoise rule and seeds as ComfyUI's KSampler; see k_sampling.py)."""

from __future__ import annotations

from graphflow import Choice, Float, Int, NodeContext, node
from graphflow.runtime.handles import compute_device

from .k_samplers import SAMPLER_NAMES
from .k_sampling import SAMPLERS, k_sample, model_sigmas_of
from .sampler import PREVIEW_EVERY, _preview
from .sigmas import SCHEDULER_NAMES, ksampler_sigmas
from .types import Conditioning as ConditioningType
from .types import Latent as LatentType
from .types import Model
from .unet_call import latent_channels

IMPLEMENTED = [name for name in SAMPLER_NAMES if name in SAMPLERS]


def step_reporter(ctx: NodeContext | None):
    """The per-step callback of a sampler node: interrupt check, progress, a preview of the
    predicted image every few steps (None without a context)."""
    if ctx is None:
        return None

    def report(i: int, total: int, x, denoised) -> None:
        ctx.check_interrupt()
        if (i + 1) % PREVIEW_EVERY == 0 or i == total - 1:
            ctx.preview(_preview(denoised))
        ctx.progress(i + 1, total)

    return report


def sample_latent(model, positive, negative, latent, sigmas, sampler, cfg, seed, add_noise, ctx):
    """Run ``sampler`` along ``sigmas`` with the MODEL on the run's device; returns the
    denoised samples (the input's when fewer than two sigmas)."""
    if sigmas is None or len(sigmas) < 2:
        return latent.samples
    with model.on_device(compute_device(model, ctx)) as unet:
        if latent.samples.shape[1] != latent_channels(unet):
            raise ValueError(
                f"latent has {latent.samples.shape[1]} channels but the model expects "
                f"{latent_channels(unet)}"
            )
        samples = k_sample(
            unet, model_sigmas_of(model), positive, negative, latent, sigmas, sampler=sampler,
            cfg=cfg, seed=seed, add_noise=add_noise, callback=step_reporter(ctx),
        )  # fmt: skip
    return samples.to(latent.samples.dtype)


@node("diffusion.k_sampler", category="diffusion/sampling", display_name="K-Sampler")
def k_sampler(
    model: Model,
    positive: ConditioningType,
    negative: ConditioningType,
    latent: LatentType,
    sampler: Choice(IMPLEMENTED) = "euler",
    scheduler: Choice(list(SCHEDULER_NAMES)) = "normal",
    seed: Int(min=0, max=2**64 - 1) = 0,
    steps: Int(min=1, max=10000) = 20,
    cfg: Float(0.0, 100.0, step=0.1) = 8.0,
    denoise: Float(0.0, 1.0, step=0.01) = 1.0,
    ctx: NodeContext = None,
) -> LatentType:
    """Denoise latents with ComfyUI's samplers and schedules, in sigma space.

    The same seed, sampler, scheduler, steps, cfg and denoise give the same latents as
    ComfyUI's KSampler (its CPU noise for seeds up to 2^64−1; denoise < 1 runs the last
    ``steps`` steps of an ``int(steps / denoise)``-step schedule). The MODEL must come from a
    checkpoint loader (its scheduler config gives the noise levels).
    """
    ms = model_sigmas_of(model)
    sigmas = ksampler_sigmas(ms, scheduler, steps, sampler, denoise)
    samples = sample_latent(
        model, positive, negative, latent, sigmas, sampler, cfg, seed, True, ctx
    )
    return latent.replaced(samples)


NODES = [k_sampler]
