"""Graphs with T2I-Adapters give the images of diffusers' adapter pipelines (same tiny
weights, seed and scheduler): StableDiffusionAdapterPipeline with an SD 1.x full adapter
(original-layout file), a grey-hint one and two at once (MultiAdapter); the SDXL adapter
pipeline with adapter_conditioning_factor. Beneath them, the residuals alone: one UNet call
with ours equals the pipeline's first UNet call."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tiny_adapter import build_tiny_sd1, original_layout, tiny_adapter
from tiny_models import build_tiny_sdxl

from gf_diffusion import t2i_adapter as t2i
from gf_diffusion.unet_call import StepInfo
from gf_diffusion.values import ControlSpec
from graphflow import Executor, Image, Int, node
from support import link, make_workflow, prompt_nodes, registry_with

PROMPT = "a red cat"
SEED = 1234
STEPS = 4
CFG = 7.5

torch.manual_seed(11)
HINTS = [torch.rand(1, 32, 32, 3), torch.rand(1, 32, 32, 3)]


@node("test.adapter_hint")
def adapter_hint(which: Int = 0) -> Image:
    """A fixed random hint image (32×32)."""
    return HINTS[which]


ADAPTERS = {  # name in models/t2i_adapter → (kind, options, seed, how it is saved)
    "sd1-canny.safetensors": ("full_adapter", {}, 1, "original"),
    "sd1-sketch": ("full_adapter", {"in_channels": 1}, 2, "folder"),
    "sd1-depth.safetensors": ("full_adapter", {}, 3, "diffusers"),
    "sdxl-canny": ("full_adapter_xl", {}, 4, "folder"),
}


@pytest.fixture(scope="module")
def adapter_root(tmp_path_factory):
    """checkpoints/tiny-sd1 (SD 1.x layout), checkpoints/tiny-sdxl and the adapters."""
    root = tmp_path_factory.mktemp("adapter-models")
    build_tiny_sd1(root / "checkpoints" / "tiny-sd1")
    build_tiny_sdxl(root / "checkpoints" / "tiny-sdxl")
    folder = root / "t2i_adapter"
    folder.mkdir()
    for name, (kind, options, seed, saved) in ADAPTERS.items():
        adapter = tiny_adapter(kind, seed=seed, **options)
        if saved == "folder":
            adapter.save_pretrained(folder / name)
        else:
            state = original_layout(adapter) if saved == "original" else adapter.state_dict()
            save_file({k: v.contiguous() for k, v in state.items()}, str(folder / name))
    return root


@pytest.fixture
def executor(adapter_root, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(adapter_root))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    return Executor(registry_with(adapter_hint))


def reference_adapter(name):
    kind, options, seed, _ = ADAPTERS[name]
    return tiny_adapter(kind, seed=seed, **options)


def adapter_graph(controls, checkpoint="tiny-sd1", scheduler="ddim") -> dict:
    """txt2img nodes with ``controls``: [(adapter, hint index, strength, start, end)]."""
    nodes = {
        **prompt_nodes(PROMPT, checkpoint, scheduler),
        "empty": (
            "diffusion.empty_latent",
            {"width": 32, "height": 32, "vae": link("ckpt", "vae")},
        ),
    }
    positive, negative = link("pos", "conditioning"), link("neg", "conditioning")
    for i, (name, hint, strength, start, end) in enumerate(controls):
        nodes[f"ad{i}"] = ("diffusion.load_t2i_adapter", {"adapter_name": name})
        nodes[f"hint{i}"] = ("test.adapter_hint", {"which": hint})
        nodes[f"apply{i}"] = (
            "diffusion.apply_controlnet",
            {
                "positive": positive,
                "negative": negative,
                "control_net": link(f"ad{i}", "control_net"),
                "image": link(f"hint{i}", "image"),
                "strength": strength,
                "start": start,
                "end": end,
            },
        )
        positive, negative = link(f"apply{i}", "positive"), link(f"apply{i}", "negative")
    sample = {"model": link("ckpt", "model"), "latent": link("empty", "latent")}
    sample.update(positive=positive, negative=negative, scheduler=link("sched", "scheduler"))
    nodes["sample"] = ("diffusion.sampler", {**sample, "seed": SEED, "steps": STEPS, "cfg": CFG})
    nodes["decode"] = (
        "diffusion.vae_decode",
        {"vae": link("ckpt", "vae"), "latent": link("sample", "latent")},
    )
    nodes["show"] = ("core.show", {"value": link("decode", "image")})
    return nodes


def run_image(executor, nodes) -> np.ndarray:
    result = executor.run(make_workflow(nodes), outputs=["decode"])
    assert result.ok, result.error
    return result.outputs["decode"]["image"].cpu().numpy()


def adapter_pipeline(root, names, checkpoint="tiny-sd1"):
    """diffusers' adapter pipeline on the same checkpoint folder and adapter weights."""
    sdxl = checkpoint == "tiny-sdxl"
    adapters = [reference_adapter(n) for n in names]
    adapter = adapters[0] if len(adapters) == 1 else diffusers.MultiAdapter(adapters)
    if sdxl:
        cls = diffusers.StableDiffusionXLAdapterPipeline
        extra = {}
    else:
        cls = diffusers.StableDiffusionAdapterPipeline
        extra = {"safety_checker": None, "feature_extractor": None}
    folder = root / "checkpoints" / checkpoint
    pipe = cls.from_pretrained(folder, adapter=adapter, local_files_only=True, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_image(pipe, hints, scales, **extra) -> np.ndarray:
    images = [HINTS[h].permute(0, 3, 1, 2) for h in hints]
    grey = pipe.adapter.config.in_channels == 1 if hasattr(pipe.adapter, "config") else False
    if grey:  # what a diffusers user passes a grey adapter: the hint's luminance
        images = [
            (i * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, True) for i in images
        ]
    many = len(images) > 1
    return pipe(
        PROMPT,
        image=images if many else images[0],
        adapter_conditioning_scale=scales if many else scales[0],
        negative_prompt="",  # the graph encodes "" (not SDXL's zeros for no negative)
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        height=32,
        width=32,
        output_type="np",
        generator=torch.Generator("cpu").manual_seed(SEED),
        **extra,
    ).images


# --- the residuals alone ---------------------------------------------------------------


def first_unet_call(pipe, hints, scales, **extra):
    """(args, kwargs, output) of the pipeline's first UNet call (the residuals as passed:
    the UNet pops them from its list)."""
    seen: list = []

    def before(module, args, kwargs):
        if not seen:
            given = kwargs["down_intrablock_additional_residuals"]
            seen.append([args, {**kwargs, "down_intrablock_additional_residuals": list(given)}])

    def after(module, args, kwargs, output):
        if len(seen[0]) == 2:
            seen[0].append(output)

    hooks = [
        pipe.unet.register_forward_pre_hook(before, with_kwargs=True),
        pipe.unet.register_forward_hook(after, with_kwargs=True),
    ]
    try:
        pipeline_image(pipe, hints, scales, **extra)
    finally:
        for hook in hooks:
            hook.remove()
    return seen[0]


@pytest.mark.parametrize(
    ("checkpoint", "name"),
    [
        ("tiny-sd1", "sd1-canny.safetensors"),
        pytest.param("tiny-sdxl", "sdxl-canny", marks=pytest.mark.slow),
    ],
)
def test_unet_call_with_our_residuals_equals_the_pipelines_first_step(
    adapter_root, checkpoint, name
):
    pipe = adapter_pipeline(adapter_root, [name], checkpoint)
    args, kwargs, output = first_unet_call(pipe, [0], [0.8])
    handle = t2i.load_adapter_file(adapter_root / "t2i_adapter" / name)
    spec = ControlSpec(handle, "t2i_adapter", HINTS[0], strength=0.8)
    step = StepInfo(step_index=0, step_count=STEPS, image_size=(32, 32))
    ours = t2i.adapter_residuals(spec, 2, (32, 32), None, "cpu", torch.float32, step, (16, 16))
    theirs = kwargs["down_intrablock_additional_residuals"]
    assert [r.shape for r in ours] == [r.shape for r in theirs]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    with torch.no_grad():
        again = pipe.unet(*args, **{**kwargs, "down_intrablock_additional_residuals": ours})
    assert torch.equal(again[0], output[0])


# --- whole graphs ----------------------------------------------------------------------


def test_sd1_adapter_graph_equals_the_adapter_pipeline(adapter_root, executor):
    ours = run_image(executor, adapter_graph([("sd1-canny.safetensors", 0, 0.8, 0.0, 1.0)]))
    theirs = pipeline_image(adapter_pipeline(adapter_root, ["sd1-canny.safetensors"]), [0], [0.8])
    plain = run_image(executor, adapter_graph([]))
    assert ours.shape == theirs.shape == (1, 32, 32, 3)
    assert np.abs(ours - theirs).max() < 1e-3
    assert np.abs(ours - plain).max() > 1e-2  # the adapter changed the image


@pytest.mark.slow
def test_grey_hint_adapter_equals_the_pipeline_given_the_luminance(adapter_root, executor):
    ours = run_image(executor, adapter_graph([("sd1-sketch", 1, 1.0, 0.0, 1.0)]))
    theirs = pipeline_image(adapter_pipeline(adapter_root, ["sd1-sketch"]), [1], [1.0])
    assert np.abs(ours - theirs).max() < 1e-3


@pytest.mark.slow
def test_two_adapters_equal_the_multi_adapter_pipeline(adapter_root, executor):
    names = ["sd1-canny.safetensors", "sd1-depth.safetensors"]
    controls = [(names[0], 0, 0.7, 0.0, 1.0), (names[1], 1, 0.5, 0.0, 1.0)]
    ours = run_image(executor, adapter_graph(controls))
    theirs = pipeline_image(adapter_pipeline(adapter_root, names), [0, 1], [0.7, 0.5])
    assert np.abs(ours - theirs).max() < 1e-3
    one = run_image(executor, adapter_graph(controls[:1]))
    assert np.abs(ours - one).max() > 1e-3  # the second one counts


@pytest.mark.slow
def test_sdxl_adapter_graph_equals_the_sdxl_adapter_pipeline(adapter_root, executor):
    controls = [("sdxl-canny", 0, 0.9, 0.0, 0.5)]
    ours = run_image(executor, adapter_graph(controls, "tiny-sdxl", "euler"))
    pipe = adapter_pipeline(adapter_root, ["sdxl-canny"], "tiny-sdxl")
    theirs = pipeline_image(pipe, [0], [0.9], adapter_conditioning_factor=0.5)
    assert np.abs(ours - theirs).max() < 1e-3
    whole = run_image(
        executor, adapter_graph([("sdxl-canny", 0, 0.9, 0.0, 1.0)], "tiny-sdxl", "euler")
    )
    assert np.abs(ours - whole).max() > 1e-3  # end 0.5 switched it off halfway


def k_graph(controls) -> dict:
    """The same graph sampled by diffusion.k_sampler (ComfyUI's sigma-space rules)."""
    nodes = adapter_graph(controls)
    sample = {k: v for k, v in nodes["sample"][1].items() if k != "scheduler"}
    nodes["sample"] = ("diffusion.k_sampler", {**sample, "sampler": "euler"})
    del nodes["sched"]
    return nodes


def test_k_sampler_applies_adapters_within_their_percent_range(executor):
    plain = run_image(executor, k_graph([]))
    full = run_image(executor, k_graph([("sd1-canny.safetensors", 0, 1.0, 0.0, 1.0)]))
    half = run_image(executor, k_graph([("sd1-canny.safetensors", 0, 1.0, 0.5, 1.0)]))
    never = run_image(executor, k_graph([("sd1-canny.safetensors", 0, 1.0, 0.0, 0.0)]))
    assert np.abs(full - plain).max() > 1e-2
    assert np.abs(half - full).max() > 1e-3 and np.abs(half - plain).max() > 1e-3
    assert np.array_equal(never, plain)  # end 0: σ(0 %) is above every step's σ
