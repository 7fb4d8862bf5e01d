"""ComfyUI's sampler class types, KSampler and KSamplerAdvanced, with ComfyUI's semantics:
sigma-space samplers (gf_diffusion/k_samplers.py), ComfyUI's nine schedulers and denoise /
start-end rules (gf_diffusion/sigmas.py) and its CPU initial noise for a seed up to 2^64−1.

The MODEL's diffusers scheduler config (``model.extras["scheduler"]``) gives the betas and
the prediction type; the latent stays in graphflow's scaled space, where the same update
rules hold (noise is added in that space, as ComfyUI's model does after scaling).
"""

from __future__ import annotations

from gf_diffusion.k_sampler_node import sample_latent
from gf_diffusion.k_samplers import SAMPLER_NAMES
from gf_diffusion.k_sampling import model_sigmas_of, unsupported_sampler
from gf_diffusion.sigmas import SCHEDULER_NAMES, advanced_cut, ksampler_sigmas, sampler_sigmas
from gf_diffusion.types import Conditioning, Model
from gf_diffusion.types import Latent as LatentType
from graphflow import Choice, Float, Int, NodeContext

from .names import ComfyInput, comfy_node
from .nodes_latent import fit_empty_latent, with_samples

MAX_SEED = 2**64 - 1
SEED = ComfyInput(
    control_after_generate=True, tooltip="The random seed used for creating the noise."
)
CFG = ComfyInput(step=0.1, round=0.01)


def _run(model, positive, negative, latent, sigmas_for, sampler_name, cfg, seed, add_noise, ctx):
    """Sample with the MODEL on the run's device; ``sigmas_for(model_sigmas)`` gives the
    schedule (None: nothing to run, the latent comes back as it is)."""
    sigmas = sigmas_for(model_sigmas_of(model))
    if sigmas is None or len(sigmas) < 2:
        return latent
    geometry = model.extras.get("vae_geometry")  # set by CheckpointLoaderSimple
    if geometry is not None:
        latent = fit_empty_latent(latent, geometry)
    samples = sample_latent(
        model, positive, negative, latent, sigmas, sampler_name, cfg, seed, add_noise, ctx
    )
    return with_samples(latent, samples)


def _names_check(sampler_name: str = "euler", scheduler: str = "normal", **_) -> list[str]:
    problems = []
    message = unsupported_sampler(sampler_name)
    if message:
        problems.append(message)
    if scheduler not in SCHEDULER_NAMES:
        problems.append(f"scheduler: unknown scheduler {scheduler!r}")
    return problems


@comfy_node(
    "KSampler",
    display_name="KSampler",
    category="sampling",
    inputs={"seed": SEED, "cfg": CFG, "denoise": ComfyInput(step=0.01)},
    output_names=("LATENT",),
)
def k_sampler(
    model: Model,
    seed: Int(min=0, max=MAX_SEED) = 0,
    steps: Int(min=1, max=10000) = 20,
    cfg: Float(0.0, 100.0, step=0.1) = 8.0,
    *,
    sampler_name: Choice(list(SAMPLER_NAMES)),
    scheduler: Choice(list(SCHEDULER_NAMES)),
    positive: Conditioning,
    negative: Conditioning,
    latent_image: LatentType,
    denoise: Float(0.0, 1.0, step=0.01) = 1.0,
    ctx: NodeContext = None,
) -> LatentType:
    """Uses the provided model, positive and negative conditioning to denoise the latent
    image.

    As ComfyUI: the seed's CPU noise (same seed and size, same noise), sampling in sigma
    space with ``sampler_name`` along ``scheduler``'s noise levels; denoise < 1 runs the
    last ``steps`` steps of an ``int(steps / denoise)``-step schedule from the input latent.
    """
    return _run(
        model, positive, negative, latent_image,
        lambda ms: ksampler_sigmas(ms, scheduler, steps, sampler_name, denoise),
        sampler_name, cfg, seed, True, ctx,
    )  # fmt: skip


k_sampler.check(_names_check)


@comfy_node(
    "KSamplerAdvanced",
    display_name="KSampler (Advanced)",
    category="sampling",
    inputs={"noise_seed": SEED, "cfg": CFG},
    output_names=("LATENT",),
)
def k_sampler_advanced(
    model: Model,
    add_noise: Choice(["enable", "disable"]),
    noise_seed: Int(min=0, max=MAX_SEED) = 0,
    steps: Int(min=1, max=10000) = 20,
    cfg: Float(0.0, 100.0, step=0.1) = 8.0,
    *,
    sampler_name: Choice(list(SAMPLER_NAMES)),
    scheduler: Choice(list(SCHEDULER_NAMES)),
    positive: Conditioning,
    negative: Conditioning,
    latent_image: LatentType,
    start_at_step: Int(min=0, max=10000) = 0,
    end_at_step: Int(min=0, max=10000) = 10000,
    return_with_leftover_noise: Choice(["disable", "enable"]),
    ctx: NodeContext = None,
) -> LatentType:
    """KSampler with the schedule cut to steps [start_at_step, end_at_step] of ``steps``.

    add_noise = disable starts from the latent as it is (e.g. a previous pass's leftover
    noise); return_with_leftover_noise = enable stops at the cut's noise level instead of
    finishing at 0, so another sampler can continue.
    """
    force_full = return_with_leftover_noise != "enable"
    return _run(
        model, positive, negative, latent_image,
        lambda ms: advanced_cut(
            sampler_sigmas(ms, scheduler, steps, sampler_name), start_at_step, end_at_step,
            force_full,
        ),
        sampler_name, cfg, noise_seed, add_noise == "enable", ctx,
    )  # fmt: skip


k_sampler_advanced.check(_names_check)

NODES = [k_sampler, k_sampler_advanced]
