"""KSampler and KSamplerAdvanced (gf_comfy/nodes_sampling.py): ComfyUI's specs (COMFY_COMPAT
§5.1/§5.5) and its semantics on tiny SD/SDXL models: steps actually run under denoise < 1,
start/end cuts, leftover noise, unimplemented sampler names as validation errors."""

from __future__ import annotations

import pytest
import torch
from tiny_models import build_tiny_sd, build_tiny_sdxl, loaded_checkpoint

from gf_comfy.names import CLASSES
from gf_diffusion.k_samplers import SAMPLER_NAMES
from gf_diffusion.sigmas import SCHEDULER_NAMES
from gf_diffusion.values import Conditioning, ConditioningEntry, Latent
from graphflow import Executor
from graphflow.errors import ValidationFailed
from graphflow.runtime.handles import ModelHandle
from support import link, make_workflow

KSAMPLER = CLASSES["KSampler"].spec.function
ADVANCED = CLASSES["KSamplerAdvanced"].spec.function


class Ctx:
    """The parts of a NodeContext the samplers use, recording progress."""

    device = "cpu"

    def __init__(self):
        self.steps: list[tuple[int, int]] = []
        self.previews = 0

    def progress(self, value, total):
        self.steps.append((value, total))

    def check_interrupt(self):
        pass

    def preview(self, image):
        self.previews += 1


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ksampler_models")
    build_tiny_sd(root / "checkpoints" / "tiny-sd")
    build_tiny_sdxl(root / "checkpoints" / "tiny-sdxl")
    return root


@pytest.fixture(scope="module")
def sd(models_root, registry):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHFLOW_MODELS", str(models_root))
        patch.setenv("GRAPHFLOW_DEVICE", "cpu")
        return loaded_checkpoint(registry, "tiny-sd")


def _conditioning(unet, seed: int, pooled: bool = False) -> Conditioning:
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(1, 77, unet.config.cross_attention_dim, generator=generator)
    pooled_embeds = None
    if pooled:
        size = unet.config.projection_class_embeddings_input_dim
        size -= 6 * unet.config.addition_time_embed_dim
        pooled_embeds = torch.randn(1, size, generator=generator)
    return Conditioning([ConditioningEntry(embeds, pooled_embeds)])


def _latent(batch: int = 1, content: bool = False) -> Latent:
    samples = torch.zeros(batch, 4, 8, 8)
    if content:
        samples = torch.randn(batch, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    return Latent(samples, None, 0.18215, 0.0, 8)


def _sample(model, sampler="euler", scheduler="karras", steps=4, seed=0, ctx=None, **more):
    unet = model.unpatched
    return KSAMPLER(
        model=model, seed=seed, steps=steps, cfg=more.pop("cfg", 5.0), sampler_name=sampler,
        scheduler=scheduler, positive=_conditioning(unet, 1), negative=_conditioning(unet, 2),
        latent_image=more.pop("latent_image", _latent()), ctx=ctx or Ctx(), **more,
    )  # fmt: skip


def _advanced(model, latent, ctx=None, **inputs):
    unet = model.unpatched
    values = {
        "add_noise": "enable", "noise_seed": 5, "steps": 8, "cfg": 4.0,
        "sampler_name": "euler", "scheduler": "normal", "start_at_step": 0,
        "end_at_step": 10000, "return_with_leftover_noise": "disable",
    }  # fmt: skip
    values.update(inputs)
    return ADVANCED(
        model=model, positive=_conditioning(unet, 1), negative=_conditioning(unet, 2),
        latent_image=latent, ctx=ctx or Ctx(), **values,
    )  # fmt: skip


def test_specs_are_comfyuis():
    spec = CLASSES["KSampler"].spec
    assert [i.name for i in spec.inputs] == [
        "model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative",
        "latent_image", "denoise",
    ]  # fmt: skip
    by_name = spec.inputs_by_name
    assert (by_name["seed"].default, by_name["seed"].min, by_name["seed"].max) == (0, 0, 2**64 - 1)
    assert (by_name["steps"].default, by_name["steps"].max, by_name["cfg"].default) == (
        20,
        10000,
        8.0,
    )
    assert by_name["sampler_name"].allowed_choices() == list(SAMPLER_NAMES)
    assert by_name["scheduler"].allowed_choices() == list(SCHEDULER_NAMES)
    facts = CLASSES["KSampler"]
    assert facts.input("seed").control_after_generate
    assert (facts.input("cfg").step, facts.input("cfg").round) == (0.1, 0.01)
    advanced = CLASSES["KSamplerAdvanced"].spec
    assert [i.name for i in advanced.inputs] == [
        "model", "add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler",
        "positive", "negative", "latent_image", "start_at_step", "end_at_step",
        "return_with_leftover_noise",
    ]  # fmt: skip
    assert advanced.inputs_by_name["end_at_step"].default == 10000
    assert advanced.inputs_by_name["return_with_leftover_noise"].allowed_choices() == [
        "disable", "enable",
    ]  # fmt: skip
    assert [o.name for o in spec.outputs] == ["latent"]


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc", "euler_cfg_pp"])
def test_ksampler_runs_and_is_deterministic(sd, sampler):
    ctx = Ctx()
    first = _sample(sd["model"], sampler, seed=2**64 - 1, ctx=ctx)
    again = _sample(sd["model"], sampler, seed=2**64 - 1)
    other = _sample(sd["model"], sampler, seed=1)
    assert first.samples.shape == (1, 4, 8, 8) and torch.isfinite(first.samples).all()
    assert torch.equal(first.samples, again.samples)
    assert not torch.allclose(first.samples, other.samples)
    assert ctx.steps == [(i, 4) for i in range(1, 5)] and ctx.previews >= 1


def test_denoise_below_one_runs_steps_steps_from_the_latent(sd):
    ctx = Ctx()
    start = _latent(content=True)
    out = _sample(sd["model"], steps=6, denoise=0.5, latent_image=start, ctx=ctx)
    assert ctx.steps[-1] == (6, 6) and len(ctx.steps) == 6
    assert not torch.equal(out.samples, start.samples)
    unchanged = _sample(sd["model"], denoise=0.0, latent_image=start)
    assert torch.equal(unchanged.samples, start.samples)


def test_advanced_halves_with_leftover_noise_equal_one_run(sd):
    model, latent = sd["model"], _latent()
    whole = _advanced(model, latent)
    first = _advanced(model, latent, end_at_step=4, return_with_leftover_noise="enable")
    second = _advanced(model, first, add_noise="disable", start_at_step=4)
    assert torch.allclose(second.samples, whole.samples, atol=1e-5)
    finished = _advanced(model, latent, end_at_step=4)  # leftover disabled: the last σ is 0
    assert not torch.allclose(finished.samples, first.samples, atol=1e-3)
    ctx = Ctx()
    nothing = _advanced(model, latent, start_at_step=8, ctx=ctx)
    assert torch.equal(nothing.samples, latent.samples) and ctx.steps == []


def test_sdxl_model_samples_with_pooled_conditioning(models_root, registry, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(models_root))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    model = loaded_checkpoint(registry, "tiny-sdxl")["model"]
    unet = model.unpatched
    out = KSAMPLER(
        model=model, seed=3, steps=3, cfg=3.0, sampler_name="dpmpp_2m", scheduler="normal",
        positive=_conditioning(unet, 1, pooled=True), negative=_conditioning(unet, 2, pooled=True),
        latent_image=_latent(), ctx=Ctx(),
    )  # fmt: skip
    assert torch.isfinite(out.samples).all() and out.samples.shape == (1, 4, 8, 8)


def test_a_model_without_scheduler_is_a_clear_error(sd):
    bare = ModelHandle.of(sd["model"].unpatched)
    with pytest.raises(ValueError, match="carries no scheduler config"):
        _sample(bare)


def _workflow(sampler_name: str, scheduler: str = "karras"):
    return make_workflow(
        {
            "ckpt": ("comfy.checkpoint_loader_simple", {"ckpt_name": "tiny-sd"}),
            "pos": ("comfy.clip_text_encode", {"text": "a cat", "clip": link("ckpt", "clip")}),
            "neg": ("comfy.clip_text_encode", {"text": "", "clip": link("ckpt", "clip")}),
            "lat": ("comfy.empty_latent_image", {"width": 64, "height": 64, "batch_size": 2}),
            "ks": (
                "comfy.k_sampler",
                {
                    "model": link("ckpt", "model"),
                    "seed": 2**64 - 1,
                    "steps": 3,
                    "cfg": 6.0,
                    "sampler_name": sampler_name,
                    "scheduler": scheduler,
                    "positive": link("pos", "conditioning"),
                    "negative": link("neg", "conditioning"),
                    "latent_image": link("lat", "latent"),
                    "denoise": 1.0,
                },
            ),
            "show": ("core.show", {"value": link("ks", "latent")}),
        }
    )


def test_a_comfy_workflow_runs_end_to_end(models_root, registry, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(models_root))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    result = Executor(registry).run(_workflow("euler_ancestral"), outputs=["ks"])
    assert result.ok, result.error
    latent = result.outputs["ks"]["latent"]
    # EmptyLatentImage's SD-shaped (8×) latent is remade in tiny-sd's 2× VAE geometry
    assert latent.samples.shape == (2, 4, 32, 32) and latent.downscale == 2


def test_an_unimplemented_sampler_is_a_validation_error(models_root, registry, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(models_root))
    with pytest.raises(ValidationFailed, match="seeds_2") as caught:
        Executor(registry).run(_workflow("seeds_2"), outputs=["ks"])
    assert any(e.input == "sampler_name" for e in caught.value.errors)


def test_a_noise_mask_keeps_the_unmasked_latent(sd):
    from gf_comfy.nodes_latent import ComfyLatent

    start = _latent(content=True)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 2:] = 1.0  # the right half may change (resized to the 8×8 latent)
    latent = ComfyLatent(start.samples, None, 0.18215, 0.0, 8, noise_mask=mask)
    out = _sample(sd["model"], "ddim", latent_image=latent)
    assert torch.allclose(out.samples[..., :3], start.samples[..., :3], atol=1e-5)
    assert not torch.allclose(out.samples[..., 5:], start.samples[..., 5:])
    assert out.noise_mask is mask  # ComfyUI keeps the LATENT's keys
