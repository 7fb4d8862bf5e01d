"""Regional prompts (gf_diffusion/regions.py, k_denoiser.py): areas in latent pixels, image
pixels or fractions (resolved with the latent's own VAE scale), masks, mask bounds and
timestep ranges, in the sigma-space denoiser (ComfyUI's calc_cond_batch, on a fake UNet
whose output is known) and in the native sampler's combine (weighted maps)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from gf_diffusion import regions
from gf_diffusion.k_denoiser import KDenoiser, percent_to_sigma
from gf_diffusion.sigmas import ModelSigmas
from gf_diffusion.unet_call import StepInfo
from gf_diffusion.values import Conditioning, ConditioningEntry
from graphflow import Executor, load_plugins
from support import link, make_workflow

MS = ModelSigmas.from_config({"beta_schedule": "scaled_linear"})


class ShapeUNet:
    """ε = the prompt's embedding value everywhere; records (input h, w, prompt values)."""

    config = SimpleNamespace(addition_embed_type=None, in_channels=4)
    dtype = torch.float32

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, encoder_hidden_states, added_cond_kwargs, return_dict, **_):
        values = encoder_hidden_states.mean(dim=(1, 2))
        self.calls.append((tuple(x.shape[-2:]), [round(float(v), 4) for v in values]))
        return (values.view(-1, 1, 1, 1).expand_as(x).clone(),)


def _entry(value: float, **fields) -> ConditioningEntry:
    return ConditioningEntry(torch.full((1, 77, 8), float(value)), **fields)


def _eps(model, x, sigma):
    """The ε the guided x0 implies (x0 = x − σ·ε for an ε-model)."""
    return (x - model(x, sigma)) / sigma


# -- geometry ---------------------------------------------------------------------------------


def test_areas_resolve_from_pixels_with_the_latents_own_vae_scale_and_from_fractions():
    pixels = ("pixels", 16, 32, 8, 16)  # (h, w, y, x) image pixels
    assert regions.resolve_area(pixels, (8, 16), downscale=4) == (4, 8, 2, 4)  # tiny: 4×
    assert regions.resolve_area(pixels, (8, 16), downscale=8) == (2, 4, 1, 2)  # SD: 8×
    # fractions as ComfyUI's percentages: sides round (at least 1), offsets round
    assert regions.resolve_area(("fractions", 0.5, 0.5, 0.0, 0.5), (8, 16)) == (4, 8, 0, 8)
    assert regions.resolve_area(("fractions", 0.01, 0.33, 0.26, 0.0), (8, 10)) == (1, 3, 2, 0)
    assert regions.resolve_area((4, 4, 1, 1), (8, 8)) == (4, 4, 1, 1)  # latent px as they are
    with pytest.raises(ValueError, match="area unit"):
        regions.resolve_area(("inches", 1, 1, 0, 0), (8, 8))


def test_mask_bounds_are_comfyuis_at_least_eight_latent_pixels():
    mask = torch.zeros(2, 32, 32)
    mask[0, 4:14, 6:20] = 1.0
    mask[1, 20:22, 2:3] = 0.5
    assert regions.mask_bounds(mask) == (18, 18, 4, 2)  # the union of both items
    small = torch.zeros(1, 32, 32)
    small[0, 10:12, 10:12] = 1.0
    assert regions.mask_bounds(small) == (8, 8, 10, 10)
    assert regions.mask_bounds(torch.zeros(1, 32, 32)) == (8, 8, 0, 0)


def test_a_mask_is_resized_to_the_latent_bilinearly():
    mask = torch.rand(1, 40, 24)
    out = regions.latent_mask(mask, (10, 6))
    expected = torch.nn.functional.interpolate(mask[:, None], size=(10, 6), mode="bilinear")
    assert out.shape == (1, 10, 6) and torch.allclose(out, expected[:, 0])
    assert regions.latent_mask(torch.ones(40, 24), (10, 6)).shape == (1, 10, 6)


# -- the sigma-space denoiser -------------------------------------------------------------------


def test_a_mask_multiplies_the_prompts_weight_map():
    x, sigma = torch.randn(1, 4, 8, 8), 2.0
    mask = torch.zeros(1, 32, 32)  # image size: resized to the 8×8 latent
    mask[:, :, :16] = 1.0
    masked = _entry(3.0, mask=mask, mask_strength=0.5)
    model = KDenoiser(ShapeUNet(), MS, Conditioning([_entry(1.0), masked]), Conditioning(), 1.0)
    eps = _eps(model, x, sigma)
    weights = regions.latent_mask(mask, (8, 8))[0] * 0.5
    expected = (1.0 + 3.0 * weights) / (1.0 + weights)
    assert torch.allclose(eps[0, 0], expected, atol=1e-5)
    assert eps[0, 0, 0, 0] == pytest.approx(5.0 / 3.0, abs=1e-5)  # (1 + 3·0.5) / 1.5
    assert eps[0, 0, 0, 7] == pytest.approx(1.0, abs=1e-5)  # outside the mask


def test_mask_bounds_evaluate_the_prompt_on_the_boxes_crop():
    x, sigma = torch.randn(1, 4, 32, 32), 1.0
    mask = torch.zeros(1, 32, 32)
    mask[0, 4:14, 6:18] = 1.0
    unet = ShapeUNet()
    positive = Conditioning([_entry(1.0), _entry(3.0, mask=mask, set_area_to_bounds=True)])
    model = KDenoiser(unet, MS, positive, Conditioning([_entry(0.2)]), cfg=7.0)
    eps = _eps(model, x, sigma)
    crops = sorted(values for shape, values in unet.calls if shape == (10, 12))
    assert crops == [[0.2], [3.0]]  # the negative is paired on the same box
    # inside the mask: cond (1 + 3) / 2 = 2, uncond 0.2; outside: cond 1
    assert eps[0, 0, 5, 7] == pytest.approx(0.2 + 7 * (2.0 - 0.2), abs=1e-4)
    assert eps[0, 0, 20, 20] == pytest.approx(0.2 + 7 * (1.0 - 0.2), abs=1e-4)
    # without "mask bounds" a masked prompt runs on the whole latent and is not paired
    unet = ShapeUNet()
    positive = Conditioning([_entry(1.0), _entry(3.0, mask=mask)])
    KDenoiser(unet, MS, positive, Conditioning([_entry(0.2)]), cfg=7.0)(x, sigma)
    assert {shape for shape, _ in unet.calls} == {(32, 32)}
    assert sorted(v for _, values in unet.calls for v in values) == [0.2, 1.0, 3.0]


def test_percent_to_sigma_is_comfyuis():
    assert percent_to_sigma(MS, 0.0) == 999999999.9
    assert percent_to_sigma(MS, 1.0) == 0.0
    assert percent_to_sigma(MS, 0.5) == pytest.approx(float(MS.sigma(499.5)))
    assert percent_to_sigma(MS, 0.2) == pytest.approx(float(MS.sigma(0.8 * 999)))


def test_a_timestep_range_switches_a_prompt_on_and_off_by_sigma():
    x = torch.randn(1, 4, 8, 8)
    late = _entry(3.0, timestep_range=(0.5, 1.0))
    model = KDenoiser(ShapeUNet(), MS, Conditioning([_entry(1.0), late]), Conditioning(), 1.0)
    boundary = percent_to_sigma(MS, 0.5)
    assert float(_eps(model, x, boundary * 1.5).mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(_eps(model, x, boundary).mean()) == pytest.approx(2.0, abs=1e-4)  # included
    assert float(_eps(model, x, boundary / 2).mean()) == pytest.approx(2.0, abs=1e-4)
    early = _entry(3.0, timestep_range=(0.0, 0.5))
    model = KDenoiser(ShapeUNet(), MS, Conditioning([_entry(1.0), early]), Conditioning(), 1.0)
    assert float(_eps(model, x, boundary * 1.5).mean()) == pytest.approx(2.0, abs=1e-4)
    assert float(_eps(model, x, boundary / 2).mean()) == pytest.approx(1.0, abs=1e-5)


def test_fraction_and_pixel_areas_are_cropped_and_paired_after_resolution():
    x, sigma = torch.randn(1, 4, 8, 16), 1.0  # a 32×64 image with a 4× VAE
    unet = ShapeUNet()
    left = _entry(2.0, area=("fractions", 1.0, 0.5, 0.0, 0.0))
    right = _entry(4.0, area=("pixels", 32, 32, 0, 32))
    model = KDenoiser(unet, MS, Conditioning([left, right]), Conditioning([_entry(0.5)]), 3.0, 4)
    eps = _eps(model, x, sigma)
    shapes = sorted((shape, values) for shape, values in unet.calls)
    assert shapes == [((8, 8), [0.5]), ((8, 8), [0.5]), ((8, 8), [2.0]), ((8, 8), [4.0]),
                      ((8, 16), [0.5])]  # fmt: skip
    # each half is its prompt away from the feathered seam (min(8, 8 // 4) = 2 px ramps)
    assert eps[0, 0, 4, 0] == pytest.approx(0.5 + 3 * (2.0 - 0.5), abs=1e-4)
    assert eps[0, 0, 4, 15] == pytest.approx(0.5 + 3 * (4.0 - 0.5), abs=1e-4)


# -- the native sampler's combine -----------------------------------------------------------------


def test_plain_prompts_combine_bit_for_bit_as_the_weighted_mean():
    a, b = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    entries = [_entry(0, weight=1.0), _entry(0, weight=3.0)]
    out = regions.combine([a, b], entries, StepInfo(step_index=0, step_count=4))
    assert torch.equal(out, a * (1.0 / 4.0) + b * (3.0 / 4.0))
    assert regions.combine([a], entries[:1]) is a


def test_native_area_prompts_mix_by_feathered_maps():
    a, b = torch.full((1, 4, 8, 16), 1.0), torch.full((1, 4, 8, 16), 3.0)
    area = ("fractions", 1.0, 0.5, 0.0, 0.5)  # the right half
    entries = [_entry(0), _entry(0, area=area, strength=2.0)]
    out = regions.combine([a, b], entries, StepInfo(image_size=(32, 64)))
    ramp = regions.feathered((8, 8, 0, 8), (8, 16))  # feathered at x = 8, 9 only
    assert ramp[0, 0] == 0.5 and ramp[0, 1] == 1.0 and ramp[0, 7] == 1.0
    expected_right = (1.0 + 3.0 * 2.0 * ramp) / (1.0 + 2.0 * ramp)
    assert torch.allclose(out[0, 0, :, 8:], expected_right)
    assert torch.equal(out[0, 0, :, :8], torch.ones(8, 8))


def test_native_mask_prompts_and_the_fallback_where_nothing_covers():
    a, b = torch.full((1, 4, 8, 8), 1.0), torch.full((1, 4, 8, 8), 5.0)
    mask = torch.zeros(1, 8, 8)
    mask[0, :, :4] = 1.0
    entries = [_entry(0, mask=mask), _entry(0, mask=1.0 - mask, mask_strength=0.5)]
    out = regions.combine([a, b], entries, StepInfo(image_size=(64, 64)))
    assert torch.equal(out[0, 0, :, :4], torch.ones(8, 4))
    assert torch.equal(out[0, 0, :, 4:], torch.full((8, 4), 5.0))
    # a region covering nothing somewhere: there, the unrestricted prompts' mean
    c = torch.full((1, 4, 8, 8), 7.0)
    entries = [_entry(0, mask=mask), _entry(0, mask=mask), _entry(0, timestep_range=(0.5, 1))]
    out = regions.combine([a, b, c], entries, StepInfo(step_index=0, step_count=4))
    assert torch.equal(out[0, 0, :, :4], torch.full((8, 4), 3.0))
    assert torch.equal(out[0, 0, :, 4:], torch.full((8, 4), 7.0))


def test_native_timestep_ranges_count_steps_of_the_run():
    a, b = torch.full((1, 4, 2, 2), 1.0), torch.full((1, 4, 2, 2), 3.0)
    entries = [_entry(0, timestep_range=(0.0, 0.5)), _entry(0, timestep_range=(0.5, 1.0))]
    used = [float(regions.combine([a, b], entries, StepInfo(step_index=i, step_count=5)).mean())
            for i in range(5)]  # fmt: skip
    assert used == [1.0, 1.0, 1.0, 3.0, 3.0]  # start ≤ i/n < end: 0, .2, .4 | .6, .8
    first = StepInfo(step_index=0, step_count=5)
    plain_and_late = regions.combine([a, b], [_entry(0), entries[1]], first)
    assert math.isclose(float(plain_and_late.mean()), 1.0)  # the late prompt is not used yet


def test_region_nodes_return_modified_copies():
    base = Conditioning([_entry(1.0)])
    area = regions.condition_area.function(base, 0.25, 0.0, 0.5, 1.0, "fractions", 1.5)
    assert area.entries[0].area == ("fractions", 1.0, 0.5, 0.0, 0.25)
    assert area.entries[0].strength == 1.5 and base.entries[0].area is None
    pixels = regions.condition_area.function(base, 16, 8, 32, 24, "pixels", 1.0)
    assert pixels.entries[0].area == ("pixels", 24, 32, 8, 16)
    masked = regions.condition_mask.function(area, torch.ones(16, 16), 0.7, "mask bounds")
    entry = masked.entries[0]
    assert entry.mask.shape == (1, 16, 16) and entry.mask_strength == 0.7
    assert entry.set_area_to_bounds and entry.area == area.entries[0].area
    timed = regions.condition_timesteps.function(masked, 0.2, 0.8)
    assert timed.entries[0].timestep_range == (0.2, 0.8) and timed.entries[0].mask is entry.mask
    assert regions.condition_timesteps.check_function(start=0.9, end=0.1)  # never used


def test_area_inputs_are_checked_for_their_units():
    check = regions.condition_area.check_function
    assert check(x=0.0, y=0.0, width=1.5, height=1.0, units="fractions")
    assert check(x=0.5, y=0.0, width=0.5, height=1.0, units="fractions") == []
    assert check(x=0.5, y=0.0, width=16, height=16, units="pixels")
    assert check(x=8, y=0, width=16, height=16, units="pixels") == []


# -- both samplers on a tiny SD model --------------------------------------------------------------


def _prompt_nodes(name: str, text: str) -> dict:
    return {
        f"{name}_t": ("diffusion.tokenize", {"text": text, "tokenizer": link("ckpt", "tokenizer")}),
        name: (
            "diffusion.encode_text",
            {"tokens": link(f"{name}_t", "tokens"), "text_encoder": link("ckpt", "text_encoder")},
        ),
    }


def _regional_workflow(sampler_type: str, regions_nodes: dict, positive) -> object:
    nodes = {
        "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd"}),
        **_prompt_nodes("red", "a red cat"),
        **_prompt_nodes("blue", "a blue dog"),
        **_prompt_nodes("neg", ""),
        "sched": ("diffusion.scheduler", {"scheduler": link("ckpt", "scheduler")}),
        "lat": ("diffusion.empty_latent", {"width": 32, "height": 16}),
        **regions_nodes,
    }
    inputs = {
        "model": link("ckpt", "model"),
        "positive": positive,
        "negative": link("neg", "conditioning"),
        "latent": link("lat", "latent"),
        "seed": 3,
        "steps": 3,
        "cfg": 4.0,
    }
    if sampler_type == "diffusion.sampler":
        inputs["scheduler"] = link("sched", "scheduler")
    nodes["out"] = (sampler_type, inputs)
    nodes["show"] = ("core.show", {"value": link("out", "latent")})
    return make_workflow(nodes)


def _area(source: str, x: float, width: float) -> tuple:
    return ("diffusion.condition_area", {
        "conditioning": link(source, "conditioning"), "x": x, "y": 0.0, "width": width,
        "height": 1.0, "units": "fractions"})  # fmt: skip


@pytest.fixture
def executor(models):
    return Executor(load_plugins().registry)


@pytest.mark.slow
@pytest.mark.parametrize("sampler_type", ["diffusion.k_sampler", "diffusion.sampler"])
def test_both_samplers_run_regional_prompts_and_a_whole_area_is_the_plain_prompt(
    executor, sampler_type
):
    def run(nodes, positive):
        result = executor.run(_regional_workflow(sampler_type, nodes, positive), outputs=["out"])
        assert result.ok, result.error
        return result.outputs["out"]["latent"].samples

    plain = run({}, link("red", "conditioning"))
    whole = run({"area": _area("red", 0.0, 1.0)}, link("area", "conditioning"))
    assert torch.allclose(whole, plain, atol=1e-5)
    halves = {
        "left": _area("red", 0.0, 0.5),
        "right": _area("blue", 0.5, 0.5),
        "both": ("diffusion.combine_conditioning",
                 {"a": link("left", "conditioning"), "b": link("right", "conditioning")}),
    }  # fmt: skip
    split = run(halves, link("both", "conditioning"))
    blue = run({}, link("blue", "conditioning"))
    assert torch.isfinite(split).all() and split.shape == plain.shape
    # (what each half draws is checked on graphflow-tiny by the regional_prompts workflow)
    assert not torch.allclose(split, plain, atol=1e-2) and not torch.allclose(
        split, blue, atol=1e-2
    )


@pytest.mark.slow
def test_the_regional_prompts_workflow_draws_red_left_and_blue_right():
    """workflows/regional_prompts.json on graphflow-tiny (the K Sampler's branch)."""
    import json
    from pathlib import Path

    from graphflow.workflow import Workflow

    path = Path(__file__).parents[2] / "workflows" / "regional_prompts.json"
    data = json.loads(path.read_text())
    nodes = data["nodes"]
    for name in ("sampler", "decode_native", "save_native", "save_k"):
        del nodes[name]
    nodes["show"] = {"type": "core.show", "inputs": {"value": {"link": ["decode_k", "image"]}}}
    result = Executor(load_plugins().registry).run(Workflow.model_validate(data), ["decode_k"])
    assert result.ok, result.error
    image = result.outputs["decode_k"]["image"][0]
    assert image.shape == (32, 64, 3)
    left, right = image[:, :32].reshape(-1, 3).mean(0), image[:, 32:].reshape(-1, 3).mean(0)
    assert left[0] > 2 * left[2]  # the red sneaker
    assert right[2] > right[0] and right[2] > 2 * left[2]  # the blue dress
