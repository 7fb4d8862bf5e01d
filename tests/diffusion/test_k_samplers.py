"""The sigma-space samplers (gf_diffusion/k_samplers.py, k_solvers.py) on an analytic toy:
data ~ N(μ, s²) per coordinate, whose exact denoiser is D(x, σ) = μ + s²/(s²+σ²)·(x − μ)
and whose probability-flow ODE is solved exactly by x(σ) = μ + √((s²+σ²)/(s²+σ0²))·(x0 − μ).
Single steps are checked against the update rules written out here; whole runs against the
exact solution (ODE samplers) or the data distribution (stochastic ones)."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torchsde

from gf_diffusion import k_samplers as ks
from gf_diffusion import k_solvers
from gf_diffusion.k_sampling import SAMPLERS, comfy_noise, unsupported_sampler
from gf_diffusion.sigmas import ModelSigmas, sampler_sigmas

MU, S = 0.5, 0.7
SEED = 1234


def denoiser(x, sigma):
    return MU + S * S / (S * S + sigma * sigma) * (x - MU)


class Guided:
    """Classifier-free guidance between two Gaussian toys (positive mean ``mu_c``, negative
    ``mu_u``), reporting the unguided prediction as KDenoiser does."""

    def __init__(self, cfg=1.0, mu_c=MU, mu_u=MU):
        self.cfg, self.mu_c, self.mu_u = cfg, mu_c, mu_u
        self.keep_uncond, self.last_uncond = False, None

    def __call__(self, x, sigma):
        cond = self.mu_c + S * S / (S * S + sigma * sigma) * (x - self.mu_c)
        self.last_uncond = self.mu_u + S * S / (S * S + sigma * sigma) * (x - self.mu_u)
        return self.last_uncond + self.cfg * (cond - self.last_uncond)


def exact(x0, sigma0, sigma):
    return MU + math.sqrt((S * S + sigma * sigma) / (S * S + sigma0 * sigma0)) * (x0 - MU)


@pytest.fixture(scope="module")
def ms():
    return ModelSigmas.from_config({"beta_schedule": "scaled_linear"})


def _x(n=64, sigma=3.0):
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(0)) * sigma


def _run(name, x, sigmas, ms=None, model=None, **options):
    fn = SAMPLERS[name] if not options else partial(SAMPLERS[name], **options)
    sigmas = torch.tensor(sigmas, dtype=torch.float32)
    model = model or Guided()
    return fn(model, x.clone(), sigmas, ks.SamplerRun(seed=SEED, model_sigmas=ms))


def _gauss(x):  # ComfyUI's ancestral noise on the CPU: a generator seeded with seed + 1
    return torch.randn(x.shape, generator=torch.Generator().manual_seed(SEED + 1))


def _close(a, b, tol=1e-5):
    assert torch.allclose(a, b, atol=tol, rtol=tol), float((a - b).abs().max())


def _s(sigmas):
    return [float(torch.tensor(v, dtype=torch.float32)) for v in sigmas]


def test_euler_heun_dpm2_single_steps():
    x = _x()
    s0, s1 = _s([3.0, 1.5])
    d = (x - denoiser(x, s0)) / s0
    _close(_run("euler", x, [s0, s1]), x + d * (s1 - s0))
    _close(_run("ddim", x, [s0, s1]), x + d * (s1 - s0))
    x2 = x + d * (s1 - s0)
    d2 = (x2 - denoiser(x2, s1)) / s1
    _close(_run("heun", x, [s0, s1]), x + (d + d2) / 2 * (s1 - s0))
    mid = math.sqrt(s0 * s1)
    xm = x + d * (mid - s0)
    _close(_run("dpm_2", x, [s0, s1]), x + (xm - denoiser(xm, mid)) / mid * (s1 - s0))
    # the last step to 0 is Euler's, which lands on D(x)
    _close(_run("heun", x, [s0, 0.0]), denoiser(x, s0))


def test_ancestral_single_steps_use_the_seeded_generator():
    x = _x()
    s0, s1 = _s([3.0, 1.5])
    up = math.sqrt(s1**2 * (s0**2 - s1**2) / s0**2)
    down = math.sqrt(s1**2 - up**2)
    d = (x - denoiser(x, s0)) / s0
    expected = x + d * (down - s0) + _gauss(x) * up
    _close(_run("euler_ancestral", x, [s0, s1]), expected)
    mid = math.sqrt(s0 * down)
    xm = x + d * (mid - s0)
    d2 = (xm - denoiser(xm, mid)) / mid
    _close(_run("dpm_2_ancestral", x, [s0, s1]), x + d2 * (down - s0) + _gauss(x) * up)
    # DPM++(2S) ancestral: midpoint in log σ towards σ_down, then the data-prediction step
    t, tn = -math.log(s0), -math.log(down)
    h = tn - t
    sm = math.exp(-(t + h / 2))
    x_mid = (sm / s0) * x - math.expm1(-h / 2) * denoiser(x, s0)
    expected = (down / s0) * x - math.expm1(-h) * denoiser(x_mid, sm) + _gauss(x) * up
    _close(_run("dpmpp_2s_ancestral", x, [s0, s1]), expected)


def test_lms_second_step_uses_the_lagrange_integrals():
    x = _x()
    s0, s1, s2 = _s([3.0, 2.0, 1.0])
    d0 = (x - denoiser(x, s0)) / s0
    x1 = x + d0 * (s1 - s0)
    d1 = (x1 - denoiser(x1, s1)) / s1
    # ∫_{s1}^{s2} (τ − s0)/(s1 − s0) dτ and ∫_{s1}^{s2} (τ − s1)/(s0 − s1) dτ
    c1 = ((s2 - s0) ** 2 - (s1 - s0) ** 2) / (2 * (s1 - s0))
    c0 = (s2 - s1) ** 2 / (2 * (s0 - s1))
    _close(_run("lms", x, [s0, s1, s2]), x1 + c1 * d1 + c0 * d0, tol=1e-4)
    # as ComfyUI's sample_lms, the step to σ = 0 is the prediction itself
    _close(_run("lms", x, [s0, s1, 0.0]), denoiser(x1, s1))


def test_dpmpp_2m_two_steps():
    x = _x()
    s0, s1, s2 = _s([3.0, 2.0, 1.0])
    den0 = denoiser(x, s0)
    x1 = (s1 / s0) * x - math.expm1(-math.log(s0 / s1)) * den0
    den1 = denoiser(x1, s1)
    h, h_last = math.log(s1 / s2), math.log(s0 / s1)
    r = h_last / h
    mixed = (1 + 1 / (2 * r)) * den1 - (1 / (2 * r)) * den0
    _close(_run("dpmpp_2m", x, [s0, s1, s2]), (s2 / s1) * x1 - math.expm1(-h) * mixed)


def test_sde_samplers_take_brownian_tree_noise_seeded_with_the_seed():
    x = _x()
    s0, s1 = _s([3.0, 1.5])
    tree = torchsde.BrownianTree(s1, torch.zeros_like(x), s0, entropy=SEED)
    noise = -tree(s1, s0) / math.sqrt(s0 - s1)  # ComfyUI's sign: the increment towards σ1
    h = math.log(s0 / s1)
    expected = (
        (s1 / s0) * math.exp(-h) * x
        - math.expm1(-2 * h) * denoiser(x, s0)
        + noise * s1 * math.sqrt(-math.expm1(-2 * h))
    )
    _close(_run("dpmpp_2m_sde", x, [s0, s1]), expected)
    _close(_run("dpmpp_3m_sde", x, [s0, s1]), expected)  # one step: both first order
    # without noise (eta 0) the SDE solvers reduce to their ODE forms
    first_order = (s1 / s0) * x + (1 - s1 / s0) * denoiser(x, s0)
    _close(_run("dpmpp_3m_sde", x, [s0, s1], eta=0.0), first_order)
    _close(_run("dpmpp_2m_sde", x, [s0, s1], eta=0.0), first_order)


def test_dpmpp_sde_single_step_with_eta_zero_is_dpm_solver_2():
    x = _x()
    s0, s1 = _s([3.0, 1.0])
    t, tn = -math.log(s0), -math.log(s1)
    sm = math.exp(-(t + (tn - t) / 2))
    x_mid = (sm / s0) * x + (1 - sm / s0) * denoiser(x, s0)
    expected = (s1 / s0) * x + (1 - s1 / s0) * denoiser(x_mid, sm)
    _close(_run("dpmpp_sde", x, [s0, s1], eta=0.0), expected)


def test_ddpm_lcm_and_dpm_fast_single_steps():
    x = _x()
    s0, s1 = _s([3.0, 1.5])
    eps = (x - denoiser(x, s0)) / s0
    a, a_prev = 1 / (s0**2 + 1), 1 / (s1**2 + 1)
    alpha = a / a_prev
    mean = (x / math.sqrt(1 + s0**2) - (1 - alpha) * eps / math.sqrt(1 - a)) / math.sqrt(alpha)
    spread = math.sqrt((1 - alpha) * (1 - a_prev) / (1 - a))
    _close(_run("ddpm", x, [s0, s1]), (mean + spread * _gauss(x)) * math.sqrt(1 + s1**2))
    _close(_run("lcm", x, [s0, s1]), denoiser(x, s0) + _gauss(x) * s1)
    # one evaluation: DPM-Solver-1 from σ0 to the last non-zero sigma
    expected = (s1 / s0) * x + (1 - s1 / s0) * denoiser(x, s0)
    _close(_run("dpm_fast", x, [s0, s1, 0.0][:2]), expected)
    assert k_solvers.dpm_fast_orders(3) == [2, 1] and k_solvers.dpm_fast_orders(7) == [3, 3, 1]
    assert sum(k_solvers.dpm_fast_orders(20)) == 20


ODE_SAMPLERS = {  # sampler: largest allowed error against the exact ODE at 30 karras steps
    "euler": 0.2,
    "heun": 0.03,
    "dpm_2": 0.03,
    "lms": 0.03,
    "dpm_fast": 0.03,
    "dpm_adaptive": 0.15,  # its default tolerances (rtol 0.05) are loose; see below
    "dpmpp_2m": 0.03,
    "ipndm": 0.03,
    "uni_pc": 0.03,
    "uni_pc_bh2": 0.03,
    "heunpp2": 0.2,  # weights lean on the current derivative: near first order
    "ipndm_v": 0.03,
    "res_multistep": 0.03,
    "gradient_estimation": 0.2,  # Euler plus a correction tuned for real models
}


@pytest.mark.parametrize("name", list(ODE_SAMPLERS))
def test_ode_samplers_converge_to_the_exact_solution(ms, name):
    sigmas = sampler_sigmas(ms, "karras", 30, name)
    x = _x(256, float(sigmas[0]))
    out = _run(name, x, sigmas.tolist(), ms)
    end = float(sigmas[-1]) if name not in ("dpm_fast", "dpm_adaptive") else float(sigmas[-2])
    error = float((out - exact(x, float(sigmas[0]), end)).abs().max())
    assert error < ODE_SAMPLERS[name], error


def test_dpm_adaptive_error_follows_its_tolerance(ms):
    sigmas = sampler_sigmas(ms, "karras", 30, "dpm_adaptive")
    x = _x(256, float(sigmas[0]))
    target = exact(x, float(sigmas[0]), float(sigmas[-2]))
    loose = _run("dpm_adaptive", x, sigmas.tolist(), rtol=1e-3, atol=1e-4)
    tight = _run("dpm_adaptive", x, sigmas.tolist(), rtol=1e-5, atol=1e-6)
    assert float((tight - target).abs().max()) < 2e-4 < float((loose - target).abs().max())


STOCHASTIC = [
    "euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde",
    "dpmpp_2m_sde_heun", "dpmpp_3m_sde", "ddpm", "lcm", "res_multistep_ancestral", "er_sde",
]  # fmt: skip


FIRST_ORDER = {"euler_ancestral", "ddpm"}  # their variance bias needs many steps to vanish


@pytest.mark.parametrize("name", STOCHASTIC)
def test_stochastic_samplers_reach_the_data_distribution(ms, name):
    sigmas = sampler_sigmas(ms, "karras", 300 if name in FIRST_ORDER else 30, name)
    x = _x(8000, float(sigmas[0]))
    out = _run(name, x, sigmas.tolist(), ms)
    assert abs(float(out.mean()) - MU) < 0.03
    if name == "lcm":  # ends on D(x): the posterior mean, narrower than the data
        assert float(out.std()) < S
    else:
        assert abs(float(out.std()) - S) < 0.03 * S


def test_comfy_noise_is_manual_seed_then_randn():
    shape = (2, 4, 8, 8)
    torch.manual_seed(42)
    expected = torch.randn(shape)
    assert torch.equal(comfy_noise(shape, 42), expected)
    big = comfy_noise(shape, 2**64 - 1)
    torch.manual_seed(2**64 - 1)
    assert torch.equal(big, torch.randn(shape))
    # LatentFromBatch items draw what they would as part of the whole batch
    torch.manual_seed(7)
    whole = torch.cat([torch.randn((1, 4, 8, 8)) for _ in range(4)])
    assert torch.equal(comfy_noise((2, 4, 8, 8), 7, batch_index=[3, 1]), whole[[3, 1]])
    # on the CPU the sampler's noise is not the initial noise again (ComfyUI seeds it seed + 1)
    first = ks.SamplerRun(seed=42).gaussian(torch.zeros(shape))()
    assert not torch.equal(first, expected)
    assert torch.equal(first, torch.randn(shape, generator=torch.Generator().manual_seed(43)))
    noise = ks.SamplerRun(seed=2**64 - 1).gaussian(torch.zeros(3))()  # sampler noise too
    assert noise.shape == (3,)


def test_unimplemented_comfy_samplers_are_named_in_the_message():
    assert unsupported_sampler("euler") is None
    message = unsupported_sampler("seeds_2")
    assert "seeds_2" in message and "not implemented" in message
    assert "unknown sampler" in unsupported_sampler("nonsense")
    assert set(SAMPLERS) <= set(ks.SAMPLER_NAMES)
    assert len(ks.SAMPLER_NAMES) == 42


CFG_PP = {
    "euler_cfg_pp": "euler",
    "euler_ancestral_cfg_pp": "euler_ancestral",
    "dpmpp_2s_ancestral_cfg_pp": "dpmpp_2s_ancestral",
    "dpmpp_2m_cfg_pp": "dpmpp_2m",
    "res_multistep_cfg_pp": "res_multistep",
    "res_multistep_ancestral_cfg_pp": "res_multistep_ancestral",
    "gradient_estimation_cfg_pp": "gradient_estimation",
}


@pytest.mark.parametrize("name", list(CFG_PP))
def test_cfg_pp_samplers_without_guidance_are_their_base_samplers(ms, name):
    sigmas = sampler_sigmas(ms, "karras", 8, name).tolist()
    x = _x(64, sigmas[0])
    model = Guided()
    _close(_run(name, x, sigmas, model=model), _run(CFG_PP[name], x, sigmas), tol=1e-4)
    assert model.keep_uncond  # the sampler asked for the negative prompt's prediction


def test_dpmpp_2s_ancestral_cfg_pp_single_step_as_comfyui():
    """ComfyUI's rule: both half-steps start from x + (guided − unguided) and use the guided
    predictions (the midpoint's too); the ancestral noise comes last."""
    x = _x()
    s0, s1 = _s([3.0, 1.5])
    model = Guided(cfg=3.0, mu_c=0.8, mu_u=0.1)
    guided = model(x, s0)
    shifted = x + (guided - model.last_uncond)
    up = math.sqrt(s1**2 * (s0**2 - s1**2) / s0**2)
    down = math.sqrt(s1**2 - up**2)
    h = math.log(s0) - math.log(down)
    mid = s0 * math.exp(-h / 2)
    x_mid = (mid / s0) * shifted - math.expm1(-h / 2) * guided
    expected = (down / s0) * shifted - math.expm1(-h) * model(x_mid, mid) + _gauss(x) * up
    _close(_run("dpmpp_2s_ancestral_cfg_pp", x, [s0, s1], model=Guided(3.0, 0.8, 0.1)), expected)


def test_euler_cfg_pp_steps_along_the_unguided_prediction():
    x = _x()
    s0, s1 = _s([3.0, 1.5])
    model = Guided(cfg=3.0, mu_c=0.8, mu_u=0.1)
    guided = model(x, s0)
    expected = guided + s1 * (x - model.last_uncond) / s0
    _close(_run("euler_cfg_pp", x, [s0, s1], model=Guided(3.0, 0.8, 0.1)), expected)
    # gradient estimation: Euler, then (γ − 1)·(d − d_prev)·dt from the second step on
    s2 = _s([0.5])[0]
    d0 = (x - guided) / s0
    x1 = x + d0 * (s1 - s0)
    d1 = (x1 - model(x1, s1)) / s1
    expected = x1 + d1 * (s2 - s1) + (d1 - d0) * (s2 - s1)
    _close(_run("gradient_estimation", x, [s0, s1, s2], model=Guided(3.0, 0.8, 0.1)), expected)


def test_heunpp2_three_stage_step():
    x = _x()
    s0, s1, s2, s3 = _s([3.0, 2.0, 1.0, 0.5])
    d = (x - denoiser(x, s0)) / s0
    x2 = x + d * (s1 - s0)
    d2 = (x2 - denoiser(x2, s1)) / s1
    x3 = x2 + d2 * (s2 - s1)
    d3 = (x3 - denoiser(x3, s2)) / s2
    w2, w3 = s1 / (3 * s0), s2 / (3 * s0)
    xa = x + ((1 - w2 - w3) * d + w2 * d2 + w3 * d3) * (s1 - s0)
    # then a two-stage Heun step weighted by σ1/(2σ0), and Euler on the last step
    d = (xa - denoiser(xa, s1)) / s1
    xb2 = xa + d * (s2 - s1)
    d2 = (xb2 - denoiser(xb2, s2)) / s2
    w2 = s2 / (2 * s0)
    xb = xa + ((1 - w2) * d + w2 * d2) * (s2 - s1)
    expected = xb + (xb - denoiser(xb, s2)) / s2 * (s3 - s2)
    _close(_run("heunpp2", x, [s0, s1, s2, s3]), expected)


def test_er_sde_first_step():
    x = _x()
    s0, s1 = _s([3.0, 1.5])

    def scale(v):
        return v * (math.exp(v**0.3) + 10.0)

    r = scale(s1) / scale(s0)
    expected = r * x + (1 - r) * denoiser(x, s0) + _gauss(x) * math.sqrt(s1**2 - s0**2 * r**2)
    _close(_run("er_sde", x, [s0, s1]), expected)
