"""Segmentation without weights (gf_vision/segment.py): superpixels on the example photos,
their colour images, labels to masks, and the palettes ControlNet seg models read."""

from __future__ import annotations

import pytest
import torch

from gf_image import examples
from gf_vision import segment as seg
from gf_vision.segment_colors import (
    ADE20K_PALETTE,
    distinct_colors,
    palette_for,
    voc_color,
    voc_palette,
)
from graphflow import Executor
from graphflow.value_codec import decode_value, encode_value
from support import link, make_workflow, registry_with


@pytest.fixture(scope="module")
def coffee():
    return examples.example_photo("coffee", size=96)


@pytest.fixture(scope="module")
def astronaut():
    return examples.example_photo("astronaut", size=96)


def region_count(segmentation) -> int:
    return int(segmentation.labels.unique().numel())


def test_slic_gives_about_the_number_of_regions_asked_for(coffee):
    few, _ = seg.superpixels(coffee, method="slic", regions=20)
    many, _ = seg.superpixels(coffee, method="slic", regions=200)
    assert 10 <= region_count(few) <= 30
    assert 120 <= region_count(many) <= 260


def test_labels_are_numbered_from_zero_without_gaps_and_named(astronaut):
    for method in seg.METHODS:
        segmentation, _ = seg.superpixels(astronaut, method=method)
        count = region_count(segmentation)
        assert segmentation.labels.unique().tolist() == list(range(count)), method
        assert segmentation.names == tuple(f"region {i}" for i in range(count))
        assert len(segmentation.colors) == count


def test_felzenszwalb_scale_trades_region_count_for_size(astronaut):
    fine, _ = seg.superpixels(astronaut, method="felzenszwalb", scale=20.0, min_size=10)
    coarse, _ = seg.superpixels(astronaut, method="felzenszwalb", scale=800.0, min_size=10)
    assert region_count(fine) > 2 * region_count(coarse)


def test_felzenszwalb_regions_respect_min_size(astronaut):
    segmentation, _ = seg.superpixels(astronaut, method="felzenszwalb", min_size=40)
    areas = torch.bincount(segmentation.labels.reshape(-1))
    assert int(areas.min()) >= 40


def test_quickshift_kernel_size_controls_granularity(coffee):
    small, _ = seg.superpixels(coffee, method="quickshift", kernel_size=2.0, max_dist=6.0)
    large, _ = seg.superpixels(coffee, method="quickshift", kernel_size=6.0, max_dist=20.0)
    assert region_count(small) > region_count(large) >= 2


def test_the_colour_image_has_the_photo_shape_and_one_colour_per_region(coffee):
    segmentation, image = seg.superpixels(coffee, method="slic", regions=40)
    assert image.shape == coffee.shape and image.dtype == coffee.dtype
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    labels = segmentation.labels[0]
    for label in labels.unique()[:10]:
        inside = image[0][labels == label]
        assert torch.allclose(inside, inside[0].expand_as(inside))


def test_mean_colour_regions_are_the_photos_average_over_them(coffee):
    segmentation, image = seg.superpixels(coffee, method="slic", regions=40)
    labels = segmentation.labels[0]
    for label in labels.unique()[:10]:
        expected = coffee[0][labels == label].mean(0)
        got = image[0][labels == label][0]
        assert torch.allclose(got, expected, atol=1e-5)


def test_palette_colouring_uses_the_segmentations_colours(coffee):
    segmentation, image = seg.superpixels(coffee, method="slic", regions=30, coloring="palette")
    label = int(segmentation.labels[0, 0, 0])
    expected = torch.tensor(segmentation.colors[label], dtype=torch.float32) / 255
    assert torch.allclose(image[0, 0, 0], expected)


def test_each_image_of_a_batch_is_segmented_on_its_own(coffee):
    batch = torch.cat([coffee, coffee.flip(2)])
    segmentation, image = seg.superpixels(batch, method="slic", regions=30)
    alone, _ = seg.superpixels(coffee, method="slic", regions=30)
    assert segmentation.labels.shape == (2, *coffee.shape[1:3]) and image.shape == batch.shape
    assert torch.equal(segmentation.labels[0], alone.labels[0])


def test_grey_images_are_segmented_too():
    grey = examples.example_photo("camera", size=64)[..., :1]
    segmentation, image = seg.superpixels(grey, method="felzenszwalb")
    assert segmentation.labels.shape == grey.shape[:3] and image.shape == (*grey.shape[:3], 3)


# -- labels to masks ----------------------------------------------------------------------------


def toy_segmentation() -> seg.Segmentation:
    labels = torch.tensor([[[0, 0, 1, 1], [2, 2, 1, 1], [2, 2, 2, 2]]])
    names = ("wall", "person;individual;someone", "sky")
    return seg.Segmentation(labels, names, palette_for(dict(enumerate(names))))


def test_chosen_labels_become_a_0_1_mask():
    mask = seg.segmentation_mask(toy_segmentation(), labels="person, 0")
    expected = torch.tensor([[[1.0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]]])
    assert mask.shape == (1, 3, 4) and mask.dtype == torch.float32
    assert torch.equal(mask, expected)


def test_invert_selects_everything_else():
    mask = seg.segmentation_mask(toy_segmentation(), labels="Sky", invert=True)
    assert torch.equal(mask, (toy_segmentation().labels != 2).float())


def test_an_unknown_label_is_refused_listing_the_labels_present():
    with pytest.raises(ValueError, match=r"no label 'tree'.*present: 2 sky, 1 person"):
        seg.segmentation_mask(toy_segmentation(), labels="tree")
    with pytest.raises(ValueError, match="name at least one label"):
        seg.segmentation_mask(toy_segmentation(), labels=" , ")


def test_labels_are_listed_largest_first_with_their_share():
    lines = seg.segmentation_labels(toy_segmentation()).splitlines()
    assert lines == [
        "2\tsky\t50.0%",
        "1\tperson;individual;someone\t33.3%",
        "0\twall\t16.7%",
    ]


def test_colour_segmentation_needs_a_matching_image_for_mean_colours(coffee):
    segmentation, image = seg.superpixels(coffee, regions=20)
    assert torch.equal(seg.segmentation_image(segmentation, coffee, "mean colour"), image)
    with pytest.raises(ValueError, match="is not the map's"):
        seg.segmentation_image(segmentation, coffee[:, :10], "mean colour")


def test_a_segmentation_survives_the_disk_cache_codec():
    original = toy_segmentation()
    back = decode_value(*encode_value(original))
    assert torch.equal(back.labels, original.labels)
    assert tuple(back.names) == original.names
    assert [tuple(c) for c in back.colors] == [tuple(c) for c in original.colors]


# -- palettes -----------------------------------------------------------------------------------


def test_the_ade20k_table_has_150_class_colours_as_controlnet_seg_reads_them():
    assert len(ADE20K_PALETTE) == 150
    assert ADE20K_PALETTE[0] == (120, 120, 120)  # wall
    assert ADE20K_PALETTE[2] == (6, 230, 230)  # sky
    assert ADE20K_PALETTE[12] == (150, 5, 61)  # person
    assert ADE20K_PALETTE[149] == (92, 0, 255)


def test_ade20k_models_get_the_ade20k_table_and_voc_models_the_voc_colours():
    ade = {i: "class" for i in range(150)} | {0: "wall", 1: "building"}
    assert palette_for(ade) == ADE20K_PALETTE
    voc = {i: "x" for i in range(21)} | {0: "background"}
    assert palette_for(voc) == voc_palette()
    assert voc_color(0) == (0, 0, 0) and voc_color(1) == (128, 0, 0)
    assert voc_color(15) == (192, 128, 128)  # person


def test_distinct_colours_are_deterministic_and_all_different():
    colors = distinct_colors(60)
    assert colors == distinct_colors(60) and len(set(colors)) == 60


# -- in a workflow ------------------------------------------------------------------------------


def test_superpixels_to_mask_runs_as_a_workflow():
    workflow = make_workflow(
        {
            "photo": ("image.example_photo", {"photo": "astronaut", "size": 64}),
            "regions": ("vision.superpixels", {"image": link("photo", "image"), "regions": 16}),
            "mask": (
                "vision.segmentation_mask",
                {"segmentation": link("regions", "segmentation"), "labels": "0, 1"},
            ),
            "labels": (
                "vision.segmentation_labels",
                {"segmentation": link("regions", "segmentation")},
            ),
            "show": ("image.preview", {"images": link("regions", "image")}),
        }
    )
    result = Executor(registry_with(*seg.NODES)).run(workflow, outputs=["mask", "labels"])
    assert result.ok, result.error
    mask = result.outputs["mask"]["mask"]
    assert mask.shape == (1, 64, 64) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert "region 0" in result.outputs["labels"]["string"]
