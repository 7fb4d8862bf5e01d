"""ComfyUI's schedules (gf_diffusion/sigmas.py) against reference numbers derived here, in
float64, from the written rules (COMFY_COMPAT §5.4/§5.6), and against diffusers'
EulerDiscreteScheduler where the two are documented to agree."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import beta as beta_distribution

from gf_diffusion.sigmas import (
    SCHEDULER_NAMES,
    ModelSigmas,
    UnknownScheduler,
    advanced_cut,
    ksampler_sigmas,
    sampler_sigmas,
    scheduler_sigmas,
)

SD_CONFIG = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
STEPS = (1, 2, 20, 30)
RTOL = 2e-6  # float32 table and arithmetic against float64 references
MAX_ERRORS: dict[str, float] = {}


@pytest.fixture(scope="module")
def ms() -> ModelSigmas:
    return ModelSigmas.from_config(SD_CONFIG)


def _table() -> np.ndarray:
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alpha_bar = np.cumprod(1 - betas)
    return np.sqrt((1 - alpha_bar) / alpha_bar)


TABLE = _table()
LOG = np.log(TABLE)


def _sigma_at(t: float) -> float:
    low, high = math.floor(t), math.ceil(t)
    w = t - low
    return math.exp((1 - w) * LOG[low] + w * LOG[high])


def _linear_quadratic(n: int) -> list[float]:
    """Derived from the description: linear to 0.025 over L = n//2 steps, then the quadratic
    with that value and slope at L reaching 1 at n."""
    if n == 1:
        return [TABLE[-1], 0.0]
    L = n // 2
    c, b = 0.025, 0.025 / L
    a = (1 - c - b * (n - L)) / (n - L) ** 2
    s = [0.025 * i / L for i in range(L)] + [
        a * (i - L) ** 2 + b * (i - L) + c for i in range(L, n)
    ]
    return [TABLE[-1] * (1 - v) for v in [*s, 1.0]]


def reference(name: str, n: int) -> list[float]:
    """The float64 reference schedule of ``name`` for ``n`` steps (last value 0)."""
    smin, smax = TABLE[0], TABLE[-1]
    if name == "simple":
        return [TABLE[999 - (i * 1000) // n] for i in range(n)] + [0.0]
    if name == "sgm_uniform":
        return [_sigma_at(t) for t in np.linspace(999, 0, n + 1)[:-1]] + [0.0]
    if name == "karras":
        ramp = [i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        lo, hi = smin ** (1 / 7), smax ** (1 / 7)
        return [(hi + r * (lo - hi)) ** 7 for r in ramp] + [0.0]
    if name == "exponential":
        return [*list(np.exp(np.linspace(math.log(smax), math.log(smin), n))), 0.0]
    if name == "ddim_uniform":
        stride = max(1000 // n, 1)
        return [*[TABLE[i] for i in range(1, 1000, stride)][::-1], 0.0]
    if name == "beta":
        ts = np.rint(999 * beta_distribution.ppf(1 - np.arange(n) / n, 0.6, 0.6)).astype(int)
        kept = [t for k, t in enumerate(ts) if k == 0 or t != ts[k - 1]]
        return [TABLE[t] for t in kept] + [0.0]
    if name == "normal":
        return [_sigma_at(t) for t in np.linspace(999, 0, n)] + [0.0]
    if name == "linear_quadratic":
        return _linear_quadratic(n)
    if name == "kl_optimal":
        u = [i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        return [math.tan(x * math.atan(smin) + (1 - x) * math.atan(smax)) for x in u] + [0.0]
    raise AssertionError(name)


def _max_relative(ours, ref) -> float:
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert ours[-1] == ref[-1] == 0.0
    return float(np.max(np.abs(ours[:-1] - ref[:-1]) / ref[:-1]))


def test_the_sigma_table_is_sd_s(ms):
    assert math.isclose(ms.sigma_min, 0.029167, rel_tol=1e-4)
    assert math.isclose(ms.sigma_max, 14.614641, rel_tol=1e-6)
    assert np.allclose(ms.sigmas.double().numpy(), TABLE, rtol=1e-6)
    assert int(ms.timestep(ms.sigma_max)) == 999 and int(ms.timestep(1.0)) == int(
        np.abs(LOG).argmin()
    )
    assert math.isclose(float(ms.sigma(10.25)), _sigma_at(10.25), rel_tol=1e-6)


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_every_scheduler_matches_its_written_rule(ms, name):
    worst = 0.0
    for n in STEPS:
        ours = scheduler_sigmas(ms, name, n)
        assert ours.dtype == torch.float32
        error = _max_relative(ours, reference(name, n))
        assert error <= RTOL, (name, n, error)
        worst = max(worst, error)
    MAX_ERRORS[name] = worst
    print(f"{name}: max relative error {worst:.2e}")


def test_documented_quirks(ms):
    assert len(scheduler_sigmas(ms, "ddim_uniform", 30)) == 32  # 31 steps for 30 asked
    assert len(scheduler_sigmas(ms, "ddim_uniform", 20)) == 21
    beta = scheduler_sigmas(ms, "beta", 1000)
    assert len(beta) < 1001 and bool((beta[:-2] > beta[1:-1]).all())  # duplicates dropped
    assert len(scheduler_sigmas(ms, "normal", 0)) == 0
    with pytest.raises(UnknownScheduler):
        scheduler_sigmas(ms, "cosine", 10)


def test_denoise_runs_the_tail_of_a_longer_schedule(ms):
    full = scheduler_sigmas(ms, "karras", int(20 / 0.6))
    cut = ksampler_sigmas(ms, "karras", 20, "euler", denoise=0.6)
    assert len(cut) == 21 and torch.equal(cut, full[-21:])
    assert torch.equal(
        ksampler_sigmas(ms, "normal", 20, "euler", 0.99995), scheduler_sigmas(ms, "normal", 20)
    )
    assert len(ksampler_sigmas(ms, "normal", 20, "euler", 0.0)) == 0
    assert len(ksampler_sigmas(ms, "normal", 10, "euler", 0.3)) == 11  # int(33.3) = 33 steps


def test_penultimate_sigma_is_dropped_for_dpm2_and_unipc(ms):
    longer = scheduler_sigmas(ms, "karras", 21)
    for sampler in ("dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"):
        sigmas = sampler_sigmas(ms, "karras", 20, sampler)
        assert len(sigmas) == 21
        assert torch.equal(sigmas, torch.cat([longer[:-2], longer[-1:]]))
    assert torch.equal(
        sampler_sigmas(ms, "karras", 20, "euler"), scheduler_sigmas(ms, "karras", 20)
    )


def test_ksampler_advanced_cuts(ms):
    full = sampler_sigmas(ms, "normal", 20, "euler")
    assert torch.equal(advanced_cut(full, 0, 10000, True), full)
    part = advanced_cut(full, 5, 12, True)
    assert torch.equal(part[:-1], full[5:12]) and float(part[-1]) == 0.0 and len(part) == 8
    leftover = advanced_cut(full, 5, 12, False)
    assert torch.equal(leftover, full[5:13]) and float(leftover[-1]) > 0
    assert advanced_cut(full, 20, 10000, True) is None
    assert advanced_cut(full, 12, 12, True) is None


@pytest.mark.parametrize(
    ("name", "flags", "tolerance"),
    [
        ("normal", {"timestep_spacing": "linspace"}, 4e-5),  # measured 3.3e-5 (§5.6: "3e-5")
        ("karras", {"use_karras_sigmas": True}, 3e-5),
        ("exponential", {"use_exponential_sigmas": True}, 3e-5),
    ],
)
def test_matches_diffusers_euler_where_documented(ms, name, flags, tolerance):
    from diffusers import EulerDiscreteScheduler

    worst = 0.0
    for n in (20, 30):
        scheduler = EulerDiscreteScheduler(**SD_CONFIG, **flags)
        scheduler.set_timesteps(n)
        error = _max_relative(scheduler_sigmas(ms, name, n), scheduler.sigmas.numpy())
        assert error <= tolerance, (name, n, error)
        worst = max(worst, error)
    print(f"{name} vs diffusers: max relative error {worst:.2e}")
