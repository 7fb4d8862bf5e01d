"""Mask nodes (gf_image/masks.py on mask_ops.py): conversions, solid/invert/threshold,
grow and shrink, blur and edge feathering, crop, combining, colour masks, batch
broadcasting and the size-mismatch messages."""

from __future__ import annotations

import pytest
import torch
from PIL import Image as PILImage

from gf_image import mask_ops, masks
from graphflow import Executor
from support import link, make_workflow, registry_with


def dot(size: int = 9) -> torch.Tensor:
    """A (1, size, size) mask with one selected pixel in the middle."""
    mask = torch.zeros(1, size, size)
    mask[0, size // 2, size // 2] = 1.0
    return mask


def offsets(mask: torch.Tensor) -> set[tuple[int, int]]:
    """The selected pixels as (dy, dx) from the centre."""
    centre = mask.shape[-1] // 2
    return {(int(y) - centre, int(x) - centre) for y, x in (mask[0] > 0.5).nonzero().tolist()}


def soft_mask(batch: int = 2, height: int = 17, width: int = 23, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, height, width, generator=torch.Generator().manual_seed(seed))


# -- image ↔ mask ----------------------------------------------------------------------------


@pytest.mark.parametrize(("channel", "index"), [("red", 0), ("green", 1), ("blue", 2)])
def test_image_to_mask_takes_the_channel(channel, index):
    image = torch.rand(2, 5, 7, 3)
    mask = masks.image_to_mask(image, channel)
    assert mask.shape == (2, 5, 7)
    assert torch.equal(mask, image[..., index])


def test_image_to_mask_reads_alpha_of_rgba_images_and_refuses_it_for_rgb():
    rgba = torch.rand(1, 4, 4, 4)
    assert torch.equal(masks.image_to_mask(rgba, "alpha"), rgba[..., 3])
    with pytest.raises(ValueError, match="3 channels, so no alpha channel"):
        masks.image_to_mask(torch.rand(1, 4, 4, 3), "alpha")


def test_mask_to_image_is_grey_rgb_of_the_mask():
    mask = soft_mask()
    image = masks.mask_to_image(mask)
    assert image.shape == (2, 17, 23, 3)
    for c in range(3):
        assert torch.equal(image[..., c], mask)


def test_a_two_dimensional_mask_counts_as_a_batch_of_one():
    assert masks.mask_to_image(torch.ones(3, 4)).shape == (1, 3, 4, 3)


def test_solid_mask_has_the_value_size_and_batch():
    mask = masks.solid_mask(0.25, width=6, height=4, batch=3)
    assert mask.shape == (3, 4, 6) and torch.all(mask == 0.25)


def test_invert_is_one_minus_the_mask():
    mask = soft_mask()
    assert torch.allclose(masks.invert_mask(mask), 1.0 - mask)


def test_threshold_selects_values_strictly_above():
    mask = torch.tensor([[[0.2, 0.5, 0.51, 1.0]]])
    assert masks.threshold_mask(mask, 0.5).tolist() == [[[0.0, 0.0, 1.0, 1.0]]]


# -- grow / shrink ---------------------------------------------------------------------------


def test_square_growth_by_two_turns_a_pixel_into_a_5x5_square():
    grown = masks.grow_mask(dot(), 2, "square")
    assert offsets(grown) == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


def test_tapered_growth_by_two_turns_a_pixel_into_a_diamond():
    grown = masks.grow_mask(dot(), 2, "tapered")
    expected = {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if abs(dy) + abs(dx) <= 2}
    assert offsets(grown) == expected  # 13 pixels: the 5×5 square without its corners


def test_round_growth_is_a_disk():
    grown = masks.grow_mask(dot(15), 5, "round")
    expected = {(dy, dx) for dy in range(-5, 6) for dx in range(-5, 6) if dy * dy + dx * dx <= 25}
    assert offsets(grown) == expected


@pytest.mark.parametrize("shape", mask_ops.GROW_SHAPES)
def test_shrinking_undoes_growing_a_pixel(shape):
    grown = masks.grow_mask(dot(15), 3, shape)
    assert offsets(masks.grow_mask(grown, -3, shape)) == {(0, 0)}


def test_shrinking_a_full_mask_keeps_it_full_at_the_borders():
    # The border repeats (as scipy's default mode), so the image edge is no mask edge.
    assert torch.all(masks.grow_mask(torch.ones(1, 6, 6), -2, "square") == 1.0)


@pytest.mark.parametrize(("pixels", "tapered"), [(3, True), (2, False), (-2, True), (-3, False)])
def test_grey_growth_matches_scipy_morphology(pixels, tapered):
    ndimage = pytest.importorskip("scipy.ndimage")
    import numpy as np

    mask = soft_mask(batch=1)
    c = 0 if tapered else 1
    footprint = np.array([[c, 1, c], [1, 1, 1], [c, 1, c]])
    expected = mask[0].numpy()
    for _ in range(abs(pixels)):
        step = ndimage.grey_dilation if pixels > 0 else ndimage.grey_erosion
        expected = step(expected, footprint=footprint)
    ours = masks.grow_mask(mask, pixels, "tapered" if tapered else "square")
    assert torch.allclose(ours[0], torch.from_numpy(expected), atol=1e-6)


# -- blur and feather ------------------------------------------------------------------------


def test_blur_keeps_a_solid_mask_solid_and_radius_zero_changes_nothing():
    assert torch.allclose(
        masks.blur_mask(torch.full((1, 9, 9), 0.7), 3.0), torch.full((1, 9, 9), 0.7)
    )
    mask = soft_mask()
    assert torch.equal(masks.blur_mask(mask, 0.0), mask)


def test_blur_turns_a_hard_edge_into_a_symmetric_ramp():
    mask = torch.zeros(1, 5, 40)
    mask[..., 20:] = 1.0
    row = masks.blur_mask(mask, 3.0)[0, 2]
    assert row[19] + row[20] == pytest.approx(1.0, abs=1e-5)  # symmetric about the edge
    assert row[19] < 0.5 < row[20]
    assert row[5] < 1e-3 and row[35] > 1 - 1e-3
    assert torch.all(row[1:] >= row[:-1])  # monotonic


def test_blur_matches_a_gaussian_of_that_standard_deviation():
    radius = 2.0
    blurred = masks.blur_mask(dot(31), radius)[0]
    centre = 15
    profile = blurred[centre, centre - 6 : centre + 7] / blurred[centre, centre]
    x = torch.arange(-6, 7, dtype=torch.float32)
    assert torch.allclose(profile, torch.exp(-0.5 * (x / radius) ** 2), atol=1e-5)


def test_feather_ramps_each_side_linearly_to_the_border():
    out = masks.feather_mask(torch.ones(1, 6, 8), left=4, top=0, right=2, bottom=3)
    assert out[0, 0, :4].tolist() == pytest.approx([1 / 4, 2 / 4, 3 / 4, 1.0])
    assert out[0, 0, -2:].tolist() == pytest.approx([1.0, 1 / 2])
    assert out[0, -3:, 4].tolist() == pytest.approx([1.0, 2 / 3, 1 / 3])
    assert out[0, 0, 4] == 1.0  # top 0: the first row is not faded
    assert out[0, -1, 0] == pytest.approx(1 / 4 * 1 / 3)  # corners multiply both ramps


def test_feathering_wider_than_the_mask_ramps_across_it():
    out = masks.feather_mask(torch.ones(1, 1, 3), left=10, top=0, right=0, bottom=0)
    assert out[0, 0].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])


# -- crop, combine, colour -------------------------------------------------------------------


def test_crop_mask_returns_the_rectangle():
    mask = soft_mask()
    assert torch.equal(masks.crop_mask(mask, 3, 2, 5, 4), mask[:, 2:6, 3:8])


def test_crop_mask_outside_fails_naming_the_edge():
    with pytest.raises(ValueError, match=r"leaves the 23×17 mask: x \+ width = 24 exceeds"):
        masks.crop_mask(soft_mask(), 20, 0, 4, 4)


def two_masks():
    destination = torch.tensor([[[0.0, 0.25, 0.5, 1.0], [1.0, 0.75, 0.5, 0.0]]])
    source = torch.tensor([[[1.0, 0.5], [1.0, 0.4]]])
    return destination, source


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("multiply", [[0.0, 0.25, 0.25, 1.0], [1.0, 0.75, 0.2, 0.0]]),
        ("add", [[0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.9, 0.0]]),
        ("subtract", [[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.1, 0.0]]),
        # logic on rounded masks: 0.25 → 0, 0.5 → 0 (half to even), 0.75 → 1, 0.4 → 0
        ("and", [[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]]),
        ("or", [[0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]]),
        ("xor", [[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]),
    ],
)
def test_combine_masks_applies_the_operation_where_the_source_lies(operation, expected):
    destination, source = two_masks()
    out = masks.composite_masks(destination, source, 1, 0, operation)
    assert torch.allclose(out[0], torch.tensor(expected), atol=1e-6)


def test_combine_ignores_source_parts_beyond_the_destination():
    destination = torch.zeros(1, 4, 4)
    out = masks.composite_masks(destination, torch.ones(1, 3, 3), 2, 3, "add")
    assert out[0].sum() == 2 and torch.all(out[0, 3, 2:] == 1)
    assert torch.equal(
        masks.composite_masks(destination, torch.ones(1, 3, 3), 9, 0, "add"), destination
    )


def test_combine_broadcasts_a_batch_of_one():
    destination = torch.zeros(3, 4, 4)
    out = masks.composite_masks(destination, torch.ones(1, 2, 2), 0, 0, "add")
    assert out.shape == (3, 4, 4) and torch.all(out[:, :2, :2] == 1)
    assert (
        masks.composite_masks(torch.zeros(1, 4, 4), torch.ones(2, 2, 2), 0, 0, "add").shape[0] == 2
    )


def test_combine_refuses_batches_that_do_not_fit_naming_both_sizes():
    with pytest.raises(ValueError, match="source batch of 2 does not fit destination batch of 3"):
        masks.composite_masks(torch.zeros(3, 4, 4), torch.ones(2, 2, 2), 0, 0, "add")


def test_color_to_mask_selects_exactly_that_colour():
    image = torch.zeros(1, 2, 3, 3)
    image[0, 0, 0] = torch.tensor([1.0, 0.0, 0.0])
    image[0, 1, 2] = torch.tensor([1.0, 1 / 255, 0.0])
    out = masks.color_to_mask(image, 0xFF0000, 0)
    assert out.tolist() == [[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]


def test_color_tolerance_takes_colours_within_it_per_channel():
    image = torch.tensor([[[[200, 100, 50], [205, 96, 50], [210, 100, 50]]]]) / 255.0
    assert masks.color_to_mask(image, 0xC86432, 5).tolist() == [[[1.0, 1.0, 0.0]]]
    assert masks.color_to_mask(image, 0xC86432, 0).tolist() == [[[1.0, 0.0, 0.0]]]


# -- shared rules ----------------------------------------------------------------------------


def test_size_mismatch_names_both_sizes():
    with pytest.raises(ValueError, match="mask is 64×48 but the image is 32×32"):
        mask_ops.check_size(torch.zeros(1, 48, 64), 32, 32)


@pytest.mark.parametrize(("a", "b", "size"), [(1, 4, 4), (4, 1, 4), (3, 3, 3)])
def test_batches_of_one_broadcast(a, b, size):
    assert mask_ops.batch_size(a, b) == size


def test_batches_of_other_sizes_are_refused_naming_both():
    with pytest.raises(ValueError, match="mask batch of 2 does not fit image batch of 5"):
        mask_ops.batch_size(2, 5)


# -- load from a file, in a workflow --------------------------------------------------------


@pytest.fixture
def input_folder(tmp_path, monkeypatch):
    folder = tmp_path / "input"
    folder.mkdir()
    monkeypatch.setenv("GRAPHFLOW_INPUT_DIR", str(folder))
    picture = PILImage.new("RGBA", (3, 2), (255, 0, 0, 255))
    picture.putpixel((1, 0), (0, 128, 0, 0))
    picture.save(folder / "m.png")
    return folder


@pytest.mark.parametrize(
    ("channel", "expected"),
    [("alpha", [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), ("red", [[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])],
)
def test_load_mask_reads_a_channel_alpha_as_transparency(input_folder, channel, expected):
    assert masks.load_mask("m.png", channel).tolist() == [expected]


def test_a_mask_chain_runs_in_a_workflow(input_folder, tmp_path):
    workflow = make_workflow(
        {
            "load": ("image.load_mask", {"image": "m.png", "channel": "alpha"}),
            "grow": (
                "image.grow_mask",
                {"mask": link("load", "mask"), "pixels": 1, "shape": "square"},
            ),
            "show": ("image.mask_to_image", {"mask": link("grow", "mask")}),
            "preview": ("image.preview", {"images": link("show", "image")}),
        }
    )
    result = Executor(registry_with(*masks.NODES), output_dir=tmp_path / "o").run(
        workflow, outputs=["show"]
    )
    assert result.ok, result.error
    assert torch.all(result.outputs["show"]["image"] == 1.0)


def test_the_masks_demo_workflow_makes_its_six_panels(tmp_path):
    from pathlib import Path

    from graphflow import load_plugins, load_workflow

    path = Path(__file__).parents[2] / "workflows" / "masks_demo.json"
    executor = Executor(load_plugins().registry, output_dir=tmp_path)
    result = executor.run(load_workflow(path), outputs=["panel5", "soft"])
    assert result.ok, result.error
    strip, soft = result.outputs["panel5"]["image"], result.outputs["soft"]["mask"]
    assert strip.shape == (1, 106, 6 * 160, 3)
    assert soft[0, 40, 65] == pytest.approx(1.0) and soft[0, 0, 0] < 1e-3
    assert torch.all(strip[0, 0, 3 * 160 : 3 * 160 + 5] == 0)  # the spotlight's dark corner
    assert torch.allclose(strip[0, 40, 2 * 160 + 65], torch.ones(3))  # soft mask panel
