"""ComfyUI's inpainting class types (gf_comfy/nodes_inpaint.py): ComfyUI's specs, the same
values as graphflow's own inpainting nodes, and ComfyUI's mask resizing where graphflow's
nodes refuse a mismatched size."""

from __future__ import annotations

import pytest
import torch

from gf_comfy.names import CLASSES
from graphflow import Executor, Image, Mask, load_plugins, node
from support import link, make_workflow


def spec_rows(class_type: str) -> list[tuple]:
    spec = CLASSES[class_type].spec
    return [(i.name, i.type, None if i.required else i.default, i.min, i.max) for i in spec.inputs]


@pytest.mark.parametrize(
    ("class_type", "display", "category", "rows", "outputs"),
    [
        (
            "VAEEncodeForInpaint",
            "VAE Encode (for Inpainting)",
            "latent/inpaint",
            [("pixels", "IMAGE", None, None, None), ("vae", "VAE", None, None, None),
             ("mask", "MASK", None, None, None), ("grow_mask_by", "INT", 6, 0, 64)],
            [("LATENT", "LATENT")],
        ),
        (
            "SetLatentNoiseMask",
            "Set Latent Noise Mask",
            "latent/inpaint",
            [("samples", "LATENT", None, None, None), ("mask", "MASK", None, None, None)],
            [("LATENT", "LATENT")],
        ),
        (
            "InpaintModelConditioning",
            "InpaintModelConditioning",
            "conditioning/inpaint",
            [("positive", "CONDITIONING", None, None, None),
             ("negative", "CONDITIONING", None, None, None), ("vae", "VAE", None, None, None),
             ("pixels", "IMAGE", None, None, None), ("mask", "MASK", None, None, None),
             ("noise_mask", "BOOLEAN", True, None, None)],
            [("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("latent", "LATENT")],
        ),
    ],
)  # fmt: skip
def test_specs_are_comfyuis(class_type, display, category, rows, outputs):
    entry = CLASSES[class_type]
    assert (entry.display_name, entry.category) == (display, category)
    assert [r for r in spec_rows(class_type) if r[0] != "ctx"] == rows
    names = entry.output_names or tuple(o.type for o in entry.spec.outputs)
    assert list(zip(names, [o.type for o in entry.spec.outputs], strict=True)) == outputs


PICTURE = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(2))
MASK = torch.zeros(1, 32, 32)
MASK[:, 8:20, 12:28] = 1.0
SMALL_MASK = MASK[:, ::2, ::2].clone()  # the same mask at half size


@pytest.fixture(scope="module")
def executor():
    registry = load_plugins().registry

    @node("test.picture")
    def test_picture() -> Image:
        """The test picture."""
        return PICTURE

    @node("test.mask")
    def test_mask() -> Mask:
        """The test mask (32×32)."""
        return MASK

    @node("test.small_mask")
    def test_small_mask() -> Mask:
        """The test mask at 16×16."""
        return SMALL_MASK

    for spec in (test_picture, test_mask, test_small_mask):
        registry.register(spec)
    return Executor(registry)


def graph(**extra) -> dict:
    tokens = {"tokenizer": link("ckpt", "tokenizer")}
    return {
        "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "graphflow-tiny"}),
        "tok": ("diffusion.tokenize", {"text": "a red sneaker", **tokens}),
        "cond": (
            "diffusion.encode_text",
            {"tokens": link("tok", "tokens"), "text_encoder": link("ckpt", "text_encoder")},
        ),
        "picture": ("test.picture", {}),
        "mask": ("test.mask", {}),
        "small": ("test.small_mask", {}),
        "plain": (
            "diffusion.vae_encode",
            {"vae": link("ckpt", "vae"), "image": link("picture", "image"), "mode": "mean"},
        ),
        **extra,
    }


def outputs_of(executor, nodes: dict, names: list[str]) -> dict:
    shows = {f"show_{n}": ("core.show", {"value": link(n, "latent")}) for n in names[:1]}
    result = executor.run(make_workflow({**nodes, **shows}), outputs=names)
    assert result.ok, result.error
    return result.outputs


def encode_inputs(mask: str) -> dict:
    return {
        "pixels": link("picture", "image"),
        "vae": link("ckpt", "vae"),
        "mask": link(mask, "mask"),
    }


def test_vae_encode_for_inpaint_equals_the_native_node_and_resizes_a_smaller_mask(executor):
    nodes = graph(
        native=("diffusion.vae_encode_inpaint", {**encode_inputs("mask"), "grow_mask_by": 4}),
        comfy=("comfy.vae_encode_for_inpaint", {**encode_inputs("mask"), "grow_mask_by": 4}),
        resized=("comfy.vae_encode_for_inpaint", {**encode_inputs("small"), "grow_mask_by": 4}),
    )
    out = outputs_of(executor, nodes, ["native", "comfy", "resized"])
    native, comfy, resized = (out[n]["latent"] for n in ("native", "comfy", "resized"))
    assert torch.equal(native.samples, comfy.samples)
    assert torch.equal(native.noise_mask, comfy.noise_mask)
    assert resized.noise_mask.shape == (1, 1, 32, 32)  # resized to the image, as ComfyUI


def test_set_latent_noise_mask_equals_the_native_node_and_takes_any_size(executor):
    nodes = graph(
        native=(
            "diffusion.set_latent_mask",
            {"latent": link("plain", "latent"), "mask": link("mask", "mask")},
        ),
        comfy=(
            "comfy.set_latent_noise_mask",
            {"samples": link("plain", "latent"), "mask": link("mask", "mask")},
        ),
        odd=(
            "comfy.set_latent_noise_mask",
            {"samples": link("plain", "latent"), "mask": link("small", "mask")},
        ),
    )
    out = outputs_of(executor, nodes, ["native", "comfy", "odd"])
    assert torch.equal(out["native"]["latent"].noise_mask, out["comfy"]["latent"].noise_mask)
    assert torch.equal(out["native"]["latent"].samples, out["comfy"]["latent"].samples)
    assert out["odd"]["latent"].noise_mask.shape == (1, 1, 16, 16)


def test_the_native_node_refuses_a_mask_of_another_size_naming_both(executor):
    nodes = graph(native=("diffusion.vae_encode_inpaint", encode_inputs("small")))
    result = executor.run(
        make_workflow({**nodes, "show": ("core.show", {"value": link("native", "latent")})})
    )
    assert not result.ok
    assert "mask is 16×16 but the image is 32×32" in str(result.error)


@pytest.mark.parametrize("noise_mask", [True, False])
def test_inpaint_model_conditioning_equals_the_native_node(executor, noise_mask):
    inputs = {
        "positive": link("cond", "conditioning"),
        "negative": link("cond", "conditioning"),
        **encode_inputs("mask"),
        "noise_mask": noise_mask,
    }
    nodes = graph(
        native=("diffusion.inpaint_conditioning", inputs),
        comfy=("comfy.inpaint_model_conditioning", inputs),
    )
    out = outputs_of(executor, nodes, ["native", "comfy"])
    native, comfy = out["native"], out["comfy"]
    for name in ("positive", "negative"):
        a, b = native[name].entries[0], comfy[name].entries[0]
        assert torch.equal(a.concat_latent, b.concat_latent)
        assert torch.equal(a.concat_mask, b.concat_mask)
    assert torch.equal(native["latent"].samples, comfy["latent"].samples)
    assert (comfy["latent"].noise_mask is not None) == noise_mask
