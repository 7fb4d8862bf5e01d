"""ComfyUI's samplers, in sigma space, on a denoiser D(x, σ) → x0 (k_denoiser.py).

Decision (the k-diffusion question): graphflow writes its own sampler loops and depends only
on ``torchsde`` (already a dependency) for the Brownian-tree noise of the SDE samplers.
The ``k-diffusion`` wheel (0.1.1.post1, the newest on PyPI) was read: it pulls in wandb,
clean-fid, kornia, clip-anytorch, dctorch, jsonmerge, torchdiffeq, accelerate and
scikit-image for a training toolkit we do not need, it has not been released since 2023, and
it lacks half of ComfyUI's 42 names (ComfyUI ships its own modified copy). The loops are a
few lines each, written from the published update rules (k-diffusion's and ComfyUI's are the
reference for the facts: seeds, noise placement, the order of operations).

Every loop takes ``(model, x, sigmas, run)``: ``x`` is already noised to ``sigmas[0]``,
``sigmas`` a float32 CPU tensor ending (usually) in 0, ``run`` a :class:`SamplerRun`
carrying the seed (ancestral noise: a generator seeded with it on the latent's device, with
seed + 1 on the CPU, as ComfyUI does; SDE noise: a Brownian tree seeded with it) and the
per-step callback.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .sigmas import ModelSigmas

SAMPLER_NAMES = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis",
    "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp",
    "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc",
    "uni_pc_bh2",
)  # fmt: skip


class UnknownSampler(ValueError):
    """A sampler name graphflow does not implement."""


@dataclass
class SamplerRun:
    """What a loop needs besides the model: the seed, the per-step callback
    ``callback(i, total, x, denoised)`` and, for uni_pc, the model's sigma table."""

    seed: int = 0
    callback: Callable[[int, int, Any, Any], None] | None = None
    model_sigmas: ModelSigmas | None = None

    def step(self, i: int, total: int, x, denoised) -> None:
        """Report step ``i`` (0-based) of ``total``."""
        if self.callback is not None:
            self.callback(i, total, x, denoised)

    def gaussian(self, x) -> Callable[..., Any]:
        """ComfyUI's default noise: a generator on x's device seeded with the seed, or with
        seed + 1 on the CPU (ComfyUI's fix, PR #11528: on the CPU the seed alone repeats the
        initial noise, which ``manual_seed(seed)`` drew from the same stream)."""
        import torch

        seed = (self.seed + 1) % 2**64 if x.device.type == "cpu" else self.seed
        generator = torch.Generator(device=x.device).manual_seed(seed)
        return lambda *_: torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)

    def brownian(self, x, sigmas, cpu: bool = True) -> Callable[..., Any]:
        """ComfyUI's SDE noise: a Brownian tree over [σmin, σmax] seeded with the seed;
        ``noise(σ, σ_next)`` is the normalised increment between the two levels."""
        import torch
        import torchsde

        positive = sigmas[sigmas > 0]
        t0, t1 = float(positive.min()), float(sigmas.max())
        device = torch.device("cpu") if cpu else x.device
        w0 = torch.zeros_like(x, device=device)
        tree = torchsde.BrownianTree(t0, w0, t1, entropy=self.seed)

        def noise(sigma, sigma_next):
            # W(σ_next) − W(σ) as ComfyUI's batched tree signs it (σ falls, so W(low) −
            # W(high)), normalised to unit variance
            low, high = sorted((float(sigma), float(sigma_next)))
            sign = 1.0 if float(sigma) < float(sigma_next) else -1.0
            with warnings.catch_warnings():  # float32 ends queried as float64: harmless
                warnings.simplefilter("ignore", UserWarning)
                increment = tree(low, high) * sign
            return (increment / math.sqrt(abs(high - low))).to(x.device, x.dtype)

        return noise


def to_d(x, sigma, denoised):
    """The ODE derivative dx/dσ = (x − D(x, σ)) / σ."""
    return (x - denoised) / sigma


def ancestral_step(sigma_from: float, sigma_to: float, eta: float = 1.0) -> tuple[float, float]:
    """(σ_down, σ_up): go deterministically to σ_down, then add σ_up of fresh noise."""
    if not eta or sigma_to == 0:
        return sigma_to, 0.0
    up = min(sigma_to, eta * math.sqrt(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2))
    return math.sqrt(sigma_to**2 - up**2), up


def _levels(sigmas) -> list[float]:
    return [float(s) for s in sigmas]


def sample_euler(model, x, sigmas, run: SamplerRun):
    """Euler's method on the probability-flow ODE (ComfyUI's euler and ddim)."""
    s = _levels(sigmas)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        x = x + to_d(x, s[i], denoised) * (s[i + 1] - s[i])
    return x


def sample_euler_ancestral(model, x, sigmas, run: SamplerRun, eta: float = 1.0):
    """Euler to σ_down, then fresh noise of σ_up (ComfyUI's euler_ancestral)."""
    s, noise = _levels(sigmas), run.gaussian(x)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        down, up = ancestral_step(s[i], s[i + 1], eta)
        x = denoised if down == 0 else x + to_d(x, s[i], denoised) * (down - s[i])
        if s[i + 1] > 0:
            x = x + noise(s[i], s[i + 1]) * up
    return x


def sample_heun(model, x, sigmas, run: SamplerRun):
    """Heun's second-order method (Euler on the last step to 0)."""
    s = _levels(sigmas)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        d, dt = to_d(x, s[i], denoised), s[i + 1] - s[i]
        if s[i + 1] == 0:
            x = x + d * dt
            continue
        x2 = x + d * dt
        d2 = to_d(x2, s[i + 1], model(x2, s[i + 1]))
        x = x + (d + d2) / 2 * dt
    return x


def _dpm2_step(model, x, d, sigma, target):
    """DPM-Solver-2's midpoint step from ``sigma`` to ``target`` (midpoint in log σ)."""
    mid = math.exp((math.log(sigma) + math.log(target)) / 2)
    x2 = x + d * (mid - sigma)
    return x + to_d(x2, mid, model(x2, mid)) * (target - sigma)


def sample_dpm_2(model, x, sigmas, run: SamplerRun):
    """DPM-Solver-2 (k-diffusion's midpoint variant; Euler on the last step)."""
    s = _levels(sigmas)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        d = to_d(x, s[i], denoised)
        x = x + d * (s[i + 1] - s[i]) if s[i + 1] == 0 else _dpm2_step(model, x, d, s[i], s[i + 1])
    return x


def sample_dpm_2_ancestral(model, x, sigmas, run: SamplerRun, eta: float = 1.0):
    """DPM-Solver-2 to σ_down, then fresh noise of σ_up."""
    s, noise = _levels(sigmas), run.gaussian(x)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        down, up = ancestral_step(s[i], s[i + 1], eta)
        d = to_d(x, s[i], denoised)
        x = x + d * (down - s[i]) if down == 0 else _dpm2_step(model, x, d, s[i], down)
        if s[i + 1] > 0:
            x = x + noise(s[i], s[i + 1]) * up
    return x


def lms_coefficient(order: int, s: list[float], i: int, j: int) -> float:
    """∫ from s[i] to s[i+1] of the Lagrange basis polynomial j over s[i], s[i−1], …"""
    from scipy import integrate

    def basis(tau: float) -> float:
        product = 1.0
        for k in range(order):
            if k != j:
                product *= (tau - s[i - k]) / (s[i - j] - s[i - k])
        return product

    return integrate.quad(basis, s[i], s[i + 1], epsrel=1e-4)[0]


def sample_lms(model, x, sigmas, run: SamplerRun, order: int = 4):
    """Linear multistep (Adams–Bashforth in σ, up to 4th order; the step to 0 lands on D)."""
    s, history = _levels(sigmas), []
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        history.append(to_d(x, s[i], denoised))
        history = history[-order:]
        if s[i + 1] == 0:
            x = denoised  # ComfyUI's last step to 0 lands on the prediction
            continue
        current = min(i + 1, order)
        for j, d in enumerate(reversed(history)):
            x = x + lms_coefficient(current, s, i, j) * d
    return x


def sample_dpmpp_2s_ancestral(model, x, sigmas, run: SamplerRun, eta: float = 1.0):
    """DPM-Solver++(2S), single-step second order, ancestral."""
    s, noise = _levels(sigmas), run.gaussian(x)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        down, up = ancestral_step(s[i], s[i + 1], eta)
        if down == 0:
            x = x + to_d(x, s[i], denoised) * (down - s[i])
        else:
            t, t_next = -math.log(s[i]), -math.log(down)
            h = t_next - t
            mid = math.exp(-(t + h / 2))
            x2 = (mid / s[i]) * x - math.expm1(-h / 2) * denoised
            x = (down / s[i]) * x - math.expm1(-h) * model(x2, mid)
        if s[i + 1] > 0:
            x = x + noise(s[i], s[i + 1]) * up
    return x


def sample_dpmpp_sde(model, x, sigmas, run: SamplerRun, eta=1.0, r=0.5, gpu=False):
    """DPM-Solver++ (stochastic, single-step second order) with Brownian-tree noise."""
    s, noise = _levels(sigmas), run.brownian(x, sigmas, cpu=not gpu)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        if s[i + 1] == 0:
            x = x + to_d(x, s[i], denoised) * (s[i + 1] - s[i])
            continue
        t, t_next = -math.log(s[i]), -math.log(s[i + 1])
        h = t_next - t
        mid = math.exp(-(t + h * r))
        down, up = ancestral_step(s[i], mid, eta)
        x2 = (down / s[i]) * x - math.expm1(t + math.log(down)) * denoised
        x2 = x2 + noise(s[i], mid) * up
        denoised2 = model(x2, mid)
        down, up = ancestral_step(s[i], s[i + 1], eta)
        mixed = (1 - 1 / (2 * r)) * denoised + (1 / (2 * r)) * denoised2
        x = (down / s[i]) * x - math.expm1(t + math.log(down)) * mixed
        x = x + noise(s[i], s[i + 1]) * up
    return x


def sample_dpmpp_2m(model, x, sigmas, run: SamplerRun):
    """DPM-Solver++(2M), multistep second order."""
    s, old = _levels(sigmas), None
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        if s[i + 1] == 0:
            x = denoised  # (σ_next/σ)·x − expm1(−∞)·D
        else:
            h = math.log(s[i]) - math.log(s[i + 1])
            mixed = denoised
            if old is not None:
                r = (math.log(s[i - 1]) - math.log(s[i])) / h
                mixed = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
            x = (s[i + 1] / s[i]) * x - math.expm1(-h) * mixed
        old = denoised
    return x


def sample_dpmpp_2m_sde(model, x, sigmas, run, eta=1.0, solver="midpoint", gpu=False):
    """DPM-Solver++(2M) SDE (midpoint or heun correction) with Brownian-tree noise."""
    s, noise = _levels(sigmas), run.brownian(x, sigmas, cpu=not gpu)
    old, h_last = None, None
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        if s[i + 1] == 0:
            x = denoised
        else:
            h = math.log(s[i]) - math.log(s[i + 1])
            eta_h = eta * h
            phi = -math.expm1(-h - eta_h)
            x = (s[i + 1] / s[i]) * math.exp(-eta_h) * x + phi * denoised
            if old is not None:
                r = h_last / h
                if solver == "heun":
                    x = x + (phi / (-h - eta_h) + 1) * (1 / r) * (denoised - old)
                else:
                    x = x + 0.5 * phi * (1 / r) * (denoised - old)
            if eta:
                x = x + noise(s[i], s[i + 1]) * s[i + 1] * math.sqrt(-math.expm1(-2 * eta_h))
            h_last = h
        old = denoised
    return x


def sample_dpmpp_3m_sde(model, x, sigmas, run, eta=1.0, gpu=False):
    """DPM-Solver++(3M) SDE, multistep third order, with Brownian-tree noise."""
    s, noise = _levels(sigmas), run.brownian(x, sigmas, cpu=not gpu)
    d1_prev = d2_prev = h1 = h2 = None
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        if s[i + 1] == 0:
            x = denoised
        else:
            h = math.log(s[i]) - math.log(s[i + 1])
            h_eta = h * (eta + 1)
            x = math.exp(-h_eta) * x - math.expm1(-h_eta) * denoised
            phi2 = math.expm1(-h_eta) / h_eta + 1
            if h2 is not None:
                r0, r1 = h1 / h, h2 / h
                d1_0, d1_1 = (denoised - d1_prev) / r0, (d1_prev - d2_prev) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi2 * d1 - (phi2 / h_eta - 0.5) * d2
            elif h1 is not None:
                x = x + phi2 * (denoised - d1_prev) / (h1 / h)
            if eta:
                x = x + noise(s[i], s[i + 1]) * s[i + 1] * math.sqrt(-math.expm1(-2 * h * eta))
            h1, h2 = h, h1
        d1_prev, d2_prev = denoised, d1_prev
    return x


def sample_ddpm(model, x, sigmas, run: SamplerRun):
    """The DDPM ancestral step, written in sigma space (ComfyUI's ddpm)."""
    s, noise = _levels(sigmas), run.gaussian(x)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        eps = to_d(x, s[i], denoised)
        a_bar, a_bar_prev = 1 / (s[i] ** 2 + 1), 1 / (s[i + 1] ** 2 + 1)
        alpha = a_bar / a_bar_prev
        x_vp = x / math.sqrt(1 + s[i] ** 2)
        x = (1 / alpha) ** 0.5 * (x_vp - (1 - alpha) * eps / math.sqrt(1 - a_bar))
        if s[i + 1] > 0:
            x = x + math.sqrt((1 - alpha) * (1 - a_bar_prev) / (1 - a_bar)) * noise()
            x = x * math.sqrt(1 + s[i + 1] ** 2)
    return x


def sample_lcm(model, x, sigmas, run: SamplerRun):
    """Latent-consistency sampling: jump to x0, re-noise to the next level."""
    s, noise = _levels(sigmas), run.gaussian(x)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        x = denoised
        if s[i + 1] > 0:
            x = x + noise() * s[i + 1]
    return x
