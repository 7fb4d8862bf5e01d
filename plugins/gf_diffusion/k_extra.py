"""More of ComfyUI's samplers: Heun++ (heunpp2), iPNDM with variable steps (ipndm_v),
RES multistep (res_multistep, its ancestral form), gradient estimation, and the CFG++
variants (euler_cfg_pp, euler_ancestral_cfg_pp, dpmpp_2s_ancestral_cfg_pp, dpmpp_2m_cfg_pp,
res_multistep(_ancestral)_cfg_pp, gradient_estimation_cfg_pp).

CFG++ steps move along the *unguided* prediction and add the guidance afterwards, so they
need the negative prompt's x0 of each call: a denoiser that offers it has ``keep_uncond``
(set to True here; it then evaluates the negative prompt even at cfg 1) and exposes
``last_uncond`` after each call (KDenoiser does). Discrete ε/v models only (α = 1 in
ComfyUI's formulas); the update rules were read from ComfyUI's k_diffusion/sampling.py.
Same calling convention as k_samplers.py: ``(model, x, sigmas, run)``.
"""

from __future__ import annotations

import math

from .k_samplers import SamplerRun, ancestral_step, to_d


def _uncond_model(model):
    if not hasattr(model, "keep_uncond"):
        raise ValueError("CFG++ samplers need a denoiser that reports its unguided prediction")
    model.keep_uncond = True
    return model


def sample_heunpp2(model, x, sigmas, run: SamplerRun):
    """Heun++: up to three stages per step, weighted towards the current derivative."""
    s = [float(v) for v in sigmas]
    end = s[-1]
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        d, dt = to_d(x, s[i], denoised), s[i + 1] - s[i]
        if s[i + 1] == end:
            x = x + d * dt
            continue
        x2 = x + d * dt
        d2 = to_d(x2, s[i + 1], model(x2, s[i + 1]))
        if s[i + 2] == end:
            w2 = s[i + 1] / (2 * s[0])
            x = x + (d * (1 - w2) + d2 * w2) * dt
            continue
        x3 = x2 + d2 * (s[i + 2] - s[i + 1])
        d3 = to_d(x3, s[i + 2], model(x3, s[i + 2]))
        w2, w3 = s[i + 1] / (3 * s[0]), s[i + 2] / (3 * s[0])
        x = x + (d * (1 - w2 - w3) + d2 * w2 + d3 * w3) * dt
    return x


def _ipndm_v_coefficients(s: list[float], i: int, order: int) -> list[float]:
    """Variable-step Adams–Bashforth weights of iPNDM-v (current derivative first)."""
    h0 = s[i + 1] - s[i]
    if order == 1:
        return [1.0]
    h1 = s[i] - s[i - 1]
    base = [(2 + h0 / h1) / 2, -(h0 / h1) / 2]
    if order == 2:
        return base
    h2 = s[i - 1] - s[i - 2]
    t1 = (1 - h0 / (3 * (h0 + h1)) * (h0 * (h0 + h1)) / (h1 * (h1 + h2))) / 2
    if order == 3:
        return [base[0] + t1, base[1] - (1 + h1 / h2) * t1, t1 * h1 / h2]
    h3 = s[i - 2] - s[i - 3]
    ratio = h1 * (h1 + h2) / (h2 * (h2 + h3))
    t2 = (
        ((1 - h0 / (3 * (h0 + h1))) / 2 + (1 - h0 / (2 * (h0 + h1))) * h0 / (6 * (h0 + h1 + h2)))
        * (h0 * (h0 + h1) * (h0 + h1 + h2))
        / (h1 * (h1 + h2) * (h1 + h2 + h3))
    )
    return [
        base[0] + t1 + t2,
        base[1] - (1 + h1 / h2) * t1 - (1 + h1 / h2 + ratio) * t2,
        t1 * h1 / h2 + (h1 / h2 + ratio * (1 + h2 / h3)) * t2,
        -t2 * ratio * h1 / h2,
    ]


def sample_ipndm_v(model, x, sigmas, run: SamplerRun, max_order: int = 4):
    """iPNDM with coefficients for unequal steps (up to 4th order)."""
    s, history = [float(v) for v in sigmas], []
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        d = to_d(x, s[i], denoised)
        if s[i + 1] == 0:
            x = denoised
        else:
            order = min(max_order, i + 1)
            ds = [d, *reversed(history)][:order]
            weights = _ipndm_v_coefficients(s, i, order)
            x = x + (s[i + 1] - s[i]) * sum(w * v for w, v in zip(weights, ds, strict=True))
        history = [*history, d][-(max_order - 1) :]
    return x


def _phi1(t: float) -> float:
    return math.expm1(t) / t


def _phi2(t: float) -> float:
    return (_phi1(t) - 1.0) / t


def sample_res_multistep(model, x, sigmas, run: SamplerRun, eta=0.0, cfg_pp=False):
    """RES second-order multistep (Zhang et al. 2023); eta > 0 is the ancestral form."""
    s, noise = [float(v) for v in sigmas], run.gaussian(x)
    if cfg_pp:
        _uncond_model(model)
    old, old_down = None, None
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        uncond = model.last_uncond if cfg_pp else denoised
        run.step(i, len(s) - 1, x, denoised)
        down, up = ancestral_step(s[i], s[i + 1], eta)
        if down == 0 or old is None:
            if cfg_pp:
                x = denoised + to_d(x, s[i], uncond) * down
            else:
                x = x + to_d(x, s[i], denoised) * (down - s[i])
        else:
            h = math.log(s[i]) - math.log(down)
            c2 = (math.log(old_down) - math.log(s[i - 1])) / h
            b2 = _phi2(-h) / c2 if c2 else 0.0
            b1 = _phi1(-h) - b2
            if cfg_pp:
                x = x + (denoised - uncond)
            x = math.exp(-h) * x + h * (b1 * uncond + b2 * old)
        if s[i + 1] > 0 and up:
            x = x + noise() * up
        old, old_down = uncond, down
    return x


def sample_gradient_estimation(model, x, sigmas, run: SamplerRun, gamma=2.0, cfg_pp=False):
    """Euler with a gradient-estimation correction from the previous step's derivative."""
    s, old_d = [float(v) for v in sigmas], None
    if cfg_pp:
        _uncond_model(model)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        d = to_d(x, s[i], model.last_uncond if cfg_pp else denoised)
        run.step(i, len(s) - 1, x, denoised)
        dt = s[i + 1] - s[i]
        if s[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * s[i + 1] if cfg_pp else x + d * dt
            if old_d is not None:
                x = x + (gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


def sample_euler_ancestral_cfg_pp(model, x, sigmas, run: SamplerRun, eta: float = 1.0):
    """Euler (ancestral for eta > 0) along the unguided prediction, guidance added after."""
    s, noise = [float(v) for v in sigmas], run.gaussian(x)
    _uncond_model(model)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        if s[i + 1] == 0:
            x = denoised
            continue
        down, up = ancestral_step(s[i], s[i + 1], eta)
        x = denoised + down * to_d(x, s[i], model.last_uncond)
        if eta > 0 and up:
            x = x + noise() * up
    return x


def sample_dpmpp_2s_ancestral_cfg_pp(model, x, sigmas, run: SamplerRun, eta: float = 1.0):
    """DPM-Solver++(2S) ancestral, CFG++ as ComfyUI writes it: both half-steps start from
    x + (guided − unguided) and step with the guided predictions, then the fresh noise."""
    s, noise = [float(v) for v in sigmas], run.gaussian(x)
    _uncond_model(model)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        uncond = model.last_uncond
        run.step(i, len(s) - 1, x, denoised)
        down, up = ancestral_step(s[i], s[i + 1], eta)
        if down == 0:
            x = denoised
        else:
            h = math.log(s[i]) - math.log(down)
            mid = s[i] * math.exp(-h / 2)
            shifted = x + (denoised - uncond)
            x_mid = (mid / s[i]) * shifted - math.expm1(-h / 2) * denoised
            x = (down / s[i]) * shifted - math.expm1(-h) * model(x_mid, mid)
        if s[i + 1] > 0:
            x = x + noise() * up
    return x


def sample_dpmpp_2m_cfg_pp(model, x, sigmas, run: SamplerRun):
    """DPM-Solver++(2M) with CFG++ guidance."""
    s, old = [float(v) for v in sigmas], None
    _uncond_model(model)
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        uncond = model.last_uncond
        run.step(i, len(s) - 1, x, denoised)
        if s[i + 1] == 0:
            x = denoised
        else:
            h = math.log(s[i]) - math.log(s[i + 1])
            ratio = math.exp(-h)
            mix = -ratio * uncond
            if old is not None:
                r = (math.log(s[i - 1]) - math.log(s[i])) / h
                mix = mix - math.expm1(-h) * (1 / (2 * r)) * (denoised - old)
            x = denoised + mix + ratio * x
        old = uncond
    return x


def _er_noise_scaler(value):
    """ER-SDE's default noise scaling function λ·(exp(λ^0.3) + 10)."""
    return value * (value**0.3).exp() + 10.0 * value


def sample_er_sde(model, x, sigmas, run: SamplerRun, max_stage: int = 3, points: int = 200):
    """ER-SDE-Solver-3 (Cui et al. 2023), written for discrete ε/v models where the solver's
    λ is σ itself; the integrals of stages 2 and 3 are Riemann sums over ``points`` points."""
    import torch

    s, noise = [float(v) for v in sigmas], run.gaussian(x)
    lam = torch.tensor(s, dtype=torch.float64)
    scale = _er_noise_scaler
    index = torch.arange(points, dtype=torch.float64)
    old = old_d = None
    for i in range(len(s) - 1):
        denoised = model(x, s[i])
        run.step(i, len(s) - 1, x, denoised)
        stage = min(max_stage, i + 1)
        if s[i + 1] == 0:
            x = denoised
        else:
            r = float(scale(lam[i + 1]) / scale(lam[i]))
            x = r * x + (1 - r) * denoised
            if stage >= 2:
                dt = s[i + 1] - s[i]
                step = -dt / points
                positions = lam[i + 1] + index * step
                scaled = scale(positions)
                integral = float((1 / scaled).sum() * step)
                d = (denoised - old) / (s[i] - s[i - 1])
                x = x + (dt + integral * float(scale(lam[i + 1]))) * d
                if stage >= 3:
                    integral_u = float(((positions - lam[i]) / scaled).sum() * step)
                    u = (d - old_d) / ((s[i] - s[i - 2]) / 2)
                    x = x + (dt**2 / 2 + integral_u * float(scale(lam[i + 1]))) * u
                old_d = d
            spread = s[i + 1] ** 2 - s[i] ** 2 * r**2
            x = x + noise() * math.sqrt(spread if spread > 0 else 0.0)
        old = denoised
    return x
