"""ComfyUI's image file class types (gf_comfy/nodes_io.py): ComfyUI's specs (COMFY_COMPAT
§5.1), SaveImage's file naming, counters, containment and PNG chunks (§2.5), PreviewImage's
temp files, and LoadImage / LoadImageMask (mask = 1 − alpha, frames, EXIF)."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from gf_comfy import nodes_io
from gf_comfy.names import CLASSES
from graphflow import Executor, Image, Int, ValidationFailed, Workflow, load_plugins, node
from graphflow.pngmeta import WORKFLOW_KEY, png_text_chunks
from support import link

PROMPT = {"3": {"class_type": "EmptyImage", "inputs": {"width": 6, "height": 4}}}
UI_WORKFLOW = {"last_node_id": 9, "nodes": [{"id": 3, "type": "EmptyImage"}], "links": []}


@node("t.comfy_io_image")
def io_image(batch: Int(min=1) = 1) -> Image:
    """A 4 × 6 image batch with known values (0.999 in the first pixel)."""
    image = torch.linspace(0, 1, 72).view(1, 4, 6, 3).repeat(batch, 1, 1, 1)
    image[:, 0, 0, 0] = 0.999
    return image


@pytest.fixture(scope="module")
def registry():
    registry = load_plugins().registry
    registry.register(io_image, plugin="tests")
    return registry


def save_workflow(prefix="ComfyUI", batch=1, node_type="comfy.save_image", comfy=None):
    inputs = {"images": link("src", "image")}
    if node_type == "comfy.save_image":
        inputs["filename_prefix"] = prefix
    document = {
        "format": "graphflow/1",
        "nodes": {
            "src": {"type": "t.comfy_io_image", "inputs": {"batch": batch}},
            "9": {"type": node_type, "inputs": inputs},
        },
    }
    if comfy is not None:
        document["editor"] = {"comfy": comfy}
    return Workflow.model_validate(document)


def run_save(registry, tmp_path, **kwargs):
    result = Executor(registry, output_dir=tmp_path / "out", temp_dir=tmp_path / "temp").run(
        save_workflow(**kwargs)
    )
    assert result.ok, result.error
    return result.ui["9"]["images"]


# --------------------------------------------------------------------------- specs


def test_save_and_preview_are_output_nodes_with_comfyuis_inputs():
    save = CLASSES["SaveImage"]
    assert (save.display_name, save.category) == ("Save Image", "image")
    assert [(i.name, i.type, i.default) for i in save.spec.inputs][1] == (
        "filename_prefix",
        "STRING",
        "ComfyUI",
    )
    assert save.spec.inputs[0].name == "images" and save.spec.inputs[0].required
    preview = CLASSES["PreviewImage"]
    assert (preview.display_name, preview.category) == ("Preview Image", "image")
    assert [i.name for i in preview.spec.inputs] == ["images"]
    for entry in (save, preview):
        assert entry.spec.output_node and entry.spec.outputs == ()
        assert entry.hidden == ("PROMPT", "EXTRA_PNGINFO")


def test_load_image_and_mask_have_comfyuis_inputs_and_outputs():
    load = CLASSES["LoadImage"]
    assert (load.display_name, load.category) == ("Load Image", "image")
    assert [(i.name, i.type, i.required) for i in load.spec.inputs] == [("image", "STRING", True)]
    assert load.input("image").image_upload
    assert [(o.name, o.type) for o in load.spec.outputs] == [("image", "IMAGE"), ("mask", "MASK")]
    mask = CLASSES["LoadImageMask"]
    assert (mask.display_name, mask.category) == ("Load Image (as Mask)", "mask")
    assert [i.name for i in mask.spec.inputs] == ["image", "channel"]
    assert mask.spec.inputs_by_name["channel"].allowed_choices() == [
        "alpha",
        "red",
        "green",
        "blue",
    ]
    assert mask.input("image").image_upload
    assert [(o.name, o.type) for o in mask.spec.outputs] == [("mask", "MASK")]
    assert not load.spec.output_node and not mask.spec.output_node


# --------------------------------------------------------------------------- naming


def test_save_names_files_as_comfyui_and_reports_them_in_its_ui(registry, tmp_path):
    saved = run_save(registry, tmp_path, batch=2)
    assert saved == [
        {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"},
        {"filename": "ComfyUI_00002_.png", "subfolder": "", "type": "output"},
    ]
    again = run_save(registry, tmp_path, batch=2, prefix="ComfyUI ")  # a new prefix
    assert again[0]["filename"] == "ComfyUI _00001_.png"
    assert PILImage.open(tmp_path / "out" / "ComfyUI_00002_.png").size == (6, 4)


def test_counter_follows_the_highest_number_of_any_extension(registry, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("ComfyUI_00007_.webp", "ComfyUI_00003_.png", "ComfyUIx_00050_.png", "ComfyUI.png"):
        (out / name).write_bytes(b"x")
    (out / "ComfyUI_notanumber_.png").write_bytes(b"x")
    assert run_save(registry, tmp_path)[0]["filename"] == "ComfyUI_00008_.png"


def test_prefix_folders_become_the_subfolder(registry, tmp_path):
    saved = run_save(registry, tmp_path, prefix="portraits/2024/../me")
    assert saved == [{"filename": "me_00001_.png", "subfolder": "portraits", "type": "output"}]
    assert (tmp_path / "out" / "portraits" / "me_00001_.png").is_file()


def test_placeholders_are_filled_in(registry, tmp_path):
    saved = run_save(registry, tmp_path, batch=2, prefix="%width%x%height%/%year%_%batch_num%")
    year = time.localtime().tm_year
    assert [(s["subfolder"], s["filename"]) for s in saved] == [
        ("6x4", f"{year}_0_00001_.png"),
        ("6x4", f"{year}_1_00002_.png"),
    ]


@pytest.mark.parametrize("prefix", ["../evil", "a/../../evil", "/tmp/evil", "%width%/../../x", ""])
def test_a_prefix_leaving_the_output_folder_is_refused_before_the_run(registry, tmp_path, prefix):
    with pytest.raises(ValidationFailed) as caught:
        Executor(registry, output_dir=tmp_path / "out").run(save_workflow(prefix=prefix))
    (error,) = caught.value.errors
    assert (error.node, error.input) == ("9", "filename_prefix")
    expected = "is empty" if not prefix else "Saving image outside the output folder"
    assert expected in error.message


@pytest.mark.parametrize("prefix", ["../evil", "/tmp/evil", "a/../../evil"])
def test_saving_outside_the_output_folder_raises_even_without_validation(tmp_path, prefix):
    with pytest.raises(nodes_io.SavePathError, match="outside the output folder"):
        nodes_io.save_target(tmp_path / "out", prefix, 8, 8)


def test_a_link_inside_the_output_folder_that_points_out_is_refused(registry, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "door").symlink_to(tmp_path / "elsewhere")
    result = Executor(registry, output_dir=tmp_path / "out").run(save_workflow(prefix="door/x"))
    assert not result.ok and "outside the output folder" in result.error.message
    assert not list((tmp_path / "elsewhere").iterdir())


# --------------------------------------------------------------------------- metadata


def text_chunk_count(data: bytes, key: str) -> int:
    """How many tEXt chunks named ``key`` a PNG holds."""
    return data.count(b"tEXt" + key.encode("latin-1") + b"\0")


def test_png_carries_the_imported_prompt_and_extra_chunks_once(registry, tmp_path):
    comfy = {"prompt": PROMPT, "extra_pnginfo": {"workflow": UI_WORKFLOW, "note": "hi"}}
    (saved,) = run_save(registry, tmp_path, comfy=comfy)
    data = (tmp_path / "out" / saved["filename"]).read_bytes()
    texts = png_text_chunks(data)
    assert json.loads(texts["prompt"]) == PROMPT
    assert json.loads(texts["workflow"]) == UI_WORKFLOW
    assert json.loads(texts["note"]) == "hi"
    assert json.loads(texts[WORKFLOW_KEY])["nodes"]["9"]["type"] == "comfy.save_image"
    assert text_chunk_count(data, "prompt") == text_chunk_count(data, "workflow") == 1


def test_an_api_prompt_without_a_ui_workflow_writes_no_workflow_chunk(registry, tmp_path):
    (saved,) = run_save(registry, tmp_path, comfy={"prompt": PROMPT, "extra_pnginfo": {}})
    texts = png_text_chunks((tmp_path / "out" / saved["filename"]).read_bytes())
    assert json.loads(texts["prompt"]) == PROMPT and "workflow" not in texts


def test_a_graphflow_run_carries_graphflows_workflow_chunk(registry, tmp_path):
    (saved,) = run_save(registry, tmp_path)
    data = (tmp_path / "out" / saved["filename"]).read_bytes()
    texts = png_text_chunks(data)
    assert json.loads(texts[WORKFLOW_KEY])["nodes"]["src"]["type"] == "t.comfy_io_image"
    assert text_chunk_count(data, "prompt") <= 1  # the exporters' ComfyUI prompt, if any


def test_pixels_are_truncated_to_eight_bits_as_comfyui_writes_them(registry, tmp_path):
    (saved,) = run_save(registry, tmp_path)
    picture = PILImage.open(tmp_path / "out" / saved["filename"])
    assert picture.getpixel((0, 0))[0] == 254  # 0.999 · 255 = 254.7
    assert picture.getpixel((5, 3))[2] == 255


def test_preview_writes_temp_files_of_type_temp(registry, tmp_path):
    previews = run_save(registry, tmp_path, node_type="comfy.preview_image", batch=2)
    assert [p["type"] for p in previews] == ["temp", "temp"]
    assert all(p["subfolder"] == "" for p in previews)
    first, second = (p["filename"] for p in previews)
    assert re.fullmatch(r"ComfyUI_temp_[a-z]{5}_00001_\.png", first)
    assert second == first.replace("00001", "00002")
    assert (tmp_path / "temp" / first).is_file() and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- loading


@pytest.fixture
def input_folder(tmp_path, monkeypatch):
    folder = tmp_path / "input"
    folder.mkdir()
    monkeypatch.setenv("GRAPHFLOW_INPUT_DIR", str(folder))
    return folder


def test_load_image_mask_is_one_minus_alpha(input_folder):
    picture = PILImage.new("RGBA", (4, 2), (255, 0, 0, 255))
    picture.putpixel((0, 0), (0, 0, 255, 0))
    picture.putpixel((1, 0), (0, 0, 255, 51))
    (input_folder / "mine").mkdir()
    picture.save(input_folder / "mine" / "photo.png")
    assert "mine/photo.png" in nodes_io.list_input_files()
    image, mask = nodes_io.load_image.function("mine/photo.png")
    assert image.shape == (1, 2, 4, 3) and mask.shape == (1, 2, 4)
    assert mask[0, 0, 0] == 1.0 and mask[0, 0, 1] == pytest.approx(0.8) and mask[0, 1, 3] == 0
    assert torch.equal(image[0, 1, 3], torch.tensor([1.0, 0.0, 0.0]))


def test_an_opaque_image_has_an_empty_mask_of_its_size(input_folder):
    PILImage.new("RGB", (5, 3), (10, 20, 30)).save(input_folder / "flat.jpg")
    image, mask = nodes_io.load_image.function("flat.jpg")
    assert image.shape == (1, 3, 5, 3) and mask.shape == (1, 3, 5) and not mask.any()


def test_palette_transparency_becomes_the_mask(input_folder):
    picture = PILImage.new("P", (3, 1), 0)
    picture.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    picture.putpixel((2, 0), 1)
    picture.info["transparency"] = 1
    picture.save(input_folder / "palette.png", transparency=1)
    _, mask = nodes_io.load_image.function("palette.png")
    assert mask[0, 0].tolist() == [0.0, 0.0, 1.0]


def test_animation_frames_of_the_first_size_load_as_a_batch(input_folder):
    frames = [PILImage.new("RGB", (4, 4), (80 * i, 0, 0)) for i in range(3)]
    frames[0].save(input_folder / "anim.gif", save_all=True, append_images=frames[1:])
    image, mask = nodes_io.load_image.function("anim.gif")
    assert "anim.gif" in nodes_io.list_input_files()
    assert image.shape == (3, 4, 4, 3) and mask.shape == (3, 4, 4)
    assert image[:, 0, 0, 0].tolist() == pytest.approx([0.0, 80 / 255, 160 / 255], abs=0.02)


def test_exif_rotation_is_applied(input_folder):
    picture = PILImage.new("RGB", (6, 2), (0, 0, 0))
    exif = picture.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    picture.save(input_folder / "rotated.jpg", exif=exif)
    image, _ = nodes_io.load_image.function("rotated.jpg")
    assert image.shape == (1, 6, 2, 3)


def test_32_bit_integer_images_are_brought_to_eight_bit_range(input_folder):
    values = np.array([[0, 255 * 255]], dtype=np.int32)
    PILImage.fromarray(values, "I").save(input_folder / "deep.tiff")
    image, _ = nodes_io.load_image.function("deep.tiff")
    assert image[0, 0, :, 0].tolist() == [0.0, 1.0]


def test_load_image_mask_reads_one_channel(input_folder):
    PILImage.new("RGBA", (2, 2), (255, 102, 0, 51)).save(input_folder / "c.png")
    assert nodes_io.load_image_mask.function("c.png", "green")[0, 0, 0] == pytest.approx(0.4)
    assert nodes_io.load_image_mask.function("c.png", "alpha")[0, 0, 0] == pytest.approx(0.8)
    PILImage.new("RGB", (2, 2), (255, 0, 0)).save(input_folder / "d.png")
    assert nodes_io.load_image_mask.function("d.png", "alpha").sum() == 0  # opaque


def test_a_name_outside_the_input_folder_is_refused(input_folder, tmp_path):
    PILImage.new("RGB", (2, 2)).save(tmp_path / "secret.png")
    with pytest.raises(ValueError, match="outside"):
        nodes_io.load_image.function("../secret.png")


def test_load_image_runs_in_a_workflow_and_reruns_when_the_file_changes(registry, input_folder):
    PILImage.new("RGB", (2, 2), (255, 255, 255)).save(input_folder / "w.png")
    workflow = Workflow.model_validate(
        {
            "format": "graphflow/1",
            "nodes": {
                "1": {"type": "comfy.load_image", "inputs": {"image": "w.png"}},
                "2": {"type": "core.show", "inputs": {"value": link("1", "mask")}},
            },
        }
    )
    executor = Executor(registry)
    first = executor.run(workflow, outputs=["1"])
    assert first.ok, first.error
    PILImage.new("RGB", (3, 2), (0, 0, 0)).save(input_folder / "w.png")
    second = executor.run(workflow, outputs=["1"])
    assert second.outputs["1"]["image"].shape == (1, 2, 3, 3)
