"""Noise levels (sigmas) as ComfyUI computes them: the model's sigma table and ComfyUI's nine
schedulers, with its denoise, KSamplerAdvanced and penultimate-drop rules.

A discrete diffusion model trained on 1000 timesteps has one noise level per timestep,
σ_t = √((1 − ᾱ_t)/ᾱ_t). :class:`ModelSigmas` holds that table (float32, as ComfyUI keeps it)
with ``timestep(σ)`` (nearest table entry in log σ) and ``sigma(t)`` (log-linear between
entries). A scheduler picks ``steps`` levels from it, largest first, ending in 0. The rules
were confirmed by reading ComfyUI's ``comfy/samplers.py`` (v0.3.x); the code is our own.
"""

from __future__ import annotations

import math
from typing import Any

SCHEDULER_NAMES = (
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
)
# Samplers whose schedule is computed for one step more with its penultimate sigma dropped.
DISCARD_PENULTIMATE = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})


class UnknownScheduler(ValueError):
    """A scheduler name graphflow does not compute."""


def betas_from_config(config: Any):
    """The training betas (float64 tensor) described by a diffusers scheduler config."""
    import torch

    get = config.get if hasattr(config, "get") else lambda k, d=None: getattr(config, k, d)
    n = int(get("num_train_timesteps", 1000))
    start, end = float(get("beta_start", 0.00085)), float(get("beta_end", 0.012))
    trained = get("trained_betas", None)
    kind = get("beta_schedule", "scaled_linear")
    if trained is not None:
        betas = torch.tensor(list(trained), dtype=torch.float64)
    elif kind == "linear":
        betas = torch.linspace(start, end, n, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    elif kind == "squaredcos_cap_v2":

        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor(
            [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)],
            dtype=torch.float64,
        )
    else:
        raise ValueError(f"beta_schedule {kind!r} is not supported for sigma-space sampling")
    return betas


class ModelSigmas:
    """The noise levels of a discrete (1000-timestep) ε- or v-prediction model.

    ``sigmas[t]`` for t = 0…T−1 (float32, ascending); ``prediction_type`` is the model's
    output kind ("epsilon" or "v_prediction").
    """

    def __init__(self, betas: Any, prediction_type: str = "epsilon"):
        import torch

        alphas_cumprod = torch.cumprod(1.0 - betas.to(torch.float64), dim=0)
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.log().float()
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(
                f"prediction_type {prediction_type!r} is not supported (epsilon, v_prediction)"
            )
        self.prediction_type = prediction_type

    @classmethod
    def from_config(cls, config: Any) -> ModelSigmas:
        """The table of the model a diffusers scheduler config describes (betas, type)."""
        get = config.get if hasattr(config, "get") else lambda k, d=None: getattr(config, k, d)
        return cls(betas_from_config(config), get("prediction_type", "epsilon") or "epsilon")

    @property
    def sigma_min(self) -> float:
        """The smallest noise level of the table (t = 0)."""
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        """The largest noise level of the table (t = T−1)."""
        return float(self.sigmas[-1])

    def timestep(self, sigma: Any):
        """The table index nearest to ``sigma`` in log space (a tensor of integers)."""
        import torch

        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        distances = sigma.log().reshape(-1)[None, :] - self.log_sigmas[:, None]
        return distances.abs().argmin(dim=0).reshape(sigma.shape)

    def sigma(self, timestep: Any):
        """The noise level at a (possibly fractional) timestep, log-linear between entries."""
        import torch

        t = torch.as_tensor(timestep, dtype=torch.float32).clamp(0, len(self.sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()


def _simple(ms: ModelSigmas, n: int) -> list[float]:
    stride = len(ms.sigmas) / n
    return [float(ms.sigmas[-(1 + int(i * stride))]) for i in range(n)] + [0.0]


def _ddim_uniform(ms: ModelSigmas, n: int) -> list[float]:
    index, picked = 1, []
    if math.isclose(float(ms.sigmas[1]), 0, abs_tol=1e-5):
        n, tail = n + 1, []
    else:
        tail = [0.0]
    stride = max(len(ms.sigmas) // n, 1)
    while index < len(ms.sigmas):
        picked.append(float(ms.sigmas[index]))
        index += stride
    return picked[::-1] + tail


def _normal(ms: ModelSigmas, n: int, sgm: bool = False) -> list[float]:
    import torch

    start, end = float(ms.timestep(ms.sigma_max)), float(ms.timestep(ms.sigma_min))
    tail = [0.0]
    if sgm:
        timesteps = torch.linspace(start, end, n + 1)[:-1]
    else:
        if math.isclose(float(ms.sigma(end)), 0, abs_tol=1e-5):
            n, tail = n + 1, []
        timesteps = torch.linspace(start, end, n)
    return [float(ms.sigma(t)) for t in timesteps] + tail


def _karras(ms: ModelSigmas, n: int, rho: float = 7.0) -> list[float]:
    import torch

    ramp = torch.linspace(0, 1, n)
    low, high = ms.sigma_min ** (1 / rho), ms.sigma_max ** (1 / rho)
    return [float(s) for s in (high + ramp * (low - high)) ** rho] + [0.0]


def _exponential(ms: ModelSigmas, n: int) -> list[float]:
    import torch

    levels = torch.linspace(math.log(ms.sigma_max), math.log(ms.sigma_min), n).exp()
    return [float(s) for s in levels] + [0.0]


def _beta(ms: ModelSigmas, n: int, alpha: float = 0.6, beta: float = 0.6) -> list[float]:
    import numpy
    from scipy.stats import beta as beta_distribution

    total = len(ms.sigmas) - 1
    quantiles = 1 - numpy.linspace(0, 1, n, endpoint=False)
    timesteps = numpy.rint(beta_distribution.ppf(quantiles, alpha, beta) * total)
    out, last = [], None
    for t in timesteps:
        if t != last:
            out.append(float(ms.sigmas[int(t)]))
        last = t
    return [*out, 0.0]


def _linear_quadratic(ms: ModelSigmas, n: int, threshold: float = 0.025) -> list[float]:
    if n == 1:
        schedule = [1.0, 0.0]
    else:
        linear = n // 2
        quadratic = n - linear
        step_diff = linear - threshold * n
        a = step_diff / (linear * quadratic**2)
        b = threshold / linear - 2 * step_diff / quadratic**2
        c = a * linear**2
        rising = [i * threshold / linear for i in range(linear)]
        rising += [a * i**2 + b * i + c for i in range(linear, n)] + [1.0]
        schedule = [1.0 - s for s in rising]
    sigma_max = float(ms.sigmas[-1])
    return [float(s * sigma_max) for s in _float32(schedule)]


def _kl_optimal(ms: ModelSigmas, n: int) -> list[float]:
    import torch

    u = torch.arange(n, dtype=torch.float32) / (n - 1) if n > 1 else torch.zeros(1)
    levels = (u * math.atan(ms.sigma_min) + (1 - u) * math.atan(ms.sigma_max)).tan()
    return [float(s) for s in levels] + [0.0]


def _float32(values: list[float]) -> list[float]:
    import torch

    return [float(v) for v in torch.tensor(values, dtype=torch.float32)]


_SCHEDULERS = {
    "simple": _simple,
    "sgm_uniform": lambda ms, n: _normal(ms, n, sgm=True),
    "karras": _karras,
    "exponential": _exponential,
    "ddim_uniform": _ddim_uniform,
    "beta": _beta,
    "normal": _normal,
    "linear_quadratic": _linear_quadratic,
    "kl_optimal": _kl_optimal,
}


def scheduler_sigmas(ms: ModelSigmas, scheduler: str, steps: int):
    """The float32 sigmas of ComfyUI's ``scheduler`` for ``steps`` steps (usually steps+1
    values ending in 0; ddim_uniform and beta may give more or fewer)."""
    import torch

    if scheduler not in _SCHEDULERS:
        raise UnknownScheduler(f"unknown scheduler {scheduler!r} (one of {list(SCHEDULER_NAMES)})")
    if steps <= 0:
        return torch.zeros(0)
    return torch.tensor(_SCHEDULERS[scheduler](ms, steps), dtype=torch.float32)


def sampler_sigmas(ms: ModelSigmas, scheduler: str, steps: int, sampler: str = "euler"):
    """ComfyUI's full schedule for ``sampler``: one step more with the penultimate sigma
    dropped for dpm_2, dpm_2_ancestral, uni_pc and uni_pc_bh2."""
    import torch

    if sampler in DISCARD_PENULTIMATE:
        sigmas = scheduler_sigmas(ms, scheduler, steps + 1)
        return torch.cat([sigmas[:-2], sigmas[-1:]]) if len(sigmas) >= 2 else sigmas
    return scheduler_sigmas(ms, scheduler, steps)


def ksampler_sigmas(
    ms: ModelSigmas, scheduler: str, steps: int, sampler: str, denoise: float = 1.0
):
    """KSampler's sigmas: for denoise < 1 the schedule of ``int(steps / denoise)`` steps cut
    to its last ``steps + 1`` values (denoise > 0.9999 counts as 1; ≤ 0 is empty)."""
    import torch

    if denoise > 0.9999:
        return sampler_sigmas(ms, scheduler, steps, sampler)
    if denoise <= 0.0:
        return torch.zeros(0)
    sigmas = sampler_sigmas(ms, scheduler, int(steps / denoise), sampler)
    return sigmas[-(steps + 1) :]


def advanced_cut(sigmas, start_at_step: int, end_at_step: int, force_full_denoise: bool):
    """KSamplerAdvanced's cut of a full schedule to [start_at_step, end_at_step]; None when
    nothing is left to run (the latent is returned as it is).

    ``force_full_denoise`` (return_with_leftover_noise = disable) sets the last sigma to 0
    when the end cuts the schedule short.
    """
    if end_at_step < len(sigmas) - 1:
        sigmas = sigmas[: end_at_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_at_step >= len(sigmas) - 1:
        return None
    return sigmas[start_at_step:]
