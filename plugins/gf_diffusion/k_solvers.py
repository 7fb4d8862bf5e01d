"""The samplers of ComfyUI's list that are not a simple per-step loop: DPM-Solver fast and
adaptive (Lu et al. 2022, in k-diffusion's formulation on t = −log σ), iPNDM, and UniPC
(through diffusers' UniPCMultistepScheduler driven with ComfyUI's sigmas).

Same calling convention as k_samplers.py: ``(model, x, sigmas, run)``.
"""

from __future__ import annotations

import math

from .k_samplers import SamplerRun, ancestral_step, to_d


class _DPMSolver:
    """DPM-Solver steps of order 1–3 in t = −log σ on a denoiser, caching ε per call."""

    def __init__(self, model, run: SamplerRun, total: int):
        self.model, self.run, self.total, self.calls = model, run, total, 0

    @staticmethod
    def sigma(t: float) -> float:
        return math.exp(-t)

    def eps(self, cache: dict, key: str, x, t: float):
        if key not in cache:
            cache[key] = (x - self.model(x, self.sigma(t))) / self.sigma(t)
        return cache[key]

    def step1(self, x, t, t_next, cache):
        h = t_next - t
        return x - self.sigma(t_next) * math.expm1(h) * self.eps(cache, "eps", x, t)

    def step2(self, x, t, t_next, cache, r1=0.5):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1 = t + r1 * h
        u1 = x - self.sigma(s1) * math.expm1(r1 * h) * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        return (
            x
            - self.sigma(t_next) * math.expm1(h) * eps
            - self.sigma(t_next) / (2 * r1) * math.expm1(h) * (eps_r1 - eps)
        )

    def step3(self, x, t, t_next, cache, r1=1 / 3, r2=2 / 3):
        h = t_next - t
        eps = self.eps(cache, "eps", x, t)
        s1, s2 = t + r1 * h, t + r2 * h
        u1 = x - self.sigma(s1) * math.expm1(r1 * h) * eps
        eps_r1 = self.eps(cache, "eps_r1", u1, s1)
        u2 = (
            x
            - self.sigma(s2) * math.expm1(r2 * h) * eps
            - self.sigma(s2) * (r2 / r1) * (math.expm1(r2 * h) / (r2 * h) - 1) * (eps_r1 - eps)
        )
        eps_r2 = self.eps(cache, "eps_r2", u2, s2)
        return (
            x
            - self.sigma(t_next) * math.expm1(h) * eps
            - self.sigma(t_next) / r2 * (math.expm1(h) / h - 1) * (eps_r2 - eps)
        )


def _end_sigma(sigmas) -> float:
    last = float(sigmas[-1])
    return float(sigmas[-2]) if last == 0 else last


def dpm_fast_orders(nfe: int) -> list[int]:
    """The step orders of DPM-Solver-fast for ``nfe`` model evaluations (they sum to nfe)."""
    m = nfe // 3 + 1
    return [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]


def sample_dpm_fast(model, x, sigmas, run: SamplerRun, eta: float = 0.0):
    """DPM-Solver-fast: len(sigmas)−1 model evaluations spread uniformly in −log σ from
    sigmas[0] to the last non-zero sigma (ComfyUI's dpm_fast; the result keeps that σ)."""
    if len(sigmas) <= 1:
        return x
    nfe = len(sigmas) - 1
    solver, noise = _DPMSolver(model, run, nfe), run.gaussian(x)
    t_start, t_end = -math.log(float(sigmas[0])), -math.log(_end_sigma(sigmas))
    orders = dpm_fast_orders(nfe)
    ts = [t_start + (t_end - t_start) * k / len(orders) for k in range(len(orders) + 1)]
    for i, order in enumerate(orders):
        cache: dict = {}
        t, t_next = ts[i], ts[i + 1]
        up, t_target = 0.0, t_next
        if eta:
            down, _ = ancestral_step(solver.sigma(t), solver.sigma(t_next), eta)
            t_target = min(t_end, -math.log(down))
            up = math.sqrt(solver.sigma(t_next) ** 2 - solver.sigma(t_target) ** 2)
        eps = solver.eps(cache, "eps", x, t)
        run.step(i, len(orders), x, x - solver.sigma(t) * eps)
        step = {1: solver.step1, 2: solver.step2, 3: solver.step3}[order]
        x = step(x, t, t_target, cache)
        if up:
            x = x + noise() * up
    return x


class _PIDController:
    """Step-size control for DPM-Solver-adaptive (error per unit tolerance → next h)."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order, accept_safety, eps=1e-8):
        self.h, self.safety, self.eps = h, accept_safety, eps
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.errs: list[float] = []

    def propose(self, error: float) -> bool:
        inverse = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inverse] * 3
        self.errs[0] = inverse
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


def sample_dpm_adaptive(
    model, x, sigmas, run: SamplerRun, order=3, rtol=0.05, atol=0.0078, h_init=0.05,
    max_steps=10000,
):  # fmt: skip
    """DPM-Solver-adaptive (order 3 with an embedded order-2 error estimate) from sigmas[0]
    to the last non-zero sigma; the step count follows the error, not the schedule."""
    import torch

    if len(sigmas) <= 1:
        return x
    solver = _DPMSolver(model, run, 0)
    s, t_end = -math.log(float(sigmas[0])), -math.log(_end_sigma(sigmas))
    pid = _PIDController(abs(h_init), 0.0, 1.0, 0.0, order, 0.81)
    x_prev, steps = x, 0
    while s < t_end - 1e-5 and steps < max_steps:
        cache: dict = {}
        t = min(t_end, s + pid.h)
        eps = solver.eps(cache, "eps", x, s)
        run.step(steps, steps + 1, x, x - solver.sigma(s) * eps)
        if order == 2:
            x_low = solver.step1(x, s, t, cache)
            x_high = solver.step2(x, s, t, cache)
        else:
            x_low = solver.step2(x, s, t, cache, r1=1 / 3)
            x_high = solver.step3(x, s, t, cache)
        delta = torch.maximum(
            torch.full_like(x, atol), rtol * torch.maximum(x_low.abs(), x_prev.abs())
        )
        error = float(torch.linalg.norm((x_low - x_high) / delta)) / x.numel() ** 0.5
        if pid.propose(error):
            x_prev, x, s = x_low, x_high, t
        steps += 1
    return x


def sample_ipndm(model, x, sigmas, run: SamplerRun, max_order: int = 4):
    """Improved pseudo-numerical (Adams–Bashforth on dx/dσ with fixed coefficients)."""
    s, history = [float(v) for v in sigmas], []
    coefficients = {1: [1], 2: [3, -1], 3: [23, -16, 5], 4: [55, -59, 37, -9]}
    divisors = {1: 1, 2: 2, 3: 12, 4: 24}
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        d = to_d(x, s[i], denoised)
        order = min(max_order, i + 1)
        if s[i + 1] == 0:
            x = denoised  # the final step lands on the prediction
        else:
            ds = [d, *reversed(history)][:order]
            slope = sum(c * v for c, v in zip(coefficients[order], ds, strict=True))
            x = x + (s[i + 1] - s[i]) * slope / divisors[order]
        history = ([*history, d])[-(max_order - 1) :]
    return x


def sample_uni_pc(model, x, sigmas, run: SamplerRun, variant: str = "bh1"):
    """UniPC (predictor–corrector, order up to 3) on ComfyUI's sigmas, stepped by diffusers'
    UniPCMultistepScheduler in its variance-preserving space (x_vp = x/√(σ²+1))."""
    import torch
    from diffusers import UniPCMultistepScheduler

    s = [float(v) for v in sigmas]
    n = len(s) - 1
    if n < 1:
        return x
    if s[-1] == 0:
        s[-1] = 0.001  # as ComfyUI: UniPC's log-SNR steps need a last level above 0
    scheduler = UniPCMultistepScheduler(
        prediction_type="sample",
        solver_type=variant,
        solver_order=max(min(3, n - 1), 1),
        lower_order_final=True,
        final_sigmas_type="zero",
    )
    scheduler.set_timesteps(n)
    scheduler.sigmas = torch.tensor(s, dtype=torch.float32)
    ms = run.model_sigmas
    steps = ms.timestep(torch.tensor(s[:-1])) if ms is not None else torch.arange(n, 0, -1)
    scheduler.timesteps = steps.long()
    scheduler.num_inference_steps = n
    scheduler.set_begin_index(0)
    x_vp = x / math.sqrt(1 + s[0] ** 2)
    for i in range(n):
        x_ve = x_vp * math.sqrt(1 + s[i] ** 2)
        denoised = model(x_ve, s[i])
        run.step(i, n, x_ve, denoised)
        x_vp = scheduler.step(denoised, scheduler.timesteps[i], x_vp, return_dict=False)[0]
    return x_vp * math.sqrt(1 + s[-1] ** 2)
