"""Inpainting graphs give the same images as diffusers' StableDiffusionInpaintPipeline, with
the same weights and seed (max pixel difference < 1e-3, as the txt2img tests).

- 9-channel UNet (a tiny inpainting checkpoint): ``diffusion.inpaint_conditioning`` (with
  noise_mask off: the pipeline does not blend for such a UNet) + ``diffusion.sampler``. The
  pipeline would draw the masked image's latent from the VAE posterior with its generator
  *after* the initial noise; the test passes it ``masked_image_latents`` precomputed as the
  VAE's mean, which is what the graph uses. The square mask lies on the latent grid, where
  graphflow's ComfyUI-style mask resize (bilinear, rounded) and the pipeline's (nearest)
  agree.
- 4-channel UNet (the tiny SD) with a latent noise mask: ``diffusion.vae_encode`` (sample
  mode: the sampler draws the posterior with its generator, before the noise, as the
  pipeline) + ``diffusion.set_latent_mask`` + ``diffusion.sampler``. The mask is off the
  latent grid: both resize it nearest.
"""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from tiny_inpaint import INPAINT_CHECKPOINT, ensure_inpaint_checkpoint, picture, square_mask

from graphflow import Executor, Image, Mask, String, load_plugins, node
from support import link, make_workflow, prompt_nodes

PROMPT = "a red cat"
SEED = 77
STEPS = 4
CFG = 7.5
PICTURE = picture(seed=3)
ALIGNED = square_mask(top=8, left=10, size=14)  # even edges: on the 2× latent grid
OFF_GRID = square_mask(top=7, left=9, size=13)


@pytest.fixture
def executor(models):
    ensure_inpaint_checkpoint(models)
    registry = load_plugins().registry

    @node("test.picture")
    def test_picture() -> Image:
        """The test picture."""
        return PICTURE

    @node("test.mask")
    def test_mask(which: String = "aligned") -> Mask:
        """One of the test masks."""
        return ALIGNED if which == "aligned" else OFF_GRID

    registry.register(test_picture)
    registry.register(test_mask)
    return Executor(registry)


def picture_nodes(checkpoint: str, scheduler: str) -> dict:
    return {
        **prompt_nodes(PROMPT, checkpoint, scheduler),
        "picture": ("test.picture", {}),
    }


def sample_nodes(positive, negative, latent, denoise: float = 1.0) -> dict:
    return {
        "sample": (
            "diffusion.sampler",
            {
                "model": link("ckpt", "model"),
                "positive": positive,
                "negative": negative,
                "latent": latent,
                "scheduler": link("sched", "scheduler"),
                "seed": SEED,
                "steps": STEPS,
                "cfg": CFG,
                "denoise": denoise,
            },
        ),
        "decode": (
            "diffusion.vae_decode",
            {"vae": link("ckpt", "vae"), "latent": link("sample", "latent")},
        ),
        "show": ("core.show", {"value": link("decode", "image")}),
    }


def nine_channel_graph():
    nodes = picture_nodes(INPAINT_CHECKPOINT, "ddim")
    nodes["mask"] = ("test.mask", {"which": "aligned"})
    nodes["inpaint"] = (
        "diffusion.inpaint_conditioning",
        {
            "positive": link("pos", "conditioning"),
            "negative": link("neg", "conditioning"),
            "vae": link("ckpt", "vae"),
            "pixels": link("picture", "image"),
            "mask": link("mask", "mask"),
            "noise_mask": False,
        },
    )
    nodes.update(
        sample_nodes(
            link("inpaint", "positive"), link("inpaint", "negative"), link("inpaint", "latent")
        )
    )
    return make_workflow(nodes)


def latent_mask_graph(scheduler: str, denoise: float):
    nodes = picture_nodes("tiny-sd", scheduler)
    nodes["mask"] = ("test.mask", {"which": "off_grid"})
    nodes["encode"] = (
        "diffusion.vae_encode",
        {"vae": link("ckpt", "vae"), "image": link("picture", "image")},
    )
    nodes["masked"] = (
        "diffusion.set_latent_mask",
        {"latent": link("encode", "latent"), "mask": link("mask", "mask")},
    )
    nodes.update(
        sample_nodes(
            link("pos", "conditioning"),
            link("neg", "conditioning"),
            link("masked", "latent"),
            denoise,
        )
    )
    return make_workflow(nodes)


def run_image(executor, workflow):
    result = executor.run(workflow, outputs=["decode"])
    assert result.ok, result.error
    return result.outputs["decode"]["image"].cpu().numpy()


def inpaint_pipeline(folder, scheduler: str = "ddim"):
    components = diffusers.DiffusionPipeline.from_pretrained(
        folder, local_files_only=True
    ).components
    pipe = diffusers.StableDiffusionInpaintPipeline(**components)
    if scheduler == "euler":
        pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_image(pipe, mask, **extra):
    return pipe(
        PROMPT,
        image=PICTURE.permute(0, 3, 1, 2),
        mask_image=mask[:, None],
        height=32,
        width=32,
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type="np",
        **extra,
    ).images


def mean_masked_latents(pipe, mask):
    """The masked image's latent as the graph makes it: the VAE's mean, scaled."""
    masked = (PICTURE.permute(0, 3, 1, 2) * 2 - 1) * (mask[:, None] < 0.5)
    with torch.no_grad():
        mean = pipe.vae.encode(masked).latent_dist.mode()
    return mean * pipe.vae.config.scaling_factor


@pytest.mark.slow
def test_nine_channel_unet_equals_inpaint_pipeline(models, executor):
    ours = run_image(executor, nine_channel_graph())
    pipe = inpaint_pipeline(models / "checkpoints" / INPAINT_CHECKPOINT)
    theirs = pipeline_image(pipe, ALIGNED, masked_image_latents=mean_masked_latents(pipe, ALIGNED))
    assert ours.shape == theirs.shape == (1, 32, 32, 3)
    assert np.abs(ours - theirs).max() < 1e-3


@pytest.mark.parametrize(("scheduler", "denoise"), [("ddim", 1.0), ("euler", 1.0), ("ddim", 0.5)])
def test_latent_noise_mask_equals_inpaint_pipeline_on_a_four_channel_unet(
    models, executor, scheduler, denoise
):
    ours = run_image(executor, latent_mask_graph(scheduler, denoise))
    pipe = inpaint_pipeline(models / "checkpoints" / "tiny-sd", scheduler)
    theirs = pipeline_image(pipe, OFF_GRID, strength=denoise)
    assert ours.shape == theirs.shape == (1, 32, 32, 3)
    assert np.abs(ours - theirs).max() < 1e-3


def test_the_nine_channel_masked_image_changes_the_result(models, executor):
    """The extra channels reach the UNet: another masked image gives another image."""
    pipe = inpaint_pipeline(models / "checkpoints" / INPAINT_CHECKPOINT)
    ours = run_image(executor, nine_channel_graph())
    other = pipeline_image(pipe, ALIGNED, masked_image_latents=torch.zeros(1, 4, 16, 16))
    assert np.abs(ours - other).max() > 1e-2
