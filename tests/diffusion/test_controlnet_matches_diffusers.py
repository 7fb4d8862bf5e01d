"""Graphs with ControlNets give the images of diffusers' StableDiffusionControlNetPipeline
(same tiny weights, seed and scheduler): one ControlNet, two (the pipeline's
MultiControlNetModel), and control_guidance_start/end; and the SDXL ControlNet pipeline."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch

from graphflow import Executor, Image, Int, node
from support import link, make_workflow, prompt_nodes, registry_with

pytest_plugins = ("tiny_control",)  # the control_models fixtures

PROMPT = "a red cat"
SEED = 1234
STEPS = 4
CFG = 7.5

torch.manual_seed(7)
HINTS = [torch.rand(1, 32, 32, 3), torch.rand(1, 32, 32, 3)]


@node("test.control_hint")
def control_hint(which: Int = 0) -> Image:
    """A fixed random control image (32×32)."""
    return HINTS[which]


def control_graph(controls, checkpoint="tiny-sd", scheduler="ddim", prompt=PROMPT) -> dict:
    """txt2img nodes with ``controls``: [(file, hint index, strength, start, end)], chained."""
    nodes = {
        **prompt_nodes(prompt, checkpoint, scheduler),
        "empty": (
            "diffusion.empty_latent",
            {"width": 32, "height": 32, "vae": link("ckpt", "vae")},
        ),
    }
    positive, negative = link("pos", "conditioning"), link("neg", "conditioning")
    for i, (name, hint, strength, start, end) in enumerate(controls):
        nodes[f"cn{i}"] = ("diffusion.load_controlnet", {"control_net_name": name})
        nodes[f"hint{i}"] = ("test.control_hint", {"which": hint})
        nodes[f"apply{i}"] = (
            "diffusion.apply_controlnet",
            {
                "positive": positive,
                "negative": negative,
                "control_net": link(f"cn{i}", "control_net"),
                "image": link(f"hint{i}", "image"),
                "strength": strength,
                "start": start,
                "end": end,
            },
        )
        positive, negative = link(f"apply{i}", "positive"), link(f"apply{i}", "negative")
    nodes["sample"] = (
        "diffusion.sampler",
        {
            "model": link("ckpt", "model"),
            "positive": positive,
            "negative": negative,
            "latent": link("empty", "latent"),
            "scheduler": link("sched", "scheduler"),
            "seed": SEED,
            "steps": STEPS,
            "cfg": CFG,
        },
    )
    nodes["decode"] = (
        "diffusion.vae_decode",
        {"vae": link("ckpt", "vae"), "latent": link("sample", "latent")},
    )
    nodes["show"] = ("core.show", {"value": link("decode", "image")})
    return nodes


@pytest.fixture
def executor(control_models):
    return Executor(registry_with(control_hint))


def run_image(executor, nodes) -> np.ndarray:
    result = executor.run(make_workflow(nodes), outputs=["decode"])
    assert result.ok, result.error
    return result.outputs["decode"]["image"].cpu().numpy()


def controlnet_pipeline(root, names, checkpoint="tiny-sd"):
    """diffusers' ControlNet pipeline on the same folders (DDIM / Euler as the checkpoint's)."""
    sdxl = checkpoint == "tiny-sdxl"
    base_cls = diffusers.StableDiffusionXLPipeline if sdxl else diffusers.StableDiffusionPipeline
    base = base_cls.from_pretrained(root / "checkpoints" / checkpoint, local_files_only=True)
    nets = [
        diffusers.ControlNetModel.from_pretrained(root / "controlnet" / n, local_files_only=True)
        for n in names
    ]
    cls = (
        diffusers.StableDiffusionXLControlNetPipeline
        if sdxl
        else diffusers.StableDiffusionControlNetPipeline
    )
    extra = {} if sdxl else {"safety_checker": None, "feature_extractor": None}
    if not sdxl:
        extra["requires_safety_checker"] = False
    components = {k: v for k, v in base.components.items() if k in cls._get_signature_keys(cls)[0]}
    components.update(extra)
    pipe = cls(**components, controlnet=nets[0] if len(nets) == 1 else nets)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_image(pipe, hints, scales, start=0.0, end=1.0, **extra):
    images = [HINTS[h].permute(0, 3, 1, 2) for h in hints]
    many = len(images) > 1
    return pipe(
        PROMPT,
        image=images if many else images[0],
        controlnet_conditioning_scale=scales if many else scales[0],
        control_guidance_start=start,
        control_guidance_end=end,
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        height=32,
        width=32,
        output_type="np",
        generator=torch.Generator("cpu").manual_seed(SEED),
        **extra,
    ).images


def test_one_controlnet_equals_the_controlnet_pipeline(control_models, executor):
    ours = run_image(executor, control_graph([("tiny-cn", 0, 0.8, 0.0, 1.0)]))
    theirs = pipeline_image(controlnet_pipeline(control_models, ["tiny-cn"]), [0], [0.8])
    plain = run_image(executor, control_graph([]))
    assert ours.shape == theirs.shape == (1, 32, 32, 3)
    assert np.abs(ours - theirs).max() < 1e-3
    assert np.abs(ours - plain).max() > 1e-2  # the ControlNet changed the image


def test_two_controlnets_equal_the_multi_controlnet_pipeline(control_models, executor):
    controls = [("tiny-cn", 0, 1.0, 0.0, 1.0), ("tiny-cn-b", 1, 0.6, 0.0, 1.0)]
    ours = run_image(executor, control_graph(controls))
    pipe = controlnet_pipeline(control_models, ["tiny-cn", "tiny-cn-b"])
    theirs = pipeline_image(pipe, [0, 1], [1.0, 0.6])
    assert np.abs(ours - theirs).max() < 1e-3
    one = run_image(executor, control_graph(controls[:1]))
    assert np.abs(ours - one).max() > 1e-3  # the second one counts


def test_start_and_end_equal_control_guidance_start_end(control_models, executor):
    ours = run_image(executor, control_graph([("tiny-cn", 0, 1.0, 0.25, 0.75)]))
    pipe = controlnet_pipeline(control_models, ["tiny-cn"])
    theirs = pipeline_image(pipe, [0], [1.0], start=0.25, end=0.75)
    assert np.abs(ours - theirs).max() < 1e-3
    full = run_image(executor, control_graph([("tiny-cn", 0, 1.0, 0.0, 1.0)]))
    assert np.abs(ours - full).max() > 1e-3


def test_single_files_give_the_folder_image(executor):
    folder = run_image(executor, control_graph([("tiny-cn", 0, 1.0, 0.0, 1.0)]))
    for name in ("tiny-cn.safetensors", "tiny-cn-original.safetensors", "tiny-cn-bare.safetensors"):
        single = run_image(executor, control_graph([(name, 0, 1.0, 0.0, 1.0)]))
        assert np.abs(folder - single).max() < 1e-6, name


def test_sdxl_controlnet_equals_the_sdxl_controlnet_pipeline(control_models, executor):
    nodes = control_graph([("tiny-xl-cn", 0, 0.9, 0.0, 1.0)], "tiny-sdxl", "euler")
    ours = run_image(executor, nodes)
    pipe = controlnet_pipeline(control_models, ["tiny-xl-cn"], "tiny-sdxl")
    theirs = pipeline_image(pipe, [0], [0.9], negative_prompt="")
    assert np.abs(ours - theirs).max() < 1e-3
    single = run_image(
        executor,
        control_graph(
            [("tiny-xl-cn-original.safetensors", 0, 0.9, 0.0, 1.0)], "tiny-sdxl", "euler"
        ),
    )
    assert np.abs(ours - single).max() < 1e-6
