"""The InstructPix2Pix nodes give the images of diffusers' StableDiffusionInstructPix2PixPipeline
(same tiny weights, image and seed)."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from tiny_ip2p import IP2P, PROMPT, ip2p_models_root, ip2p_workflow, tiny_picture

from graphflow import Executor, Image, node
from support import registry_with

SEED = 1234
STEPS = 4
PICTURE = tiny_picture(seed=3)


@node("test.image")
def picture() -> Image:
    """The fixed picture to edit."""
    return PICTURE


@pytest.fixture
def executor(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(ip2p_models_root(tmp_path_factory)))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    return Executor(registry_with(picture))


SCHEDULERS = {
    "euler_ancestral": "EulerAncestralDiscreteScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
}


def pipeline_image(root, scheduler: str, guidance: float, image_guidance: float):
    pipe = diffusers.StableDiffusionInstructPix2PixPipeline.from_pretrained(
        root / "checkpoints" / IP2P, local_files_only=True
    )
    cls = getattr(diffusers, SCHEDULERS[scheduler])
    pipe.scheduler = cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        PROMPT,
        image=PICTURE.permute(0, 3, 1, 2),
        num_inference_steps=STEPS,
        guidance_scale=guidance,
        image_guidance_scale=image_guidance,
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type="np",
    ).images


def graph_image(executor, **inputs):
    result = executor.run(ip2p_workflow(seed=SEED, steps=STEPS, **inputs), outputs=["decode"])
    assert result.ok, result.error
    return result.outputs["decode"]["image"].cpu().numpy()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scheduler", "guidance", "image_guidance"),
    [
        ("euler_ancestral", 7.5, 1.5),
        ("ddim", 7.5, 1.5),
        ("euler", 5.0, 1.2),
        ("ddim", 1.0, 1.5),  # guidance off: the text + image prediction alone
    ],
)
def test_ip2p_equals_instruct_pix2pix_pipeline(
    tmp_path_factory, executor, scheduler, guidance, image_guidance
):
    ours = graph_image(
        executor,
        scheduler=scheduler,
        guidance_scale=guidance,
        image_guidance_scale=image_guidance,
    )
    theirs = pipeline_image(ip2p_models_root(tmp_path_factory), scheduler, guidance, image_guidance)
    assert ours.shape == theirs.shape == (1, 32, 32, 3)
    difference = float(np.abs(ours - theirs).max())
    print(
        f"max pixel difference vs diffusers ({scheduler}, g={guidance}, ig={image_guidance}):"
        f" {difference:.2e}"
    )
    assert difference < 1e-3
