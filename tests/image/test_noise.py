"""Noise nodes: the statistics each one promises, seeding, and running inside a workflow."""

from __future__ import annotations

import pytest
import torch

from gf_image import noise
from graphflow import EventLog, Executor, Float, Image, Int, Registry, node
from graphflow.events import Progress
from support import link, make_workflow, registry_with


def flat(value: float, size: int = 256, batch: int = 1) -> torch.Tensor:
    """A uniform IMAGE of the given grey value."""
    return torch.full((batch, size, size, 3), value)


def horizontal_correlation(field: torch.Tensor, lag: int) -> float:
    """Normalised autocorrelation of a (H, W) field at a horizontal shift of ``lag`` pixels."""
    centred = field - field.mean()
    spectrum = torch.fft.rfft2(centred)
    correlation = torch.fft.irfft2(spectrum * spectrum.conj(), s=centred.shape)
    return (correlation[0, lag] / correlation[0, 0]).item()


# -- Gaussian noise ---------------------------------------------------------------------------


def test_gaussian_noise_has_mean_zero_and_variance_sigma_squared_on_mid_grey():
    sigma = 0.05  # mid-grey ± 10 sigma: clamping never acts
    added = noise.gaussian_noise(flat(0.5), sigma=sigma, seed=3) - 0.5
    assert abs(added.mean().item()) < 1e-3  # 3 standard errors over 196 608 samples
    assert added.var().item() == pytest.approx(sigma**2, rel=0.02)


def test_gaussian_noise_is_reproducible_for_a_seed_and_changes_with_it():
    image = flat(0.5, size=32)
    first = noise.gaussian_noise(image, seed=7)
    assert torch.equal(first, noise.gaussian_noise(image, seed=7))
    assert not torch.equal(first, noise.gaussian_noise(image, seed=8))


def test_monochrome_gaussian_noise_is_the_same_in_every_channel():
    out = noise.gaussian_noise(flat(0.5, size=32), sigma=0.1, monochrome=True)
    assert torch.equal(out[..., 0], out[..., 1]) and torch.equal(out[..., 0], out[..., 2])


def test_colour_gaussian_noise_is_independent_per_channel():
    added = noise.gaussian_noise(flat(0.5), sigma=0.05) - 0.5
    channels = added.reshape(-1, 3).T
    correlation = torch.corrcoef(channels)
    assert correlation[0, 1].abs() < 0.02 and correlation[1, 2].abs() < 0.02


def test_gaussian_noise_is_clamped_to_the_unit_range():
    out = noise.gaussian_noise(flat(0.5, size=64), sigma=1.0)
    assert out.min() == 0.0 and out.max() == 1.0


# -- shot noise -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.1, 0.5])
def test_shot_noise_variance_equals_mean_in_photon_units(value):
    photons = 400.0  # mean 40 or 200 photons: far from the clip at 400
    counts = noise.shot_noise(flat(value), photons=photons, seed=1) * photons
    expected = value * photons
    assert counts.mean().item() == pytest.approx(expected, rel=0.005)
    assert counts.var().item() == pytest.approx(expected, rel=0.02)


def test_shot_noise_counts_whole_photons():
    counts = noise.shot_noise(flat(0.3, size=32), photons=50.0) * 50.0
    assert torch.allclose(counts, counts.round(), atol=1e-4)


def test_ten_times_the_signal_to_noise_takes_a_hundred_times_the_photons():
    dim = noise.shot_noise(flat(0.5), photons=100.0).std()
    bright = noise.shot_noise(flat(0.5), photons=10_000.0).std()
    assert (dim / bright).item() == pytest.approx(10.0, rel=0.05)


def test_shot_noise_is_reproducible_for_a_seed_and_changes_with_it():
    image = flat(0.5, size=32)
    first = noise.shot_noise(image, seed=2)
    assert torch.equal(first, noise.shot_noise(image, seed=2))
    assert not torch.equal(first, noise.shot_noise(image, seed=3))


# -- film grain -------------------------------------------------------------------------------


def grain_of(value: float, **settings) -> torch.Tensor:
    """What film grain adds to a flat image (full intensity, one grain layer)."""
    image = flat(value, size=settings.pop("size", 128))
    grained = noise.film_grain(image, intensity=1.0, monochrome=True, **settings)
    return (grained - image)[0, ..., 0]


def test_film_grain_is_identical_for_the_same_seed():
    image = torch.rand(1, 48, 48, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noise.film_grain(image, seed=5), noise.film_grain(image, seed=5))


def test_film_grain_differs_for_another_seed():
    image = flat(0.5, size=48)
    assert not torch.equal(noise.film_grain(image, seed=5), noise.film_grain(image, seed=6))


def test_film_grain_is_strongest_in_the_mid_tones():
    # Boolean model: a point is covered with probability u, variance u(1 − u).
    shadows, mid, highlights = (grain_of(v, seed=4).std() for v in (0.03, 0.5, 0.97))
    assert mid > 2.0 * shadows and mid > 2.0 * highlights


@pytest.mark.parametrize("value", [0.2, 0.5, 0.8])
def test_film_grain_keeps_the_mean_brightness(value):
    # Coverage follows exposure exactly, so the grain adds texture but no bias.
    assert abs(grain_of(value, size=256, seed=9).mean().item()) < 0.01


def test_bigger_grains_keep_the_grain_correlated_over_longer_distances():
    correlations = [
        horizontal_correlation(grain_of(0.5, grain_size=size, size=192), lag=2)
        for size in (0.5, 1.0, 2.0, 3.0)
    ]
    assert correlations == sorted(correlations)
    assert correlations[0] < 0.05 and correlations[-1] > 0.4


@pytest.mark.parametrize("grain_size", [1, 3])
def test_grain_correlation_ends_at_the_grain_diameter(grain_size):
    # Two points are covered by one grain only if they are less than a diameter apart.
    grain = grain_of(0.5, grain_size=grain_size, size=256)
    assert horizontal_correlation(grain, lag=grain_size) > 0.25
    assert abs(horizontal_correlation(grain, lag=2 * grain_size + 1)) < 0.08


@pytest.mark.parametrize("radius", [1.0, 2.0, 2.5, 6.0])
def test_both_disc_sums_equal_a_convolution_with_the_disc(radius):
    # Radius 1 and 2 take the shifted-slice sum, 2.5 and 6 the prefix-sum runs.
    rows = noise._disc_rows(radius)
    reach = max(half for _, half in rows)
    field = torch.rand(40 + 2 * reach, 50 + 2 * reach, generator=torch.Generator().manual_seed(3))
    kernel = torch.zeros(2 * reach + 1, 2 * reach + 1)
    for dy, half in rows:
        kernel[reach + dy, reach - half : reach + half + 1] = 1.0
    span = range(-reach, reach + 1)
    cells = sum(1 for dy in span for dx in span if dy * dy + dx * dx <= radius * radius + 1e-6)
    assert kernel.sum() == cells
    expected = torch.nn.functional.conv2d(field[None, None], kernel[None, None])[0, 0]
    assert torch.allclose(noise._disc_sum(field, rows, reach), expected, atol=1e-5)


@pytest.mark.parametrize("grain_size", [2.0, 4.0])
def test_big_grains_have_soft_edges_not_whole_pixels(grain_size):
    # Each pixel sees the covered fraction of its area: pixels on a grain's edge are partly
    # covered (2 × 2 cells a pixel at least), not all in or all out (jagged grains).
    value = 0.5  # the expected coverage: grain + value is the covered fraction
    covered = grain_of(value, grain_size=grain_size, size=128, seed=2) + value
    partly = ((covered > 0.05) & (covered < 0.95)).float().mean().item()
    assert partly > 0.05


def test_monochrome_film_grain_is_the_same_in_every_channel():
    out = noise.film_grain(flat(0.5, size=32), intensity=0.5, monochrome=True)
    assert torch.equal(out[..., 0], out[..., 1]) and torch.equal(out[..., 0], out[..., 2])


def test_colour_film_grain_has_its_own_grains_per_channel():
    out = noise.film_grain(flat(0.5, size=32), intensity=0.5, monochrome=False)
    assert not torch.equal(out[..., 0], out[..., 1])


def test_film_grain_of_intensity_zero_returns_the_image():
    image = torch.rand(2, 16, 24, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(noise.film_grain(image, intensity=0.0), image)


@pytest.mark.parametrize("spec", noise.NODES, ids=lambda spec: spec.id)
def test_noise_keeps_shape_dtype_and_the_unit_range(spec):
    image = torch.rand(2, 20, 30, 3, generator=torch.Generator().manual_seed(0)).half()
    out = spec(image)
    assert out.shape == image.shape and out.dtype == torch.float16
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_gaussian_noise_is_drawn_by_a_cpu_generator_for_the_seed():
    # What makes one seed give the same noise on every device: the draw is the CPU's.
    sigma = 0.05
    expected = torch.randn(1, 32, 32, 3, generator=torch.Generator().manual_seed(11)) * sigma
    added = noise.gaussian_noise(flat(0.5, size=32), sigma=sigma, seed=11) - 0.5
    assert torch.allclose(added, expected, atol=1e-6)


def test_shot_noise_is_drawn_by_a_cpu_generator_for_the_seed():
    image = flat(0.5, size=32)
    expected = torch.poisson(image * 100.0, generator=torch.Generator().manual_seed(4)) / 100.0
    assert torch.equal(noise.shot_noise(image, photons=100.0, seed=4), expected.clamp(0, 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("spec", noise.NODES, ids=lambda spec: spec.id)
def test_a_seed_gives_the_same_noise_on_cpu_and_gpu(spec):
    image = torch.rand(1, 24, 32, 3, generator=torch.Generator().manual_seed(2))
    on_cpu = spec(image, seed=9)
    on_gpu = spec(image.cuda(), seed=9)
    assert on_gpu.device.type == "cuda"
    # The draws are identical; GPU arithmetic after them may flip a rare grain threshold, so
    # compare the mean difference (other seeds' noise differs by ~0.05 on average).
    assert (on_gpu.cpu() - on_cpu).abs().mean() < 1e-4


# -- in a workflow ----------------------------------------------------------------------------


@node("t.grey")
def grey(value: Float = 0.5, size: Int(min=1) = 16) -> Image:
    """A flat grey image."""
    return flat(value, size=size)


@pytest.fixture
def registry() -> Registry:
    return registry_with(*noise.NODES, grey)


def test_film_grain_runs_in_a_workflow_with_progress_per_channel(registry):
    workflow = make_workflow(
        {
            "grey": ("t.grey", {"size": 16}),
            "grain": ("image.film_grain", {"image": link("grey", "image"), "seed": 1}),
            "show": ("image.preview", {"images": link("grain", "image")}),
        }
    )
    log = EventLog()
    result = Executor(registry, observers=[log]).run(workflow, outputs=["grain"])
    assert result.ok, result.error
    assert result.outputs["grain"]["image"].shape == (1, 16, 16, 3)
    assert [(e.value, e.total) for e in log.of_type(Progress)] == [(1, 3), (2, 3), (3, 3)]
