"""Image files: load from the input folder, save to the output folder, preview to temp."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from graphflow import Choice, Image, Mask, NodeContext, Outputs, String, node
from graphflow.pngmeta import PARAMETERS_KEY, WORKFLOW_KEY
from graphflow.runtime.folders import input_dir, inside, list_input_images

from .convert import from_pil, to_pil

MAX_PIXELS = 100_000_000  # refuse decompression bombs before decoding them


def _literal_parameters(workflow: dict | None) -> dict:
    """Every node's literal inputs: the parameters that made the image, easy to read."""
    if not workflow:
        return {}
    return {
        node_id: {
            "type": entry["type"],
            **{
                k: v
                for k, v in entry["inputs"].items()
                if not (isinstance(v, dict) and "link" in v)
            },
        }
        for node_id, entry in workflow["nodes"].items()
    }


def _safe_prefix(prefix: str) -> tuple[str, str]:
    """(subfolder, file stem) from a prefix like "portraits/run"; never leaves the folder."""
    parts = [p for p in re.split(r"[\\/]+", prefix) if p not in ("", ".", "..")]
    parts = [re.sub(r"[^\w.\- ]", "_", p).strip() or "_" for p in parts] or ["graphflow"]
    return "/".join(parts[:-1]), parts[-1]


def _png_info(ctx: NodeContext, node_id: str, foreign_formats: bool = True):
    """graphflow's workflow and parameters chunks, then (``foreign_formats``) the chunks the
    registered workflow exporters add (e.g. ComfyUI's ``prompt`` and ``workflow``)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    workflow = ctx.workflow
    if workflow is not None:
        # ensure_ascii keeps it a plain tEXt chunk that any PNG reader shows
        info.add_text(WORKFLOW_KEY, json.dumps(workflow, ensure_ascii=True))
        parameters = {"node": node_id, "nodes": _literal_parameters(workflow)}
        info.add_text(PARAMETERS_KEY, json.dumps(parameters, ensure_ascii=True))
        # Then the same workflow in other tools' formats (e.g. ComfyUI's prompt and
        # workflow chunks), from the registered exporters; graphflow's own chunk stays first.
        for key, text in ctx.workflow_png_chunks().items() if foreign_formats else ():
            if key not in (WORKFLOW_KEY, PARAMETERS_KEY):
                info.add_text(key, text)
    return info


def _write_new(folder: Path, stem: str, picture, info) -> Path:
    """Write ``stem_00001.png`` with the first free number; never overwrites a file."""
    folder.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(re.escape(stem) + r"_(\d+)\.png$")
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
    counter = max(numbers, default=0) + 1
    while True:
        path = folder / f"{stem}_{counter:05d}.png"
        try:
            with open(path, "xb") as handle:  # exclusive create: a race cannot overwrite
                picture.save(handle, format="PNG", pnginfo=info)
            return path
        except FileExistsError:
            counter += 1


@node("image.save", category="image/io", display_name="Save Image", output=True)
def save_image(
    images: Image, filename_prefix: String = "graphflow", ctx: NodeContext = None
) -> None:
    """Save images as PNG files in the output folder (prefix_00001.png, ...).

    Never overwrites an existing file. Each PNG carries the workflow and the parameters that
    made it: drop it on the editor or run `graphflow run image.png` to make it again.
    """
    subfolder, stem = _safe_prefix(filename_prefix)
    folder = ctx.output_dir / subfolder if subfolder else ctx.output_dir
    info = _png_info(ctx, ctx.node_id)
    saved = []
    for picture in to_pil(images):
        path = _write_new(folder, stem, picture, info)
        saved.append(
            {"filename": path.name, "subfolder": subfolder, "type": "output", "path": str(path)}
        )
    return {"images": saved}


@node("image.preview", category="image/io", display_name="Preview Image", output=True)
def preview_image(images: Image, ctx: NodeContext = None) -> None:
    """Show images in the editor without keeping them (written to the temp folder)."""
    folder = ctx.temp_dir / "previews"
    saved = []
    for picture in to_pil(images):
        path = _write_new(folder, "preview", picture, None)
        saved.append(
            {"filename": path.name, "subfolder": "previews", "type": "temp", "path": str(path)}
        )
    return {"images": saved}


def open_image_file(path: Path):
    """Open an image with its EXIF orientation applied; clear errors for bad files."""
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with PILImage.open(path) as probe:
            width, height = probe.size
            if width * height > MAX_PIXELS:
                raise ValueError(
                    f"{path.name} is {width}×{height} ({width * height / 1e6:.0f} MP); "
                    f"images above {MAX_PIXELS / 1e6:.0f} MP are refused"
                )
            picture = ImageOps.exif_transpose(probe)
            picture.load()
            return picture
    except UnidentifiedImageError:
        raise ValueError(f"{path.name} is not an image Pillow can read") from None
    except PILImage.DecompressionBombError as error:
        raise ValueError(f"{path.name} refused as a decompression bomb: {error}") from None


@node("image.load", category="image/io", display_name="Load Image")
def load_image(image: Choice(list_input_images)) -> Outputs(image=Image, mask=Mask):
    """Load a PNG, JPEG or WebP from the input folder (EXIF rotation applied).

    Transparency becomes the mask (1 where the image is transparent).
    """
    return from_pil(open_image_file(inside(input_dir(), image)))


@load_image.fingerprint
def _file_version(image: str) -> tuple[int, int]:
    stat = os.stat(inside(input_dir(), image))
    return stat.st_mtime_ns, stat.st_size


NODES = [load_image, save_image, preview_image]
