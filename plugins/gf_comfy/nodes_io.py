"""ComfyUI's image file class types: SaveImage, PreviewImage, LoadImage, LoadImageMask.

Files are named as ComfyUI names them (``<prefix>_00001_.png``, counter = the highest one
present + 1, the prefix's folders as a subfolder, ``%width%``/``%year%``... placeholders),
so clients that build ``/view`` URLs from the ``ui`` dict find them. Saved PNGs carry
ComfyUI's ``prompt`` chunk (the API prompt of a run that came from ComfyUI) and one chunk per
``extra_pnginfo`` key (the UI ``workflow``), so ComfyUI opens them, and graphflow's own
workflow chunks, so graphflow does too. Loading reuses gf_image's input folder and checks.
"""

from __future__ import annotations

import json
import os
import random
import string
import time
from pathlib import Path
from typing import Any

from gf_image.convert import from_pil
from gf_image.io import MAX_PIXELS, _png_info
from graphflow import Choice, Image, Mask, NodeContext, Outputs, String
from graphflow.runtime.folders import input_dir, inside, list_input_images

from .names import ComfyInput, comfy_node

SAVE_COMPRESS_LEVEL = 4  # ComfyUI's: SaveImage favours size, PreviewImage speed
PREVIEW_COMPRESS_LEVEL = 1
HIDDEN = ("PROMPT", "EXTRA_PNGINFO")
OUTSIDE = "Saving image outside the output folder is not allowed."


class SavePathError(ValueError):
    """A filename_prefix that would write outside the output folder."""


def expand_placeholders(prefix: str, width: int, height: int) -> str:
    """ComfyUI's ``%width%``, ``%height%`` and local-time ``%year%`` … ``%second%``
    (two digits but the year); ``%batch_num%`` stays for :func:`save_images`."""
    if "%" not in prefix:
        return prefix
    now = time.localtime()
    values = {
        "width": width,
        "height": height,
        "year": now.tm_year,
        "month": f"{now.tm_mon:02d}",
        "day": f"{now.tm_mday:02d}",
        "hour": f"{now.tm_hour:02d}",
        "minute": f"{now.tm_min:02d}",
        "second": f"{now.tm_sec:02d}",
    }
    for name, value in values.items():
        prefix = prefix.replace(f"%{name}%", str(value))
    return prefix


def next_counter(folder: Path, filename: str) -> int:
    """1 + the highest counter of ``<filename>_<digits>…`` files in ``folder`` (1 if none).

    As ComfyUI reads names: the digits run to the next ``_``, any extension counts, and
    names compare case-insensitively where the file system does.
    """
    if not folder.is_dir():
        return 1
    wanted = os.path.normcase(filename)
    counters = [0]  # 1 when nothing matches
    for name in os.listdir(folder):
        head, rest = name[: len(filename) + 1], name[len(filename) + 1 :]
        if os.path.normcase(head[:-1]) != wanted or head[-1:] != "_":
            continue
        digits = rest.split("_")[0]
        counters.append(int(digits) if digits.isdigit() else 0)
    return max(counters) + 1


def save_target(output_dir: Path, prefix: str, width: int, height: int) -> tuple[Path, str, str]:
    """(folder, file name stem, subfolder) for ``prefix`` under ``output_dir``.

    The prefix's folders become the subfolder (normalised: ``a/../b`` is ``b``). A prefix
    that resolves outside ``output_dir`` — ``..``, an absolute path, or a link inside it
    that points out — raises :class:`SavePathError`.
    """
    if not prefix.strip():
        raise SavePathError("filename_prefix is empty")
    prefix = os.path.normpath(expand_placeholders(prefix, width, height))
    subfolder, filename = os.path.split(prefix)
    base = Path(os.path.realpath(output_dir))
    folder = Path(os.path.realpath(os.path.join(base, subfolder)))
    if not folder.is_relative_to(base) or not filename or filename in (".", ".."):
        raise SavePathError(f"{OUTSIDE} (filename_prefix {prefix!r})")
    return folder, filename, subfolder.replace(os.sep, "/")


def _comfy_metadata(ctx: NodeContext) -> tuple[Any, dict]:
    """(the API prompt or None, the extra_pnginfo dict) of a run imported from ComfyUI."""
    editor = (ctx.workflow or {}).get("editor") or {}
    comfy = editor.get("comfy") if isinstance(editor, dict) else None
    if not isinstance(comfy, dict):
        return None, {}
    extra = comfy.get("extra_pnginfo")
    return comfy.get("prompt"), extra if isinstance(extra, dict) else {}


def png_metadata(ctx: NodeContext):
    """PNG text chunks: graphflow's workflow and parameters, then ComfyUI's.

    A run that came from ComfyUI gets its own API prompt (``prompt``) and one chunk per
    extra_pnginfo key (``workflow``...), as ComfyUI writes them; any other run gets what the
    registered workflow exporters make of the graphflow document (see gf_image/io.py).
    """
    prompt, extra = _comfy_metadata(ctx)
    info = _png_info(ctx, ctx.node_id, foreign_formats=prompt is None)
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
        for key, value in extra.items():
            info.add_text(str(key), json.dumps(value))
    return info


def to_pil_truncated(images: Any) -> list[Any]:
    """One PIL RGB image per batch item, 8-bit values truncated as ComfyUI writes them
    (``uint8(clip(255 · x))``), so both programs save the same pixels."""
    import numpy as np
    from PIL import Image as PILImage

    array = images.detach().float().cpu().numpy()
    array = np.clip(array * 255.0, 0, 255).astype(np.uint8)
    return [PILImage.fromarray(item[..., :3], "RGB") for item in array]


def save_images(
    images: Any, folder_root: Path, prefix: str, kind: str, level: int, ctx: NodeContext
) -> dict:
    """Write each image as ``<stem>_<counter:05>_.png`` (``%batch_num%`` = its index) and
    return ComfyUI's ui dict ``{"images": [{filename, subfolder, type}, ...]}``."""
    height, width = images.shape[1:3]
    folder, filename, subfolder = save_target(folder_root, prefix, width, height)
    folder.mkdir(parents=True, exist_ok=True)
    counter = next_counter(folder, filename)
    info = png_metadata(ctx)
    results = []
    for number, picture in enumerate(to_pil_truncated(images)):
        stem = filename.replace("%batch_num%", str(number))
        while True:
            name = f"{stem}_{counter:05}_.png"
            try:  # exclusive create: a concurrent save never overwrites (ComfyUI's can)
                with open(folder / name, "xb") as handle:
                    picture.save(handle, format="PNG", pnginfo=info, compress_level=level)
                break
            except FileExistsError:
                counter += 1
        results.append({"filename": name, "subfolder": subfolder, "type": kind})
        counter += 1
    return {"images": results}


@comfy_node(
    "SaveImage",
    display_name="Save Image",
    category="image",
    hidden=HIDDEN,
    output=True,
    inputs={
        "images": ComfyInput(tooltip="The images to save."),
        "filename_prefix": ComfyInput(
            tooltip="The prefix for the file to save. This may include formatting information "
            "such as %date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from "
            "nodes."
        ),
    },
)
def save_image(images: Image, filename_prefix: String = "ComfyUI", ctx: NodeContext = None) -> None:
    """Saves the input images to your ComfyUI output directory.

    Files are named <prefix>_00001_.png, <prefix>_00002_.png... after the highest number
    already there; "portraits/me" saves into the portraits subfolder; %width%, %height%,
    %year%, %month%, %day%, %hour%, %minute%, %second% and %batch_num% are filled in. A
    prefix leading outside the output folder is refused. Each PNG carries the workflow
    (ComfyUI's prompt and workflow chunks and graphflow's), so either program reopens it.
    """
    return save_images(images, ctx.output_dir, filename_prefix, "output", SAVE_COMPRESS_LEVEL, ctx)


@save_image.check
def _prefix_stays_inside(filename_prefix: str = "ComfyUI", **_) -> str | None:
    """Prefixes that leave any output folder (``..``, absolute paths) are refused before the
    run; links inside the folder that point out are caught when saving."""
    if not filename_prefix.strip():
        return "filename_prefix: is empty"
    path = os.path.normpath(expand_placeholders(filename_prefix, 1, 1))
    if os.path.isabs(path) or path == os.pardir or path.startswith(os.pardir + os.sep):
        return f"filename_prefix: {OUTSIDE}"
    return None


@comfy_node(
    "PreviewImage",
    display_name="Preview Image",
    category="image",
    hidden=HIDDEN,
    output=True,
)
def preview_image(images: Image, ctx: NodeContext = None) -> None:
    """Show images without keeping them: written to the temp folder (type "temp"), as
    ComfyUI_temp_<5 random letters>_00001_.png."""
    suffix = "".join(random.choices(string.ascii_lowercase, k=5))
    prefix = f"ComfyUI_temp_{suffix}"
    return save_images(images, ctx.temp_dir, prefix, "temp", PREVIEW_COMPRESS_LEVEL, ctx)


# --------------------------------------------------------------------------- loading


def list_input_files() -> list[str]:
    """Images in the input folder and its subfolders ("mine/photo.png"), GIFs included."""
    root = input_dir()
    gifs = [p.relative_to(root).as_posix() for p in root.rglob("*.gif")] if root.is_dir() else []
    return sorted({*list_input_images(), *(g for g in gifs if not Path(g).name.startswith("."))})


def open_input_image(name: str):
    """The input-folder file ``name`` opened with Pillow (size-checked; links and ``..``
    that leave the folder are refused)."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    path = inside(input_dir(), name)
    try:
        picture = PILImage.open(path)
    except FileNotFoundError:
        raise ValueError(f"Invalid image file: {name}") from None
    except UnidentifiedImageError:
        raise ValueError(f"{Path(name).name} is not an image Pillow can read") from None
    width, height = picture.size
    if width * height > MAX_PIXELS:
        picture.close()
        raise ValueError(
            f"{Path(name).name} is {width}×{height}; images above "
            f"{MAX_PIXELS / 1e6:.0f} MP are refused"
        )
    return picture


def _frame_pixels(frame):
    """One frame as ComfyUI reads it: EXIF rotation applied, 32-bit integer ("I") frames
    brought to 8-bit range first."""
    from PIL import ImageOps

    frame = ImageOps.exif_transpose(frame)
    if frame.mode == "I":
        frame = frame.point(lambda value: value * (1 / 255))
    return frame


def load_frames(name: str) -> tuple[Any, Any]:
    """(IMAGE, MASK) of an input file: every frame of an animation or multi-page file of
    the first frame's size (others skipped); one frame of an MPO (a stereo JPEG).

    MASK is 1 − alpha (transparent = 1); 0 everywhere for an image without transparency.
    """
    import torch
    from PIL import ImageSequence

    images, masks = [], []
    with open_input_image(name) as picture:
        size = None
        for frame in ImageSequence.Iterator(picture):
            frame = _frame_pixels(frame)
            size = size or frame.size
            if frame.size != size:
                continue
            image, mask = from_pil(frame)
            images.append(image)
            masks.append(mask)
            if picture.format == "MPO":
                break
    return torch.cat(images), torch.cat(masks)


def _input_file_version(image: str, **_) -> tuple[int, int]:
    stat = os.stat(inside(input_dir(), image))
    return stat.st_mtime_ns, stat.st_size


@comfy_node(
    "LoadImage",
    display_name="Load Image",
    category="image",
    inputs={"image": ComfyInput(image_upload=True)},
)
def load_image(image: Choice(list_input_files)) -> Outputs(image=Image, mask=Mask):
    """Load an image from the input folder (subfolders as "mine/photo.png").

    EXIF rotation is applied; animated GIF/WebP and multi-page TIFF load as a batch of
    their frames. The mask is 1 where the image is transparent (the area to inpaint).
    """
    return load_frames(image)


load_image.fingerprint(_input_file_version)

CHANNELS = ["alpha", "red", "green", "blue"]


@comfy_node(
    "LoadImageMask",
    display_name="Load Image (as Mask)",
    category="mask",
    inputs={"image": ComfyInput(image_upload=True)},
)
def load_image_mask(image: Choice(list_input_files), channel: Choice(CHANNELS)) -> Mask:
    """Load one channel of an input-folder image as a mask (its first frame).

    red, green or blue give the channel's value; alpha gives 1 − alpha (transparent = 1).
    """
    import numpy as np
    import torch

    with open_input_image(image) as picture:
        frame = _frame_pixels(picture)
        rgba = frame if frame.mode == "RGBA" else frame.convert("RGBA")
        values = np.asarray(rgba.getchannel(channel[0].upper()), dtype=np.float32) / 255.0
    mask = torch.from_numpy(values.copy())[None]
    return 1.0 - mask if channel == "alpha" else mask


load_image_mask.fingerprint(_input_file_version)

NODES = [save_image, preview_image, load_image, load_image_mask]
