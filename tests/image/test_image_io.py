"""Image files: saving with the workflow inside, loading with alpha and EXIF, refusals."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
import torch
from PIL import Image as PILImage

from graphflow import Executor, Image, Int, load_plugins, node
from graphflow.cli import main
from graphflow.pngmeta import PARAMETERS_KEY, WORKFLOW_KEY, png_text_chunks
from support import link, make_workflow


@node("t.gradient")
def gradient(size: Int(min=1) = 8, batch: Int(min=1) = 1) -> Image:
    """A horizontal grey gradient."""
    ramp = torch.linspace(0, 1, size).view(1, 1, size, 1)
    return ramp.expand(batch, size, size, 3).contiguous()


@pytest.fixture
def registry():
    registry = load_plugins().registry
    registry.register(gradient)
    return registry


def save_workflow(prefix="shot", size=8, batch=1):
    return make_workflow(
        {
            "g": ("t.gradient", {"size": size, "batch": batch}),
            "save": ("image.save", {"images": link("g", "image"), "filename_prefix": prefix}),
        }
    )


def test_save_writes_numbered_pngs_with_workflow_and_parameters(registry, tmp_path):
    result = Executor(registry, output_dir=tmp_path).run(save_workflow(batch=2))
    saved = result.ui["save"]["images"]
    assert [s["filename"] for s in saved] == ["shot_00001.png", "shot_00002.png"]
    data = (tmp_path / "shot_00001.png").read_bytes()
    texts = png_text_chunks(data)
    assert json.loads(texts[WORKFLOW_KEY])["nodes"]["g"]["inputs"] == {"size": 8, "batch": 2}
    assert json.loads(texts[PARAMETERS_KEY])["nodes"]["save"]["filename_prefix"] == "shot"
    picture = PILImage.open(tmp_path / "shot_00001.png")
    assert picture.size == (8, 8) and picture.getpixel((7, 0)) == (255, 255, 255)


def test_save_never_overwrites(registry, tmp_path):
    (tmp_path / "shot_00001.png").write_bytes(b"precious")
    Executor(registry, output_dir=tmp_path).run(save_workflow(size=4))
    Executor(registry, output_dir=tmp_path).run(save_workflow(size=5))
    assert (tmp_path / "shot_00001.png").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "shot_00001.png",
        "shot_00002.png",
        "shot_00003.png",
    ]


def test_prefix_cannot_leave_the_output_folder(registry, tmp_path):
    out = tmp_path / "out"
    result = Executor(registry, output_dir=out).run(save_workflow(prefix="../../etc/evil"))
    (saved,) = result.ui["save"]["images"]
    assert (out / "etc" / "evil_00001.png").is_file()
    assert saved["subfolder"] == "etc"


def test_graphflow_run_png_reruns_the_embedded_workflow(registry, tmp_path, capsys):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "gradient_pack.py").write_text(
        "from graphflow import hookimpl\n"
        "import test_image_io\n"
        "@hookimpl\n"
        "def graphflow_nodes():\n"
        "    return [test_image_io.gradient]\n"
    )
    import sys

    sys.modules.setdefault("test_image_io", sys.modules[__name__])
    Executor(registry, output_dir=tmp_path / "first").run(save_workflow(prefix="again"))
    png = tmp_path / "first" / "again_00001.png"
    code = main(
        [
            "run",
            str(png),
            "--output",
            str(tmp_path / "second"),
            "--quiet",
            "--plugin-dir",
            str(plugin_dir),
        ]
    )
    _, err = capsys.readouterr()
    assert code == 0, err
    assert (tmp_path / "second" / "again_00001.png").read_bytes()[:8] == png.read_bytes()[:8]


def test_png_without_workflow_is_a_clear_error(tmp_path, capsys):
    PILImage.new("RGB", (2, 2)).save(tmp_path / "plain.png")
    code = main(["run", str(tmp_path / "plain.png")])
    assert code == 2
    assert "holds no graphflow workflow" in capsys.readouterr().err


def load_workflow_for(name):
    return make_workflow(
        {
            "load": ("image.load", {"image": name}),
            "save": ("image.save", {"images": link("load", "image")}),
        }
    )


@pytest.fixture
def input_folder(tmp_path, monkeypatch):
    folder = tmp_path / "input"
    folder.mkdir()
    monkeypatch.setenv("GRAPHFLOW_INPUT_DIR", str(folder))
    return folder


def test_load_splits_alpha_into_mask(registry, input_folder, tmp_path):
    picture = PILImage.new("RGBA", (4, 2), (255, 0, 0, 255))
    picture.putpixel((0, 0), (0, 0, 0, 0))
    picture.save(input_folder / "a.png")
    result = Executor(registry, output_dir=tmp_path / "o").run(
        load_workflow_for("a.png"), outputs=["load"]
    )
    image, mask = result.outputs["load"]["image"], result.outputs["load"]["mask"]
    assert image.shape == (1, 2, 4, 3) and mask.shape == (1, 2, 4)
    assert mask[0, 0, 0] == 1.0 and mask[0, 1, 3] == 0.0
    assert torch.allclose(image[0, 1, 3], torch.tensor([1.0, 0.0, 0.0]))


def test_load_applies_exif_orientation(registry, input_folder, tmp_path):
    picture = PILImage.new("RGB", (4, 2), (0, 255, 0))
    exif = picture.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    picture.save(input_folder / "r.jpg", exif=exif)
    result = Executor(registry).run(load_workflow_for("r.jpg"), outputs=["load"])
    assert result.outputs["load"]["image"].shape == (1, 4, 2, 3)


def test_loading_a_non_image_fails_with_a_clear_message(registry, input_folder):
    (input_folder / "fake.png").write_text("hello")
    result = Executor(registry).run(load_workflow_for("fake.png"), outputs=["load"])
    assert result.status == "failed"
    assert result.error.message == "fake.png is not an image Pillow can read"


def _png_header_only(width, height):
    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("side", "shown"), [(12_000, "144 MP"), (20_000, "400000000 pixels")])
def test_huge_image_is_refused_before_decoding(registry, input_folder, side, shown):
    (input_folder / "huge.png").write_bytes(_png_header_only(side, side))
    result = Executor(registry).run(load_workflow_for("huge.png"), outputs=["load"])
    assert result.status == "failed"
    assert shown in result.error.message and "refused" in result.error.message


def test_missing_input_file_is_a_validation_error_listing_files(registry, input_folder):
    from graphflow import validate

    PILImage.new("RGB", (2, 2)).save(input_folder / "there.png")
    _, errors = validate(load_workflow_for("nope.png"), registry)
    assert errors[0].code.value == "not_in_choices" and "there.png" in errors[0].message
