"""The sigma-space denoiser wrapper (gf_diffusion/k_denoiser.py) on a fake UNet whose output
is known: c_in scaling, t(σ), ε and v parameterisations, cfg, weighted and area-restricted
prompts (ComfyUI's feathered area average) and the inpainting mask."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from gf_diffusion.k_denoiser import FEATHER, KDenoiser, MaskedDenoiser, _area_mask
from gf_diffusion.sigmas import ModelSigmas
from gf_diffusion.values import Conditioning, ConditioningEntry

MS = ModelSigmas.from_config({"beta_schedule": "scaled_linear"})


class FakeUNet:
    """Output = the prompt's embedding value (constant per prompt) everywhere, recording the
    inputs it was given."""

    config = SimpleNamespace(addition_embed_type=None)
    dtype = torch.float32

    def __init__(self):
        self.inputs, self.timesteps = [], []

    def __call__(self, x, t, encoder_hidden_states, added_cond_kwargs, return_dict):
        self.inputs.append(x.clone())
        self.timesteps.append(int(t))
        value = encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return (value.expand_as(x).clone(),)


def _prompt(*values, weights=None, areas=None) -> Conditioning:
    entries = []
    for k, value in enumerate(values):
        entry = ConditioningEntry(torch.full((1, 77, 8), float(value)))
        entry.weight = 1.0 if weights is None else weights[k]
        entry.area = None if areas is None else areas[k]
        entries.append(entry)
    return Conditioning(entries)


def test_epsilon_model_input_timestep_and_x0():
    unet = FakeUNet()
    x = torch.randn(2, 4, 8, 8)
    sigma = 3.0
    out = KDenoiser(unet, MS, _prompt(0.5), _prompt(), cfg=1.0)(x, sigma)
    assert torch.allclose(unet.inputs[0], x / math.sqrt(sigma**2 + 1))
    assert unet.timesteps == [int(MS.timestep(sigma))]
    assert torch.allclose(out, x - 0.5 * sigma)


def test_v_prediction_x0():
    ms = ModelSigmas.from_config(
        {"beta_schedule": "scaled_linear", "prediction_type": "v_prediction"}
    )
    x, sigma = torch.randn(1, 4, 8, 8), 2.0
    out = KDenoiser(FakeUNet(), ms, _prompt(0.25), _prompt(), cfg=1.0)(x, sigma)
    c_in = 1 / math.sqrt(sigma**2 + 1)
    assert torch.allclose(out, x * c_in**2 - 0.25 * sigma * c_in, atol=1e-6)


def test_cfg_and_weighted_prompts():
    x, sigma = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), 1.5
    model = KDenoiser(FakeUNet(), MS, _prompt(1.0, 0.0, weights=[3.0, 1.0]), _prompt(0.2), 7.0)
    cond, uncond = x - 0.75 * sigma, x - 0.2 * sigma  # weighted mean (3·1 + 1·0)/4
    assert torch.allclose(model(x, sigma), uncond + 7.0 * (cond - uncond), atol=1e-5)
    assert torch.allclose(model.last_uncond, uncond, atol=1e-6)  # float32 rounding only


def test_an_area_prompt_is_averaged_in_with_feathered_edges():
    x, sigma = torch.zeros(1, 4, 32, 32), 1.0
    area = (16, 16, 8, 8)  # (h, w, y, x) in latent pixels
    positive = _prompt(1.0, 3.0, areas=[None, area])
    out = KDenoiser(FakeUNet(), MS, positive, _prompt(), cfg=1.0)(x, sigma)
    mask = _area_mask(area, x.shape, x.device, x.dtype)
    # ComfyUI's ramp is min(8, side // 4) pixels: 4 for this 16-pixel area
    assert float(mask[4, 4]) == 1.0 and math.isclose(float(mask[0, 8]), 1 / 4)
    assert math.isclose(float(mask[3, 8]), 1.0) and math.isclose(float(mask[15, 8]), 1 / 4)
    expected = -torch.ones(1, 4, 32, 32)
    region = -(1.0 + 3.0 * mask) / (1.0 + mask)
    expected[..., 8:24, 8:24] = region
    assert torch.allclose(out, expected, atol=1e-5)
    touching = _area_mask((16, 16, 0, 0), x.shape, x.device, x.dtype)
    assert float(touching[0, 0]) == 1.0  # no feathering on the latent's border
    wide = _area_mask((40, 12, 8, 0), (1, 4, 64, 64), x.device, x.dtype)
    assert math.isclose(float(wide[0, 6]), 1 / FEATHER)  # 40 // 4 > 8: the full 8-pixel ramp
    assert float(wide[FEATHER, 6]) == 1.0
    assert math.isclose(float(wide[20, 11]), 1 / 3, rel_tol=1e-6)  # 12 // 4 = 3 pixels across
    assert float(wide[20, 0]) == 1.0  # x = 0 touches the border


def test_masked_denoiser_pins_the_unmasked_latent():
    latent, noise = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 4, 8, 8)
    mask[..., :, 4:] = 1.0
    seen = []

    def inner(x, sigma):
        seen.append(x.clone())
        return x * 0.5

    out = MaskedDenoiser(inner, latent, noise, mask)(torch.zeros(1, 4, 8, 8), 2.0)
    assert torch.allclose(seen[0][..., :4], (latent + noise * 2.0)[..., :4])
    assert torch.equal(seen[0][..., 4:], torch.zeros(1, 4, 8, 4))
    assert torch.equal(out[..., :4], latent[..., :4])


def test_a_masked_run_returns_the_sampler_output_as_comfyui_does():
    """ComfyUI pins the unmasked region only inside the model wrapper; a run that stops above
    σ = 0 (leftover noise) returns the original there noised to the last σ, not the clean
    latent."""
    from gf_diffusion.k_sampling import comfy_noise, k_sample

    unet = FakeUNet()
    unet.device = torch.device("cpu")
    samples = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:] = 1.0
    latent = SimpleNamespace(samples=samples, noise_mask=mask, batch_index=None, downscale=8)
    sigmas = torch.tensor([3.0, 1.0], dtype=torch.float32)
    out = k_sample(
        unet, MS, _prompt(0.5), _prompt(), latent, sigmas, sampler="euler", cfg=1.0, seed=5
    )
    noise = comfy_noise(samples.shape, 5)
    expected = samples + noise * 1.0  # Euler from latent + 3·noise towards D = latent
    assert torch.allclose(out[..., :4], expected[..., :4], atol=1e-5)
    assert not torch.allclose(out[..., 4:], expected[..., 4:])


class PromptRecordingUNet(FakeUNet):
    """FakeUNet that also records, per call, the input size and the prompt values."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __call__(self, x, t, encoder_hidden_states, added_cond_kwargs, return_dict):
        values = [round(float(v), 4) for v in encoder_hidden_states.mean(dim=(1, 2))]
        self.calls.append((tuple(x.shape[-2:]), values))
        return super().__call__(x, t, encoder_hidden_states, added_cond_kwargs, return_dict)


def test_an_area_prompt_gets_an_opposite_of_the_same_area_as_in_comfyui():
    """ComfyUI's process_conds pairs every area entry with one of the same area in the other
    list (create_cond_with_same_area_if_none), carrying the other list's prompt."""
    x, sigma = torch.zeros(1, 4, 32, 32), 1.0
    area = (16, 16, 8, 8)
    unet = PromptRecordingUNet()
    model = KDenoiser(unet, MS, _prompt(1.0, 3.0, areas=[None, area]), _prompt(0.2), cfg=7.0)
    model(x, sigma)
    crops = sorted(values for shape, values in unet.calls if shape == (16, 16))
    assert crops == [[0.2], [3.0]]  # the negative is evaluated on the area crop too
    paired = model.negative.entries[-1]
    assert paired.area == area and float(paired.embeds.mean()) == pytest.approx(0.2)
    # the smallest enclosing area of the other list is preferred to a whole-latent entry
    negative = _prompt(0.2, 0.4, 0.6, areas=[None, (32, 32, 0, 0), (24, 24, 4, 4)])
    model = KDenoiser(FakeUNet(), MS, _prompt(3.0, areas=[area]), negative, cfg=7.0)
    assert float(model.negative.entries[-1].embeds.mean()) == pytest.approx(0.6)
    assert len(model.positive.entries) == 1  # no positive entry encloses the larger areas
    # an equal area already there needs no copy
    model = KDenoiser(FakeUNet(), MS, _prompt(3.0, areas=[area]), _prompt(0.2, areas=[area]), 7)
    assert len(model.negative.entries) == 1 and len(model.positive.entries) == 1


class SizeIdsUNet(FakeUNet):
    """An SDXL-shaped fake: pooled embedding 4 wide, 2 numbers per size id; records the ids."""

    def __init__(self, ids: int):
        super().__init__()
        self.config = SimpleNamespace(
            addition_embed_type="text_time",
            projection_class_embeddings_input_dim=4 + 2 * ids,
            addition_time_embed_dim=2,
        )
        self.time_ids = []

    def __call__(self, x, t, encoder_hidden_states, added_cond_kwargs, return_dict):
        self.time_ids.append(added_cond_kwargs["time_ids"].tolist())
        return super().__call__(x, t, encoder_hidden_states, added_cond_kwargs, return_dict)


def _pooled_prompt(value, **fields) -> Conditioning:
    entry = ConditioningEntry(torch.full((1, 77, 8), float(value)), torch.zeros(1, 4), **fields)
    return Conditioning([entry])


def test_sdxl_size_ids_follow_the_model_as_comfyui_encode_adm():
    """The refiner (5 ids) gets ComfyUI's default aesthetic score, 6 for the positive prompt
    and 2.5 for the negative, when the prompt was encoded without one; the base (6 ids)
    ignores a refiner prompt's score and uses its size as the target."""
    x = torch.zeros(1, 4, 8, 8)  # 64×64 image pixels
    refiner = SizeIdsUNet(5)
    KDenoiser(refiner, MS, _pooled_prompt(1.0), _pooled_prompt(0.0), cfg=5.0)(x, 1.0)
    assert sorted(ids for call in refiner.time_ids for ids in call) == [
        [64.0, 64.0, 0.0, 0.0, 2.5],
        [64.0, 64.0, 0.0, 0.0, 6.0],
    ]
    base = SizeIdsUNet(6)
    sizes = ((96, 80), (0, 0), (96, 80))
    positive = _pooled_prompt(1.0, sdxl_sizes=sizes, aesthetic_score=3.0)
    KDenoiser(base, MS, positive, _pooled_prompt(0.0), cfg=1.0)(x, 1.0)
    assert base.time_ids == [[[96.0, 80.0, 0.0, 0.0, 96.0, 80.0]]]


def test_ddim_inpainting_noise_takes_the_largest_seed():
    """ddim's inpainting noise is seeded seed + 1 (ComfyUI's inpaint_options random); at the
    largest seed that wraps instead of overflowing torch.manual_seed."""
    from gf_diffusion.k_sampling import k_sample

    unet = FakeUNet()
    unet.device = torch.device("cpu")
    mask = torch.ones(1, 1, 8, 8)
    mask[..., :4] = 0.0
    latent = SimpleNamespace(
        samples=torch.zeros(1, 4, 8, 8), noise_mask=mask, batch_index=None, downscale=8
    )
    sigmas = torch.tensor([3.0, 1.0], dtype=torch.float32)
    out = k_sample(
        unet, MS, _prompt(0.5), _prompt(), latent, sigmas, sampler="ddim", cfg=1.0,
        seed=2**64 - 1,
    )  # fmt: skip
    torch.manual_seed(0)
    inpaint_noise = torch.randn(1, 4, 8, 8)
    # the model saw the unmasked half pinned to the latent noised with that draw
    assert torch.allclose(unet.inputs[0][..., :4], (inpaint_noise * 3.0 / math.sqrt(10))[..., :4])
    assert out.shape == (1, 4, 8, 8)
