"""ComfyUI's image class types (gf_comfy/nodes_image.py): ComfyUI's specs (COMFY_COMPAT
§5.1), scaling against torch and Pillow, invert, blank images, and upscale models through
gf_image's upscaler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from gf_comfy import nodes_image as images
from gf_comfy.names import CLASSES
from graphflow import Executor, Image, ValidationFailed, load_plugins, node
from support import link, make_workflow

METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
TORCH_METHODS = METHODS[:4]


def spec_rows(class_type: str) -> list[tuple]:
    """(name, type, default or None, min, max, step) of each input, in order."""
    return [
        (i.name, i.type, None if i.required else i.default, i.min, i.max, i.step)
        for i in CLASSES[class_type].spec.inputs
    ]


def outputs(class_type: str) -> list[tuple[str, str]]:
    return [(o.name, o.type) for o in CLASSES[class_type].spec.outputs]


def random_image(batch=1, height=12, width=20, seed=0) -> torch.Tensor:
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed))


def waves(height=37, width=53) -> np.ndarray:
    """(H, W, 3) uint8 slow waves: no filter overshoots them."""
    yy, xx = np.mgrid[0:height, 0:width]
    channels = [
        0.5 + 0.3 * np.sin(xx / 4 + yy / 7),
        0.5 + 0.3 * np.cos(yy / 5),
        0.2 + 0.6 * xx / width,
    ]
    return (np.stack(channels, -1) * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------- specs

IMAGE = ("image", "IMAGE", None, None, None, None)
METHOD = ("upscale_method", "STRING", None, None, None, None)


@pytest.mark.parametrize(
    ("class_type", "display", "category", "rows", "outs"),
    [
        (
            "ImageScale",
            "Upscale Image",
            "image/upscaling",
            [
                IMAGE,
                METHOD,
                ("width", "INT", 512, 0, 16384, 1),
                ("height", "INT", 512, 0, 16384, 1),
                ("crop", "STRING", "disabled", None, None, None),
            ],
            [("image", "IMAGE")],
        ),
        (
            "ImageScaleBy",
            "Upscale Image By",
            "image/upscaling",
            [IMAGE, METHOD, ("scale_by", "FLOAT", 1.0, 0.01, 8.0, 0.01)],
            [("image", "IMAGE")],
        ),
        ("ImageInvert", "Invert Image", "image", [IMAGE], [("image", "IMAGE")]),
        (
            "EmptyImage",
            "EmptyImage",
            "image",
            [
                ("width", "INT", 512, 1, 16384, 1),
                ("height", "INT", 512, 1, 16384, 1),
                ("batch_size", "INT", 1, 1, 4096, None),
                ("color", "INT", 0, 0, 0xFFFFFF, 1),
            ],
            [("image", "IMAGE")],
        ),
        (
            "UpscaleModelLoader",
            "Load Upscale Model",
            "loaders",
            [("model_name", "STRING", None, None, None, None)],
            [("upscale_model", "UPSCALE_MODEL")],
        ),
        (
            "ImageUpscaleWithModel",
            "Upscale Image (using Model)",
            "image/upscaling",
            [("upscale_model", "UPSCALE_MODEL", None, None, None, None), IMAGE],
            [("image", "IMAGE")],
        ),
    ],
)
def test_image_class_types_have_comfyuis_spec(class_type, display, category, rows, outs):
    entry = CLASSES[class_type]
    assert (entry.display_name, entry.category) == (display, category)
    assert spec_rows(class_type) == rows
    assert outputs(class_type) == outs
    assert not entry.spec.output_node


def test_method_lists_and_color_widget_are_comfyuis():
    for class_type in ("ImageScale", "ImageScaleBy"):
        method = CLASSES[class_type].spec.inputs_by_name["upscale_method"]
        assert method.allowed_choices() == METHODS
    assert CLASSES["ImageScale"].spec.inputs_by_name["crop"].allowed_choices() == [
        "disabled",
        "center",
    ]
    assert CLASSES["EmptyImage"].input("color").display == "color"


def test_empty_image_is_named_as_a_v1_node_without_a_display_mapping():
    from gf_comfy.object_info import class_info

    info = class_info(CLASSES["EmptyImage"])
    assert info["display_name"] == "EmptyImage"


# --------------------------------------------------------------------------- scaling


@pytest.mark.parametrize("method", TORCH_METHODS)
def test_torch_methods_are_plain_interpolate_clipped(method):
    image = random_image()
    out = images.image_scale(image, method, 33, 17)
    planes = F.interpolate(image.movedim(-1, 1), size=(17, 33), mode=method)
    assert torch.allclose(out, planes.movedim(1, -1).clamp(0, 1), atol=1e-6)
    assert out.shape == (1, 17, 33, 3)


@pytest.mark.parametrize("size", [(20, 13), (100, 80), (31, 77)])
def test_lanczos_matches_pillow(size):
    picture = waves()
    image = torch.from_numpy(picture.astype(np.float32) / 255.0)[None]
    ours = images.image_scale(image, "lanczos", *size)[0].numpy() * 255.0
    pillow = np.asarray(
        PILImage.fromarray(picture).resize(size, PILImage.Resampling.LANCZOS), dtype=np.float32
    )
    assert np.abs(ours - pillow).max() <= 1.5  # Pillow rounds to 8 bits after each pass


def test_a_zero_side_keeps_the_aspect_and_both_zero_keep_the_image():
    image = random_image(height=12, width=20)
    assert images.image_scale(image, "bilinear", 0, 30).shape == (1, 30, 50, 3)
    assert images.image_scale(image, "bilinear", 5, 0).shape == (1, 3, 5, 3)
    assert images.image_scale(image, "bilinear", 0, 0) is image


def test_center_crop_cuts_the_long_side_before_scaling():
    image = random_image(height=12, width=20)
    out = images.image_scale(image, "area", 6, 6, "center")
    # aspect 20/12 → 1: round((20 − 12) / 2) = 4 columns cut on each side, then 12 → 6
    cropped = image[:, :, 4:16].movedim(-1, 1)
    expected = F.avg_pool2d(cropped, 2).movedim(1, -1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_scale_by_rounds_each_side():
    image = random_image(height=12, width=20)
    for method in METHODS:
        assert images.image_scale_by(image, method, 0.55).shape == (1, 7, 11, 3)


def test_huge_targets_are_refused_before_allocating():
    with pytest.raises(ValueError, match="refused"):
        images.image_scale(random_image(), "bilinear", 16384, 16384)


# --------------------------------------------------------------------------- invert, empty


def test_invert_is_one_minus_the_image():
    image = random_image()
    assert torch.equal(images.image_invert(image), 1.0 - image)


def test_empty_image_is_filled_with_the_rgb_colour():
    blank = images.empty_image(width=5, height=3, batch_size=2, color=0xFF8000)
    assert blank.shape == (2, 3, 5, 3)
    assert torch.allclose(blank[1, 2, 4], torch.tensor([1.0, 128 / 255, 0.0]))
    assert not images.empty_image(2, 2, 1, 0).any()


# --------------------------------------------------------------------------- upscale models


@node("t.comfy_small_image")
def small_image() -> Image:
    """A 12 × 16 random image."""
    return random_image(height=12, width=16, seed=3)


@pytest.fixture(scope="module")
def registry():
    registry = load_plugins().registry
    registry.register(small_image, plugin="tests")
    return registry


def test_upscale_with_model_gives_what_graphflows_upscaler_gives(registry):
    model = "bundled/graphflow-sr-x4"
    nodes = {
        "src": ("t.comfy_small_image", {}),
        "loader": ("comfy.upscale_model_loader", {"model_name": model}),
        "up": (
            "comfy.image_upscale_with_model",
            {"upscale_model": link("loader", "upscale_model"), "image": link("src", "image")},
        ),
        "gf_loader": ("image.load_upscale_model", {"model_name": model}),
        "gf_up": (
            "image.upscale_with_model",
            {"upscale_model": link("gf_loader", "upscale_model"), "image": link("src", "image")},
        ),
        "show": ("core.show", {"value": link("up", "image")}),
        "show_gf": ("core.show", {"value": link("gf_up", "image")}),
    }
    result = Executor(registry, device="cpu").run(make_workflow(nodes), outputs=["up", "gf_up"])
    assert result.ok, result.error
    ours, theirs = result.outputs["up"]["image"], result.outputs["gf_up"]["image"]
    assert ours.shape == (1, 48, 64, 3) and torch.equal(ours, theirs)


def test_a_pickle_upscale_model_needs_the_allow_pickle_setting(registry, tmp_path, monkeypatch):
    (tmp_path / "upscale_models").mkdir()
    torch.save({"weight": torch.zeros(1)}, tmp_path / "upscale_models" / "old.pth")
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path))
    monkeypatch.delenv("GRAPHFLOW_ALLOW_PICKLE", raising=False)
    workflow = make_workflow(
        {
            "loader": ("comfy.upscale_model_loader", {"model_name": "old.pth"}),
            "up": (
                "comfy.image_upscale_with_model",
                {"upscale_model": link("loader", "upscale_model"), "image": link("e", "image")},
            ),
            "e": ("comfy.empty_image", {"width": 8, "height": 8}),
            "show": ("core.show", {"value": link("up", "image")}),
        }
    )
    with pytest.raises(ValidationFailed) as caught:
        Executor(registry).validate(workflow)
    (error,) = caught.value.errors
    assert (error.node, error.input) == ("loader", "model_name")
    assert "pickle" in error.message
