"""Sampling as ComfyUI's KSampler does it, on graphflow's values: the sampler registry,
ComfyUI's initial noise, and one function from (model, conditioning, latent, sigmas) to the
denoised latent.

Initial noise: ``torch.manual_seed(seed)`` then ``torch.randn(shape)`` on the CPU in the
latent's dtype for the whole batch (or, when the latent says which items of a larger batch
it holds, each item's own draw of that larger batch). The starting point is
latent + noise·σ0, or noise·√(1+σ0²) when σ0 is the model's σmax (full denoise).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from . import inpaint_concat, k_extra, k_solvers
from . import k_samplers as ks
from .k_denoiser import KDenoiser, MaskedDenoiser
from .sigmas import ModelSigmas

SAMPLERS = {
    "euler": ks.sample_euler,
    "euler_cfg_pp": partial(k_extra.sample_euler_ancestral_cfg_pp, eta=0.0),
    "euler_ancestral": ks.sample_euler_ancestral,
    "euler_ancestral_cfg_pp": k_extra.sample_euler_ancestral_cfg_pp,
    "heun": ks.sample_heun,
    "heunpp2": k_extra.sample_heunpp2,
    "dpm_2": ks.sample_dpm_2,
    "dpm_2_ancestral": ks.sample_dpm_2_ancestral,
    "lms": ks.sample_lms,
    "dpm_fast": k_solvers.sample_dpm_fast,
    "dpm_adaptive": k_solvers.sample_dpm_adaptive,
    "dpmpp_2s_ancestral": ks.sample_dpmpp_2s_ancestral,
    "dpmpp_2s_ancestral_cfg_pp": k_extra.sample_dpmpp_2s_ancestral_cfg_pp,
    "dpmpp_sde": ks.sample_dpmpp_sde,
    "dpmpp_sde_gpu": partial(ks.sample_dpmpp_sde, gpu=True),
    "dpmpp_2m": ks.sample_dpmpp_2m,
    "dpmpp_2m_cfg_pp": k_extra.sample_dpmpp_2m_cfg_pp,
    "dpmpp_2m_sde": ks.sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_gpu": partial(ks.sample_dpmpp_2m_sde, gpu=True),
    "dpmpp_2m_sde_heun": partial(ks.sample_dpmpp_2m_sde, solver="heun"),
    "dpmpp_2m_sde_heun_gpu": partial(ks.sample_dpmpp_2m_sde, solver="heun", gpu=True),
    "dpmpp_3m_sde": ks.sample_dpmpp_3m_sde,
    "dpmpp_3m_sde_gpu": partial(ks.sample_dpmpp_3m_sde, gpu=True),
    "ddpm": ks.sample_ddpm,
    "lcm": ks.sample_lcm,
    "ipndm": k_solvers.sample_ipndm,
    "ipndm_v": k_extra.sample_ipndm_v,
    "res_multistep": k_extra.sample_res_multistep,
    "res_multistep_cfg_pp": partial(k_extra.sample_res_multistep, cfg_pp=True),
    "res_multistep_ancestral": partial(k_extra.sample_res_multistep, eta=1.0),
    "res_multistep_ancestral_cfg_pp": partial(k_extra.sample_res_multistep, eta=1.0, cfg_pp=True),
    "gradient_estimation": k_extra.sample_gradient_estimation,
    "gradient_estimation_cfg_pp": partial(k_extra.sample_gradient_estimation, cfg_pp=True),
    "er_sde": k_extra.sample_er_sde,
    "ddim": ks.sample_euler,  # deterministic DDIM is Euler in sigma space (inpaint noise: below)
    "uni_pc": k_solvers.sample_uni_pc,
    "uni_pc_bh2": partial(k_solvers.sample_uni_pc, variant="bh2"),
}
RANDOM_INPAINT_NOISE = frozenset({"ddim"})  # ComfyUI's inpaint_options={"random": True}


def unsupported_sampler(name: str) -> str | None:
    """A one-line validation message when graphflow does not implement sampler ``name``."""
    if name in SAMPLERS:
        return None
    if name in ks.SAMPLER_NAMES:
        return (
            f"sampler_name: {name!r} (a ComfyUI sampler) is not implemented by graphflow yet; "
            f"pick another, e.g. euler, dpmpp_2m or dpmpp_2m_sde"
        )
    return f"sampler_name: unknown sampler {name!r}"


def comfy_noise(shape, seed: int, dtype=None, batch_index: list[int] | None = None):
    """ComfyUI's initial noise for a latent of ``shape``: CPU ``manual_seed(seed)`` then one
    randn for the whole batch, or per item of ``batch_index`` (each item the draw it would
    have as that index of a larger batch)."""
    import torch

    generator = torch.manual_seed(int(seed))
    if batch_index is None:
        return torch.randn(tuple(shape), dtype=dtype, generator=generator, device="cpu")
    wanted = sorted(set(batch_index))
    draws = {}
    for index in range(wanted[-1] + 1):
        item = torch.randn((1, *shape[1:]), dtype=dtype, generator=generator, device="cpu")
        if index in wanted:
            draws[index] = item
    return torch.cat([draws[i] for i in batch_index])


def model_sigmas_of(model: Any) -> ModelSigmas:
    """The sigma table of a MODEL handle, from the diffusers scheduler in its extras."""
    scheduler = model.extras.get("scheduler") if hasattr(model, "extras") else None
    if scheduler is None:
        raise ValueError(
            "this MODEL carries no scheduler config (betas, prediction type): load it with a "
            "checkpoint loader"
        )
    return ModelSigmas.from_config(scheduler.config)


def _latent_mask(mask, samples):
    """A ComfyUI noise_mask (B|1, [1,] H, W) resized to the latent and broadcast to it, as
    ComfyUI's reshape_mask: bilinear, not rounded, a shorter mask batch cycled."""
    planes = inpaint_concat.as_mask_planes(mask).to(device=samples.device, dtype=samples.dtype)
    planes = inpaint_concat.resize_planes(planes, samples.shape[-2:], "bilinear")
    repeats = -(-samples.shape[0] // planes.shape[0])
    return planes.repeat(repeats, 1, 1, 1)[: samples.shape[0]].expand_as(samples)


def k_sample(
    unet, ms: ModelSigmas, positive, negative, latent, sigmas, *, sampler: str, cfg: float,
    seed: int, add_noise: bool = True, callback=None,
):  # fmt: skip
    """Denoise ``latent`` (a graphflow Latent) along ``sigmas`` with ComfyUI's ``sampler``;
    returns the new samples tensor (the input's when fewer than two sigmas remain)."""
    import torch

    samples = latent.samples.to(device=unet.device, dtype=torch.float32)
    if len(sigmas) < 2:
        return latent.samples
    if sampler not in SAMPLERS:
        raise ValueError(unsupported_sampler(sampler))
    batch_index = getattr(latent, "batch_index", None)
    if add_noise:
        noise = comfy_noise(samples.shape, seed, latent.samples.dtype, batch_index)
    else:
        noise = torch.zeros(samples.shape, dtype=samples.dtype)
    noise = noise.to(samples.device, samples.dtype)
    downscale = getattr(latent, "downscale", 8)
    model = KDenoiser(unet, ms, positive, negative, cfg, downscale)
    mask = getattr(latent, "noise_mask", None)
    model.inputs.latent = samples
    model.inputs.image_size = (samples.shape[-2] * downscale, samples.shape[-1] * downscale)
    if mask is not None:
        model.inputs.noise_mask = _latent_mask(mask, samples)[:, :1]
        inpaint_noise = noise
        if sampler in RANDOM_INPAINT_NOISE:
            generator = torch.manual_seed((int(seed) + 1) % 2**64)  # ComfyUI: seed + 1
            inpaint_noise = torch.randn(samples.shape, generator=generator).to(noise)
        model = MaskedDenoiser(model, samples, inpaint_noise, _latent_mask(mask, samples))
    first = float(sigmas[0])
    full = abs(first - ms.sigma_max) <= 1e-5 * ms.sigma_max or first > ms.sigma_max
    x = samples + noise * ((1 + first**2) ** 0.5 if full else first)
    run = ks.SamplerRun(seed=int(seed), callback=callback, model_sigmas=ms)
    with torch.no_grad():
        # as ComfyUI, no blend afterwards: the unmasked region is pinned inside the model
        # wrapper only, so a run stopping above σ = 0 returns it noised to the last σ
        return SAMPLERS[sampler](model, x, sigmas.to(torch.float32).cpu(), run)
