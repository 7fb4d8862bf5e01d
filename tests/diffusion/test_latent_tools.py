"""Latent tools (gf_diffusion/latent_tools.py): resizing latents for the hires fix (ComfyUI's
methods, sizes in pixels with the latent's own VAE scale, the noise mask kept) and the batch
tools (a latent taken from a batch is sampled with the noise it had in the batch)."""

from __future__ import annotations

import pytest
import torch

from gf_comfy import nodes_latent
from gf_diffusion import latent_tools
from gf_diffusion.resample import LATENT_METHODS, bislerp
from gf_diffusion.values import Latent
from graphflow import Executor, load_plugins
from support import link, make_workflow


def _latent(batch=1, height=8, width=8, downscale=4, **fields) -> Latent:
    samples = torch.randn(batch, 4, height, width, generator=torch.Generator().manual_seed(3))
    return Latent(samples, None, 0.68, 0.22, downscale, **fields)


@pytest.mark.parametrize("method", LATENT_METHODS)
def test_every_method_doubles_a_tiny_latent_from_pixel_sizes(method):
    source = _latent()  # 32×32 pixels with graphflow-tiny's 4× VAE
    out = latent_tools.upscale_latent.function(source, method, 64, 64, "disabled")
    assert out.samples.shape == (1, 4, 16, 16)
    assert (out.downscale, out.scaling_factor, out.shift_factor) == (4, 0.68, 0.22)
    if method == "nearest-exact":  # each latent pixel becomes a 2×2 block
        assert torch.equal(out.samples[..., ::2, ::2], source.samples)
        assert torch.equal(out.samples[..., 1::2, 1::2], source.samples)
    if method == "bilinear":
        expected = torch.nn.functional.interpolate(source.samples, size=(16, 16), mode=method)
        assert torch.equal(out.samples, expected)


def test_native_upscale_is_comfyuis_latent_upscale():
    source = _latent(height=6, width=10, downscale=8)
    for method in LATENT_METHODS:
        native = latent_tools.upscale_latent.function(source, method, 160, 96, "center")
        comfy = nodes_latent.latent_upscale.function(source, method, 160, 96, "center")
        assert torch.equal(native.samples, comfy.samples)
        by = latent_tools.upscale_latent_by.function(source, method, 1.5)
        comfy_by = nodes_latent.latent_upscale_by.function(source, method, 1.5)
        assert torch.equal(by.samples, comfy_by.samples)


def test_bislerp_works_on_the_unscaled_latent():
    source = _latent()
    out = latent_tools.upscale_latent_by.function(source, "bislerp", 2.0)
    unscaled = source.samples / 0.68 + 0.22
    assert torch.allclose(out.samples, (bislerp(unscaled, 16, 16) - 0.22) * 0.68, atol=1e-6)
    # bislerp keeps each latent vector's length where it copies one (here: the corners)
    assert torch.allclose(out.samples[0, :, 0, 0], source.samples[0, :, 0, 0], atol=1e-5)


def test_upscale_by_rounds_sides_and_sizes_must_fit_the_vae_scale():
    source = _latent(height=5, width=7)
    out = latent_tools.upscale_latent_by.function(source, "area", 1.5)
    assert out.samples.shape[-2:] == (8, 10)  # round(7.5) = 8, round(10.5) = 10
    with pytest.raises(ValueError, match="multiples of this latent's VAE scale"):
        latent_tools.upscale_latent.function(_latent(downscale=16), "bilinear", 40, 64, "disabled")


def test_upscaling_keeps_the_noise_mask_and_batch_index():
    mask = torch.zeros(1, 1, 32, 32)
    source = _latent(batch=2, noise_mask=mask, batch_index=[4, 5])
    out = latent_tools.upscale_latent_by.function(source, "bicubic", 2.0)
    assert out.noise_mask is mask and out.batch_index == [4, 5] and out.posterior is None


def test_batch_tools_pick_and_repeat_items_with_their_positions():
    source = _latent(batch=4)
    two = latent_tools.latent_from_batch.function(source, 1, 2)
    assert torch.equal(two.samples, source.samples[1:3]) and two.batch_index == [1, 2]
    again = latent_tools.latent_from_batch.function(two, 1, 5)
    assert again.batch_index == [2] and torch.equal(again.samples, source.samples[2:3])
    repeated = latent_tools.repeat_latent_batch.function(two, 2)
    assert repeated.samples.shape[0] == 4 and repeated.batch_index == [1, 2, 3, 4]
    # ComfyUI's class types are the same implementation
    comfy = nodes_latent.latent_from_batch.function(source, 1, 2)
    assert torch.equal(comfy.samples, two.samples) and comfy.batch_index == two.batch_index


# -- on a tiny SD model ---------------------------------------------------------------------------


def _sampling(latent_nodes: dict, latent_link, sampler_type="diffusion.k_sampler", **inputs):
    nodes = {
        "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd"}),
        "pos_t": ("diffusion.tokenize", {"text": "a cat", "tokenizer": link("ckpt", "tokenizer")}),
        "pos": (
            "diffusion.encode_text",
            {"tokens": link("pos_t", "tokens"), "text_encoder": link("ckpt", "text_encoder")},
        ),
        "neg_t": ("diffusion.tokenize", {"text": "", "tokenizer": link("ckpt", "tokenizer")}),
        "neg": (
            "diffusion.encode_text",
            {"tokens": link("neg_t", "tokens"), "text_encoder": link("ckpt", "text_encoder")},
        ),
        "sched": ("diffusion.scheduler", {"scheduler": link("ckpt", "scheduler")}),
        **latent_nodes,
    }
    common = {
        "model": link("ckpt", "model"),
        "positive": link("pos", "conditioning"),
        "negative": link("neg", "conditioning"),
        "latent": latent_link,
        "seed": 7,
        "steps": 3,
        "cfg": 5.0,
    }
    if sampler_type == "diffusion.sampler":
        common["scheduler"] = link("sched", "scheduler")
    nodes["out"] = (sampler_type, common | inputs)
    nodes["show"] = ("core.show", {"value": link("out", "latent")})
    return make_workflow(nodes)


@pytest.fixture
def executor(models):
    return Executor(load_plugins().registry)


@pytest.mark.slow
def test_a_latent_from_a_batch_samples_like_that_item_of_the_batch(executor):
    empty = ("diffusion.empty_latent", {"width": 16, "height": 16, "batch_size": 3})
    whole = executor.run(_sampling({"lat": empty}, link("lat", "latent")), outputs=["out"])
    assert whole.ok, whole.error
    picked = {"lat": empty, "pick": ("diffusion.latent_from_batch", {
        "latent": link("lat", "latent"), "batch_index": 2, "length": 1})}  # fmt: skip
    alone = executor.run(_sampling(picked, link("pick", "latent")), outputs=["out"])
    assert alone.ok, alone.error
    full, item = whole.outputs["out"]["latent"].samples, alone.outputs["out"]["latent"].samples
    assert item.shape[0] == 1 and torch.allclose(item[0], full[2], rtol=1e-4, atol=1e-3)
    assert not torch.allclose(item[0], full[0], atol=1e-2)


@pytest.mark.slow
@pytest.mark.parametrize("sampler_type", ["diffusion.k_sampler", "diffusion.sampler"])
def test_a_hires_pass_upscales_the_latent_and_resamples_it(executor, sampler_type):
    nodes = {
        "lat": ("diffusion.empty_latent", {"width": 16, "height": 16, "batch_size": 1}),
        "first": ("diffusion.k_sampler", {}),  # replaced below
        "up": ("diffusion.upscale_latent_by", {"latent": link("first", "latent"),
                                               "method": "bislerp", "scale_by": 2.0}),
    }  # fmt: skip
    first = _sampling({"lat": nodes["lat"]}, link("lat", "latent"))
    nodes["first"] = ("diffusion.k_sampler", first.model_dump()["nodes"]["out"]["inputs"])
    workflow = _sampling(nodes, link("up", "latent"), sampler_type, denoise=0.5)
    result = executor.run(workflow, outputs=["out", "up"])
    assert result.ok, result.error
    upscaled, second = result.outputs["up"]["latent"], result.outputs["out"]["latent"]
    assert (
        upscaled.samples.shape == second.samples.shape == (1, 4, 4, 4)
    )  # 16 px → 2 latent px (SD geometry) → 4
    assert torch.isfinite(second.samples).all()
    assert not torch.allclose(second.samples, upscaled.samples, atol=1e-3)  # it resampled


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hires_fix", "hires_fix_pixel"])
def test_the_shipped_hires_workflows_make_64_pixel_pictures_from_32(name):
    """workflows/hires_fix.json (latent upscale) and hires_fix_pixel.json (the embedded ×4
    super-resolution model, then VAE encode) on graphflow-tiny."""
    import json
    from pathlib import Path

    from graphflow.workflow import Workflow

    data = json.loads((Path(__file__).parents[2] / "workflows" / f"{name}.json").read_text())
    for node in ("save", "save_first"):
        del data["nodes"][node]
    data["nodes"]["show"] = {
        "type": "core.show",
        "inputs": {"value": {"link": ["decode", "image"]}},
    }
    run = Executor(load_plugins().registry).run(
        Workflow.model_validate(data), ["decode", "decode_first", "second_pass"]
    )
    assert run.ok, run.error
    assert run.outputs["decode_first"]["image"].shape == (1, 32, 32, 3)
    assert run.outputs["decode"]["image"].shape == (1, 64, 64, 3)
    assert run.outputs["second_pass"]["latent"].samples.shape == (1, 4, 16, 16)  # 4× VAE
