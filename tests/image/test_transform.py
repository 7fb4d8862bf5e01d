"""Transform nodes: scale sizes and filters, crop bounds, blend modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from gf_image import transform
from gf_image.transform import SCALE_METHODS, blend_images, crop_image, scale_image
from graphflow import Executor, Image, Int, Registry, node
from support import link, make_workflow, registry_with

SMOOTHING = [m for m in SCALE_METHODS if m != "nearest"]


def random_image(batch: int = 1, height: int = 30, width: int = 40) -> torch.Tensor:
    """A reproducible random IMAGE."""
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(0))


def smooth_image(height: int = 37, width: int = 53) -> np.ndarray:
    """An (H, W, 3) uint8 picture of slow waves: no filter overshoots it."""
    yy, xx = np.mgrid[0:height, 0:width]
    channels = [
        0.5 + 0.3 * np.sin(xx / 4 + yy / 7),
        0.5 + 0.3 * np.cos(yy / 5),
        0.2 + 0.6 * xx / width,
    ]
    return (np.stack(channels, -1) * 255).round().astype(np.uint8)


def checkerboard(size: int = 64) -> torch.Tensor:
    """Alternating black and white pixels: the highest frequency an image can hold."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    board = ((yy + xx) % 2).to(torch.float32)
    return board[None, ..., None].expand(1, size, size, 3).contiguous()


# -- scale ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", SCALE_METHODS)
@pytest.mark.parametrize("factor", [0.25, 0.3, 1.5, 2.0])
def test_scale_by_factor_gives_the_rounded_size(method, factor):
    out = scale_image(random_image(batch=2), method=method, factor=factor)
    assert out.shape == (2, round(30 * factor), round(40 * factor), 3)


@pytest.mark.parametrize("method", SCALE_METHODS)
def test_scale_to_width_and_height_gives_exactly_that_size(method):
    assert scale_image(random_image(), method=method, width=17, height=61).shape == (1, 61, 17, 3)


@pytest.mark.parametrize(("width", "height", "size"), [(80, 0, (60, 80)), (0, 15, (15, 20))])
def test_scale_with_one_side_zero_keeps_the_aspect_ratio(width, height, size):
    out = scale_image(random_image(), width=width, height=height, factor=3.0)
    assert out.shape[1:3] == size


@pytest.mark.parametrize("method", SCALE_METHODS)
@pytest.mark.parametrize("size", [(13, 19), (70, 90)])
def test_scale_keeps_a_flat_image_flat(method, size):
    out = scale_image(torch.full((1, 30, 40, 3), 0.3), method=method, height=size[0], width=size[1])
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-5)


@pytest.mark.parametrize("method", SMOOTHING)
@pytest.mark.parametrize("factor", [0.25, 0.3])
def test_downscaling_is_antialiased(method, factor):
    # Without a low-pass filter a checkerboard aliases to black, white or stripes.
    out = scale_image(checkerboard(), method=method, factor=factor)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=0.05)


def test_nearest_copies_source_pixels_without_mixing():
    image = random_image()
    out = scale_image(image, method="nearest", factor=1.7)
    assert torch.isin(out, image).all()


@pytest.mark.parametrize(
    ("method", "resample"),
    [
        ("bilinear", PILImage.Resampling.BILINEAR),
        ("bicubic", PILImage.Resampling.BICUBIC),
        ("lanczos", PILImage.Resampling.LANCZOS),
        ("nearest", PILImage.Resampling.NEAREST),
    ],
)
@pytest.mark.parametrize("size", [(20, 13), (100, 80), (31, 77)])
def test_scale_matches_pillow(method, resample, size):
    picture = smooth_image()
    image = torch.from_numpy(picture.astype(np.float32) / 255.0)[None]
    ours = scale_image(image, method=method, width=size[0], height=size[1])[0].numpy() * 255.0
    pillow = np.asarray(PILImage.fromarray(picture).resize(size, resample), dtype=np.float32)
    assert np.abs(ours - pillow).max() <= 1.5  # Pillow rounds to 8 bits after each pass


def test_area_reduction_by_a_whole_factor_is_the_block_mean():
    image = random_image(height=32, width=40)
    blocks = image.reshape(1, 8, 4, 10, 4, 3).mean(dim=(2, 4))
    assert torch.allclose(scale_image(image, method="area", factor=0.25), blocks, atol=1e-6)


def test_area_reduction_by_a_fraction_weighs_partly_covered_pixels_by_their_overlap():
    row = torch.tensor([0.0, 0.3, 0.9]).view(1, 1, 3, 1).expand(1, 1, 3, 3)
    out = scale_image(row, method="area", width=2, height=1)
    # Output pixels cover input [0, 1.5) and [1.5, 3).
    expected = torch.tensor([(0.0 + 0.5 * 0.3) / 1.5, (0.5 * 0.3 + 0.9) / 1.5])
    assert torch.allclose(out[0, 0, :, 0], expected, atol=1e-6)


def test_scale_keeps_dtype():
    assert scale_image(random_image().half(), method="lanczos", factor=0.5).dtype == torch.float16


def test_scale_refuses_results_above_the_pixel_limit():
    with pytest.raises(ValueError, match="is refused"):
        scale_image(random_image(), width=16384, height=16384)


# -- crop -------------------------------------------------------------------------------------


def test_crop_returns_the_rectangle_at_x_y():
    image = random_image(batch=2)
    out = crop_image(image, x=5, y=7, width=10, height=20)
    assert torch.equal(out, image[:, 7:27, 5:15, :])


def test_crop_returns_a_copy_not_a_view():
    image = random_image()
    crop_image(image, x=0, y=0, width=4, height=4).fill_(0.0)
    assert image[0, 0, 0, 0] != 0.0


@pytest.mark.parametrize(
    ("rect", "crossed"),
    [
        ((35, 0, 10, 10), ["x + width = 35 + 10 = 45 exceeds the width 40"]),
        ((0, 25, 10, 10), ["y + height = 25 + 10 = 35 exceeds the height 30"]),
        ((0, 0, 41, 31), ["exceeds the width 40", "exceeds the height 30"]),
    ],
)
def test_crop_outside_the_image_fails_naming_the_crossed_edges(rect, crossed):
    x, y, width, height = rect
    with pytest.raises(ValueError, match="leaves the 40×30 image") as error:
        crop_image(random_image(), x=x, y=y, width=width, height=height)
    assert all(part in str(error.value) for part in crossed)


def test_crop_that_fits_exactly_is_allowed():
    assert crop_image(random_image(), x=30, y=20, width=10, height=10).shape == (1, 10, 10, 3)


# -- blend ------------------------------------------------------------------------------------


def grey(value: float) -> torch.Tensor:
    """A small uniform IMAGE."""
    return torch.full((1, 4, 4, 3), value)


@pytest.mark.parametrize(
    ("mode", "base", "layer", "expected"),
    [
        ("normal", 0.2, 0.6, 0.6),
        ("multiply", 0.5, 0.5, 0.25),
        ("screen", 0.5, 0.5, 0.75),
        ("overlay", 0.25, 0.5, 0.25),  # dark base: 2ab
        ("overlay", 0.75, 0.5, 0.75),  # light base: 1 − 2(1 − a)(1 − b)
        ("overlay", 0.75, 0.9, 0.95),
        ("difference", 0.2, 0.7, 0.5),
    ],
)
def test_blend_mode_gives_the_known_value(mode, base, layer, expected):
    out = blend_images(grey(base), grey(layer), factor=1.0, mode=mode)
    assert torch.allclose(out, torch.full_like(out, expected))


def test_blend_factor_moves_from_the_base_to_the_mode_result():
    base, layer = grey(0.2), grey(0.6)
    assert torch.equal(blend_images(base, layer, factor=0.0, mode="multiply"), base)
    halfway = blend_images(base, layer, factor=0.5, mode="normal")
    assert torch.allclose(halfway, torch.full_like(halfway, 0.4))


def test_blend_resizes_the_layer_to_the_base():
    out = blend_images(random_image(height=30, width=40), grey(0.5), factor=1.0, mode="normal")
    assert out.shape == (1, 30, 40, 3)
    assert torch.allclose(out, torch.full_like(out, 0.5))


def test_blend_uses_a_single_layer_for_every_image_of_a_batch():
    out = blend_images(torch.full((3, 4, 4, 3), 0.5), grey(0.5), factor=1.0, mode="multiply")
    assert out.shape == (3, 4, 4, 3) and torch.allclose(out, torch.full_like(out, 0.25))


def test_blend_refuses_batches_of_different_sizes():
    with pytest.raises(ValueError, match="batch of 2 layers onto a batch of 3 bases"):
        blend_images(torch.zeros(3, 4, 4, 3), torch.zeros(2, 4, 4, 3))


# -- in a workflow ----------------------------------------------------------------------------


@node("t.noise_image")
def noise_image(height: Int(min=1) = 30, width: Int(min=1) = 40) -> Image:
    """A random image of the given size."""
    return random_image(height=height, width=width)


@pytest.fixture
def registry() -> Registry:
    return registry_with(*transform.NODES, noise_image)


def test_crop_outside_the_image_fails_the_run_with_a_clear_message(registry):
    workflow = make_workflow(
        {
            "image": ("t.noise_image", {}),
            "crop": ("image.crop", {"image": link("image", "image"), "x": 39, "width": 2}),
            "show": ("image.preview", {"images": link("crop", "image")}),
        }
    )
    result = Executor(registry).run(workflow, outputs=["crop"])
    assert result.status == "failed" and result.error.node == "crop"
    assert result.error.message.startswith("crop 2×512 at (39, 0) leaves the 40×30 image")
