"""ComfyUI's mask class types (gf_comfy/nodes_mask.py): ComfyUI 0.3.64's specs and
/object_info entries, results equal to graphflow's own mask nodes, and the places where
ComfyUI's rules differ (CropMask clips, ImageCompositeMasked resizes its mask and repeats
batches, ImageBatch resizes with ComfyUI's bilinear + centre crop)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gf_comfy import nodes_mask as comfy
from gf_comfy.names import CLASSES
from gf_comfy.object_info import class_info
from gf_image import masks, outpaint
from graphflow import Executor
from support import link, make_workflow

MAX = 16384


def spec_rows(class_type: str) -> list[tuple]:
    """(name, type, default or None, min, max, step) of each input, in order."""
    return [
        (i.name, i.type, None if i.required else i.default, i.min, i.max, i.step)
        for i in CLASSES[class_type].spec.inputs
    ]


def outputs(class_type: str) -> list[str]:
    return [o.type for o in CLASSES[class_type].spec.outputs]


def soft_mask(batch=2, height=12, width=16, seed=0):
    return torch.rand(batch, height, width, generator=torch.Generator().manual_seed(seed))


def random_image(batch=1, height=12, width=16, seed=0):
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed))


MASK = ("mask", "MASK", None, None, None, None)
POS = (0, 0, MAX, 1)


@pytest.mark.parametrize(
    ("class_type", "display", "category", "rows", "outs"),
    [
        (
            "SolidMask",
            "SolidMask",
            "mask",
            [
                ("value", "FLOAT", 1.0, 0.0, 1.0, 0.01),
                ("width", "INT", 512, 1, MAX, 1),
                ("height", "INT", 512, 1, MAX, 1),
            ],
            ["MASK"],
        ),
        ("InvertMask", "InvertMask", "mask", [MASK], ["MASK"]),
        ("MaskToImage", "Convert Mask to Image", "mask", [MASK], ["IMAGE"]),
        (
            "ImageToMask",
            "Convert Image to Mask",
            "mask",
            [
                ("image", "IMAGE", None, None, None, None),
                ("channel", "STRING", None, None, None, None),
            ],
            ["MASK"],
        ),
        (
            "ImageColorToMask",
            "ImageColorToMask",
            "mask",
            [("image", "IMAGE", None, None, None, None), ("color", "INT", 0, 0, 0xFFFFFF, 1)],
            ["MASK"],
        ),
        (
            "ThresholdMask",
            "ThresholdMask",
            "mask",
            [MASK, ("value", "FLOAT", 0.5, 0.0, 1.0, 0.01)],
            ["MASK"],
        ),
        (
            "GrowMask",
            "GrowMask",
            "mask",
            [
                MASK,
                ("expand", "INT", 0, -MAX, MAX, 1),
                ("tapered_corners", "BOOLEAN", True, None, None, None),
            ],
            ["MASK"],
        ),
        (
            "FeatherMask",
            "FeatherMask",
            "mask",
            [MASK] + [(side, "INT", *POS) for side in ("left", "top", "right", "bottom")],
            ["MASK"],
        ),
        (
            "CropMask",
            "CropMask",
            "mask",
            [
                MASK,
                ("x", "INT", *POS),
                ("y", "INT", *POS),
                ("width", "INT", 512, 1, MAX, 1),
                ("height", "INT", 512, 1, MAX, 1),
            ],
            ["MASK"],
        ),
        (
            "MaskComposite",
            "MaskComposite",
            "mask",
            [
                ("destination", "MASK", None, None, None, None),
                ("source", "MASK", None, None, None, None),
                ("x", "INT", *POS),
                ("y", "INT", *POS),
                ("operation", "STRING", "multiply", None, None, None),
            ],
            ["MASK"],
        ),
        (
            "ImageCompositeMasked",
            "ImageCompositeMasked",
            "image",
            [
                ("destination", "IMAGE", None, None, None, None),
                ("source", "IMAGE", None, None, None, None),
                ("x", "INT", *POS),
                ("y", "INT", *POS),
                ("resize_source", "BOOLEAN", False, None, None, None),
                ("mask", "MASK", None, None, None, None),
            ],
            ["IMAGE"],
        ),
        (
            "ImagePadForOutpaint",
            "Pad Image for Outpainting",
            "image",
            [("image", "IMAGE", None, None, None, None)]
            + [(side, "INT", 0, 0, MAX, 8) for side in ("left", "top", "right", "bottom")]
            + [("feathering", "INT", 40, 0, MAX, 1)],
            ["IMAGE", "MASK"],
        ),
        (
            "ImageBatch",
            "Batch Images",
            "image",
            [
                ("image1", "IMAGE", None, None, None, None),
                ("image2", "IMAGE", None, None, None, None),
            ],
            ["IMAGE"],
        ),
    ],
)
def test_mask_class_types_have_comfyuis_spec(class_type, display, category, rows, outs):
    entry = CLASSES[class_type]
    assert (entry.display_name, entry.category) == (display, category)
    assert spec_rows(class_type) == rows
    assert outputs(class_type) == outs


def test_object_info_entries_read_as_comfyuis():
    composite = class_info(CLASSES["ImageCompositeMasked"])
    assert list(composite["input"]["required"]) == [
        "destination",
        "source",
        "x",
        "y",
        "resize_source",
    ]
    assert composite["input"]["optional"] == {"mask": ["MASK"]}
    assert composite["input"]["required"]["resize_source"] == ["BOOLEAN", {"default": False}]
    grow = class_info(CLASSES["GrowMask"])["input"]["required"]
    assert grow["tapered_corners"] == ["BOOLEAN", {"default": True}]
    assert grow["expand"] == ["INT", {"default": 0, "min": -MAX, "max": MAX, "step": 1}]
    channel = class_info(CLASSES["ImageToMask"])["input"]["required"]["channel"]
    assert channel == [["red", "green", "blue", "alpha"], {}]
    assert class_info(CLASSES["MaskComposite"])["input"]["required"]["operation"][0] == [
        "multiply",
        "add",
        "subtract",
        "and",
        "or",
        "xor",
    ]
    color = class_info(CLASSES["ImageColorToMask"])["input"]["required"]["color"]
    assert color[1]["display"] == "color"
    pad = class_info(CLASSES["ImagePadForOutpaint"])
    assert pad["output"] == ["IMAGE", "MASK"] and pad["output_name"] == ["IMAGE", "MASK"]
    assert class_info(CLASSES["SolidMask"])["display_name"] == "SolidMask"  # V1, no mapping


# -- one implementation: ComfyUI's results are graphflow's --------------------------------


def test_simple_class_types_equal_the_native_nodes():
    mask, image = soft_mask(), random_image(batch=2)
    assert torch.equal(comfy.solid_mask(0.3, 16, 12), masks.solid_mask(0.3, 16, 12, 1))
    assert torch.equal(comfy.invert_mask(mask), masks.invert_mask(mask))
    assert torch.equal(comfy.mask_to_image(mask), masks.mask_to_image(mask))
    assert torch.equal(comfy.image_to_mask(image, "green"), masks.image_to_mask(image, "green"))
    assert torch.equal(comfy.threshold_mask(mask, 0.4), masks.threshold_mask(mask, 0.4))
    assert torch.equal(
        comfy.image_color_to_mask(image, 0x102030), masks.color_to_mask(image, 0x102030, 0)
    )
    assert torch.equal(comfy.feather_mask(mask, 3, 1, 2, 4), masks.feather_mask(mask, 3, 1, 2, 4))
    for operation in ("multiply", "add", "subtract", "and", "or", "xor"):
        source = soft_mask(1, 5, 7, seed=1)
        assert torch.equal(
            comfy.mask_composite(mask, source, 3, 2, operation),
            masks.composite_masks(mask, source, 3, 2, operation),
        )


@pytest.mark.parametrize(("expand", "tapered"), [(2, True), (2, False), (-1, True), (0, False)])
def test_grow_mask_is_the_native_grow_with_comfyuis_shapes(expand, tapered):
    mask = soft_mask()
    native = masks.grow_mask(mask, expand, "tapered" if tapered else "square")
    assert torch.equal(comfy.grow_mask(mask, expand, tapered), native)


def test_grow_mask_matches_scipy_as_comfyui_computes_it():
    ndimage = pytest.importorskip("scipy.ndimage")
    import numpy as np

    mask = soft_mask(batch=1)
    expected = mask[0].numpy()
    for _ in range(3):
        expected = ndimage.grey_dilation(
            expected, footprint=np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]])
        )
    assert torch.allclose(comfy.grow_mask(mask, 3, True)[0], torch.from_numpy(expected))


def test_pad_for_outpaint_equals_the_native_node():
    image = random_image(height=40, width=48)
    ours = comfy.image_pad_for_outpaint(image, 8, 0, 16, 8, 10)
    native = outpaint.pad_image_for_outpaint(image, 8, 0, 16, 8, 10)
    assert all(torch.equal(a, b) for a, b in zip(ours, native, strict=True))
    assert ours[0].shape == (1, 48, 72, 3) and ours[1].shape == (1, 48, 72)


def test_image_batch_of_same_sizes_equals_the_native_node():
    a, b = random_image(batch=2), random_image(seed=1)
    assert torch.equal(comfy.image_batch(a, b), outpaint.image_batch(a, b))


# -- where ComfyUI's rules apply -------------------------------------------------------------


def test_crop_mask_clips_the_rectangle_to_the_mask():
    mask = soft_mask()
    assert torch.equal(comfy.crop_mask(mask, 10, 4, 512, 512), mask[:, 4:, 10:])
    with pytest.raises(ValueError, match="starts outside the 16×12 mask"):
        comfy.crop_mask(mask, 16, 0, 4, 4)


def test_composite_masked_resizes_its_mask_to_the_source_bilinearly():
    destination, source = torch.zeros(1, 8, 8, 3), torch.ones(1, 4, 4, 3)
    mask = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    out = comfy.image_composite_masked(destination, source, 2, 2, False, mask)
    expected = F.interpolate(mask[:, None], size=(4, 4), mode="bilinear")[0, 0]
    assert torch.allclose(out[0, 2:6, 2:6, 0], expected)
    assert out[0, :2].abs().sum() == 0


def test_composite_masked_repeats_and_cuts_batches_to_the_destinations():
    destination = torch.zeros(3, 4, 4, 3)
    sources = torch.stack([torch.full((4, 4, 3), v) for v in (0.2, 0.4)])
    out = comfy.image_composite_masked(destination, sources, 0, 0, False, None)
    assert [float(v) for v in out[:, 0, 0, 0]] == pytest.approx([0.2, 0.4, 0.2])
    one = comfy.image_composite_masked(torch.zeros(1, 4, 4, 3), sources, 0, 0, False, None)
    assert one.shape[0] == 1 and float(one[0, 0, 0, 0]) == pytest.approx(0.2)


def test_composite_masked_resize_source_uses_plain_bilinear():
    destination, source = torch.zeros(1, 8, 8, 3), random_image(height=4, width=4)
    out = comfy.image_composite_masked(destination, source, 0, 0, True, None)
    expected = F.interpolate(source.movedim(-1, 1), size=(8, 8), mode="bilinear").movedim(1, -1)
    assert torch.allclose(out, expected)


def test_image_batch_resizes_like_comfyuis_common_upscale():
    a, b = random_image(height=10, width=10), random_image(height=10, width=20, seed=1)
    out = comfy.image_batch(a, b)
    expected = F.interpolate(b[:, :, 5:15].movedim(-1, 1), size=(10, 10), mode="bilinear")
    assert torch.allclose(out[1:], expected.movedim(1, -1))


def test_mask_class_types_run_in_a_workflow(registry, tmp_path):
    ids = {name: CLASSES[name].spec.id for name in ("SolidMask", "GrowMask", "MaskToImage")}
    workflow = make_workflow(
        {
            "solid": (ids["SolidMask"], {"value": 0.0, "width": 9, "height": 9}),
            "grow": (
                ids["GrowMask"],
                {"mask": link("solid", "mask"), "expand": 1, "tapered_corners": True},
            ),
            "image": (ids["MaskToImage"], {"mask": link("grow", "mask")}),
            "preview": (CLASSES["PreviewImage"].spec.id, {"images": link("image", "image")}),
        }
    )
    result = Executor(registry, output_dir=tmp_path).run(workflow, outputs=["image"])
    assert result.ok, result.error
    assert result.outputs["image"]["image"].shape == (1, 9, 9, 3)


def test_a_comfyui_outpaint_prompt_runs(registry, tmp_path):
    from gf_comfy.api_format import api_to_graphflow
    from graphflow.workflow import workflow_from_dict

    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 32, "height": 24, "batch_size": 2, "color": 0xFF0000},
        },
        "2": {
            "class_type": "ImagePadForOutpaint",
            "inputs": {
                "image": ["1", 0],
                "left": 8,
                "top": 0,
                "right": 8,
                "bottom": 0,
                "feathering": 4,
            },
        },
        "3": {
            "class_type": "GrowMask",
            "inputs": {"mask": ["2", 1], "expand": -2, "tapered_corners": True},
        },
        "4": {"class_type": "MaskToImage", "inputs": {"mask": ["3", 0]}},
        "5": {
            "class_type": "ImageCompositeMasked",
            "inputs": {
                "destination": ["2", 0],
                "source": ["4", 0],
                "x": 0,
                "y": 0,
                "resize_source": False,
                "mask": ["3", 0],
            },
        },
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }
    workflow = workflow_from_dict(api_to_graphflow(prompt, registry))
    result = Executor(registry, output_dir=tmp_path).run(workflow, outputs=["5"])
    assert result.ok, result.error
    out = result.outputs["5"]["image"]
    assert out.shape == (2, 24, 48, 3)
    assert torch.all(out[:, :, 0] == 1.0)  # padding: mask 1 (still after shrinking at the border)
    assert torch.allclose(out[:, 12, 24], torch.tensor([1.0, 0.0, 0.0]))  # the red image, mask 0
