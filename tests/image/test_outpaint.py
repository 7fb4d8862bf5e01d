"""Canvas nodes (gf_image/outpaint.py): pad for outpainting (sizes, grey fill, the feathered
mask's squared ramp), compositing through a mask, and batching two images."""

from __future__ import annotations

import pytest
import torch

from gf_image import outpaint
from graphflow import Executor
from support import link, make_workflow, registry_with


def random_image(batch: int = 1, height: int = 20, width: int = 24, seed: int = 0):
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed))


def reference_feather(height, width, left, top, right, bottom, feathering):
    """The feathered mask over the original image, pixel by pixel, as ComfyUI's
    ImagePadForOutpaint defines it (distance 0 on the first row/column, 1 on the last)."""
    mask = torch.zeros(height, width)
    if not (feathering > 0 and 2 * feathering < height and 2 * feathering < width):
        return mask
    for i in range(height):
        for j in range(width):
            d = min(
                i if top else height,
                height - i if bottom else height,
                j if left else width,
                width - j if right else width,
            )
            if d < feathering:
                mask[i, j] = ((feathering - d) / feathering) ** 2
    return mask


# -- pad for outpainting ---------------------------------------------------------------------


def test_padding_grows_the_canvas_and_keeps_the_image():
    image = random_image(batch=2)
    padded, mask = outpaint.pad_image_for_outpaint(image, 8, 16, 0, 24, 0)
    assert padded.shape == (2, 20 + 16 + 24, 24 + 8, 3)
    assert mask.shape == (1, 60, 32)
    assert torch.equal(padded[:, 16:36, 8:32], image)


def test_the_new_area_is_grey_and_selected_the_image_unselected_without_feathering():
    padded, mask = outpaint.pad_image_for_outpaint(random_image(), 8, 0, 8, 0, 0)
    assert torch.all(padded[:, :, :8] == 0.5) and torch.all(padded[:, :, -8:] == 0.5)
    assert torch.all(mask[:, :, :8] == 1) and torch.all(mask[:, :, -8:] == 1)
    assert torch.all(mask[:, :, 8:-8] == 0)


def test_feathered_mask_is_the_squared_distance_ramp():
    _, mask = outpaint.pad_image_for_outpaint(random_image(), 8, 0, 0, 8, 4)
    inner = mask[0, 0:20, 8:32]
    # left padded: column j of the image has distance j → 1, (3/4)², (2/4)², (1/4)², 0
    assert inner[10, :5].tolist() == pytest.approx([1.0, 0.5625, 0.25, 0.0625, 0.0])
    # bottom padded: the last row has distance 1, the one above 2 ...
    assert inner[-4:, 12].tolist() == pytest.approx([0.0, 0.0625, 0.25, 0.5625])
    assert inner[0, 12] == 0.0  # top not padded: no ramp there
    assert inner[-1, 0] == 1.0  # the nearer side decides in a corner


@pytest.mark.parametrize(
    "sides", [(8, 0, 0, 0), (0, 8, 8, 0), (8, 8, 8, 8), (0, 0, 0, 8), (16, 0, 8, 0)]
)
@pytest.mark.parametrize("feathering", [1, 3, 9])
def test_feathered_mask_matches_comfyuis_definition(sides, feathering):
    left, top, right, bottom = sides
    _, mask = outpaint.pad_image_for_outpaint(random_image(), left, top, right, bottom, feathering)
    inner = mask[0, top : top + 20, left : left + 24]
    assert torch.allclose(inner, reference_feather(20, 24, *sides, feathering), atol=1e-6)


def test_no_feathering_when_twice_it_reaches_across_the_image():
    _, mask = outpaint.pad_image_for_outpaint(random_image(), 8, 8, 8, 8, 10)  # 2·10 ≥ 20 rows
    assert torch.all(mask[0, 8:28, 8:32] == 0)


def test_padding_refuses_huge_canvases():
    with pytest.raises(ValueError, match="refused"):
        outpaint.pad_image_for_outpaint(random_image(), 16384, 16384, 0, 0, 0)


# -- composite through a mask ----------------------------------------------------------------


def test_composite_without_mask_pastes_the_source_at_x_y():
    destination, source = random_image(), random_image(height=5, width=6, seed=1)
    out = outpaint.composite_masked(destination, source, 3, 2)
    assert torch.equal(out[:, 2:7, 3:9], source)
    untouched = torch.ones(20, 24, dtype=torch.bool)
    untouched[2:7, 3:9] = False
    assert torch.equal(out[0][untouched], destination[0][untouched])


def test_composite_blends_through_the_mask():
    destination, source = torch.zeros(1, 4, 4, 3), torch.ones(1, 4, 4, 3)
    mask = torch.tensor([[[0.0, 0.25, 0.5, 1.0]]]).expand(1, 4, 4)
    out = outpaint.composite_masked(destination, source, 0, 0, mask=mask)
    assert out[0, 2, :, 0].tolist() == [0.0, 0.25, 0.5, 1.0]


def test_composite_cuts_off_what_falls_beyond_the_destination():
    out = outpaint.composite_masked(torch.zeros(1, 4, 4, 3), torch.ones(1, 3, 3, 3), 2, 3)
    assert out[0, ..., 0].sum() == 2 and torch.all(out[0, 3, 2:] == 1)


def test_composite_mask_must_be_the_source_size_unless_resized():
    destination, source = random_image(), random_image(height=8, width=8)
    with pytest.raises(ValueError, match="mask is 4×4 but the source image is 8×8"):
        outpaint.composite_masked(destination, source, 0, 0, mask=torch.ones(1, 4, 4))
    out = outpaint.composite_masked(
        destination, source, 0, 0, mask=torch.ones(1, 4, 4), resize_mask=True
    )
    assert torch.allclose(out[:, :8, :8], source)


def test_resize_source_stretches_it_to_the_destination():
    destination = random_image()
    out = outpaint.composite_masked(destination, torch.ones(1, 5, 5, 3), 0, 0, resize_source=True)
    assert torch.all(out == 1.0)


def test_composite_broadcasts_batches_of_one_and_refuses_others():
    out = outpaint.composite_masked(random_image(batch=3), random_image(height=4, width=4), 0, 0)
    assert out.shape == (3, 20, 24, 3)
    with pytest.raises(ValueError, match="mask batch of 2 does not fit image batch of 3"):
        outpaint.composite_masked(
            random_image(batch=3), random_image(), 0, 0, mask=torch.ones(2, 20, 24)
        )


# -- batches ---------------------------------------------------------------------------------


def test_batch_joins_images_of_the_same_size_in_order():
    a, b = random_image(batch=2), random_image(seed=1)
    out = outpaint.image_batch(a, b)
    assert out.shape == (3, 20, 24, 3)
    assert torch.equal(out[:2], a) and torch.equal(out[2:], b)


def test_batch_resizes_the_second_image_to_the_first_cropping_to_its_aspect():
    a = random_image(height=10, width=10)
    b = torch.zeros(1, 10, 20, 3)
    b[:, :, 5:15] = 1.0  # the centre square survives the crop, the sides do not
    out = outpaint.image_batch(a, b)
    assert out.shape == (2, 10, 10, 3)
    assert torch.allclose(out[1], torch.ones(10, 10, 3))


def test_batch_refuses_different_channel_counts():
    with pytest.raises(ValueError, match="3 and 4 channels"):
        outpaint.image_batch(random_image(), torch.rand(1, 20, 24, 4))


def test_outpaint_pad_runs_in_a_workflow(tmp_path):
    workflow = make_workflow(
        {
            "photo": ("image.example_photo", {"photo": "coffee", "size": 64}),
            "pad": (
                "image.pad_for_outpaint",
                {"image": link("photo", "image"), "left": 16, "feathering": 8},
            ),
            "show": ("image.mask_to_image", {"mask": link("pad", "mask")}),
            "preview": ("image.preview", {"images": link("show", "image")}),
        }
    )
    result = Executor(registry_with(*outpaint.NODES), output_dir=tmp_path / "o").run(
        workflow, outputs=["pad", "show"]
    )
    assert result.ok, result.error
    assert result.outputs["pad"]["image"].shape == (1, 43, 80, 3)  # coffee is 400×600 → 43×64
    assert result.outputs["show"]["image"][0, 20, 16, 0] == 1.0
