"""Image Grid: a batch of images laid out as one labelled contact sheet.

Cells are placed row by row, ``columns`` to a row. Labels are text drawn with Pillow's own
scalable default font (it ships inside Pillow, so nothing is read from the system):

- row labels: one line of text per row, drawn in a margin left of the grid;
- column labels: one line per column, drawn in a margin above the grid;
- cell labels: one line per image, drawn in a strip under each cell.

Label texts are given as multiline strings, one label per line (``\\n`` separated), so a
workflow can write them by hand or build them from a list of prompts. A literal ``\\n`` is
not split further: a label is one line.

The layout itself (``grid_layout``) takes a sequence of (H, W, C) images, so images of
different sizes can be laid out too: either an error naming the sizes, or each image resized
to the first image's size (``resize``). An IMAGE batch always has one size; the sequence form
is for callers holding several batches (a list of images once list mapping lands).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from graphflow import Image, Int, String, node

if TYPE_CHECKING:
    import torch

CATEGORY = "image/layout"
COLOR = Int(min=0, max=0xFFFFFF)


@dataclass(frozen=True)
class GridStyle:
    """How a grid looks: spacing, text size and colours (0xRRGGBB)."""

    padding: int = 8
    font_size: int = 16
    background: int = 0xFFFFFF
    text_color: int = 0x000000


def split_labels(text: str) -> list[str]:
    """One label per line; surrounding blank lines are dropped, inner blank lines kept.

    An inner blank line is an empty label (a row or column left unlabelled), so a label list
    keeps its positions.
    """
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _rgb(color: int) -> tuple[int, int, int]:
    """0xRRGGBB as an (r, g, b) tuple of 0..255."""
    return (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF


def _font(size: int):
    """Pillow's bundled scalable font at ``size`` pixels (Pillow ≥ 10.1)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _text_width(font, text: str) -> int:
    """How far right of its origin one line of text inks, in pixels (0 for no text)."""
    return math.ceil(font.getbbox(text, anchor="lm")[2]) if text else 0


def _same_size(images: Sequence[torch.Tensor], resize: bool) -> list[torch.Tensor]:
    """The images at one (H, W, C): resized to the first one's size, or an error naming sizes."""
    import torch.nn.functional as F

    height, width, channels = images[0].shape
    sizes = {(int(i.shape[1]), int(i.shape[0])) for i in images}
    if any(i.shape[2] != channels for i in images):
        raise ValueError(
            f"the images have different channel counts: {[i.shape[2] for i in images]}"
        )
    if len(sizes) == 1:
        return list(images)
    if not resize:
        named = ", ".join(f"{w}×{h}" for w, h in sorted(sizes))
        raise ValueError(f"the images have different sizes ({named}); turn on resize to fit them")
    fitted = []
    for image in images:
        if image.shape[:2] != (height, width):
            nchw = image.permute(2, 0, 1).unsqueeze(0).float()
            image = F.interpolate(nchw, size=(height, width), mode="bilinear", antialias=True)
            image = image[0].permute(1, 2, 0).clamp(0.0, 1.0)
        fitted.append(image)
    return fitted


def _check_counts(count: int, rows: int, columns: int, labels: dict[str, list[str]]) -> None:
    """Every label list fits the grid (fewer labels than places is fine: the rest are blank)."""
    limits = {"row": rows, "column": columns, "cell": count}
    for kind, found in labels.items():
        if len(found) > limits[kind]:
            raise ValueError(
                f"{len(found)} {kind} labels for {limits[kind]} {kind}s; give one label per line"
            )


def grid_layout(
    images: Sequence[torch.Tensor],
    columns: int = 0,
    row_labels: Sequence[str] = (),
    column_labels: Sequence[str] = (),
    cell_labels: Sequence[str] = (),
    style: GridStyle = GridStyle(),
    resize: bool = False,
) -> torch.Tensor:
    """Lay (H, W, C) images out in a grid of ``columns`` (0: as square as possible).

    Returns one (H', W', 3) float image in 0..1. Grey (C = 1) images are shown grey; an
    alpha channel is dropped.
    """
    import numpy as np
    import torch
    from PIL import Image as PILImage
    from PIL import ImageDraw

    if not images:
        raise ValueError("no images to lay out")
    cells = [_as_rgb(image) for image in _same_size(images, resize)]
    count = len(cells)
    columns = min(columns, count) if columns > 0 else math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    labels = {"row": list(row_labels), "column": list(column_labels), "cell": list(cell_labels)}
    _check_counts(count, rows, columns, labels)

    font, pad = _font(style.font_size), style.padding
    line = style.font_size + style.font_size // 3  # room for descenders
    left = max((_text_width(font, t) for t in labels["row"]), default=0)
    left = left + pad if left else 0
    top = line + pad if any(labels["column"]) else 0
    under = line if any(labels["cell"]) else 0
    cell_h, cell_w = cells[0].shape[:2]
    step_x, step_y = cell_w + pad, cell_h + under + pad
    width = pad + left + columns * step_x
    height = pad + top + rows * step_y
    sheet = PILImage.new("RGB", (width, height), _rgb(style.background))
    draw, ink = ImageDraw.Draw(sheet), _rgb(style.text_color)

    for index, cell in enumerate(cells):
        row, column = divmod(index, columns)
        x, y = pad + left + column * step_x, pad + top + row * step_y
        pixels = (cell.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()
        sheet.paste(PILImage.fromarray(pixels, "RGB"), (x, y))
        if index < len(labels["cell"]):
            _centred(draw, font, labels["cell"][index], x + cell_w / 2, y + cell_h + under / 2, ink)
    for column, text in enumerate(labels["column"]):
        _centred(draw, font, text, pad + left + column * step_x + cell_w / 2, pad + line / 2, ink)
    for row, text in enumerate(labels["row"]):
        y = pad + top + row * step_y + cell_h / 2
        draw.text((pad, y), text, fill=ink, font=font, anchor="lm")
    return torch.from_numpy(np.asarray(sheet, dtype=np.float32) / 255.0)


def _as_rgb(image: torch.Tensor) -> torch.Tensor:
    """An (H, W, 3) float view of an (H, W, C) image: grey repeated, alpha dropped."""
    image = image.float()
    if image.shape[2] == 1:
        return image.expand(-1, -1, 3)
    if image.shape[2] == 2:  # grey + alpha
        return image[..., :1].expand(-1, -1, 3)
    return image[..., :3]


def _centred(draw, font, text: str, x: float, y: float, ink) -> None:
    """Draw one line of text centred on (x, y)."""
    if text:
        draw.text((x, y), text, fill=ink, font=font, anchor="mm")


@node("image.grid", category=CATEGORY, display_name="Image Grid")
def image_grid(
    images: Image,
    columns: Int(min=0, max=1024) = 0,
    row_labels: String(multiline=True) = "",
    column_labels: String(multiline=True) = "",
    cell_labels: String(multiline=True) = "",
    padding: Int(min=0, max=256) = 8,
    font_size: Int(min=6, max=256) = 16,
    background: COLOR = 0xFFFFFF,
    text_color: COLOR = 0x000000,
) -> Image:
    """Lay a batch of images out as one labelled grid image (a contact sheet).

    Images fill the grid row by row, columns to a row (0: as square as possible). Row labels
    go in a margin on the left, column labels above the grid, cell labels under each image:
    each is a multiline text with one label per line (a blank line leaves that place
    unlabelled; fewer labels than places leave the rest blank; more is an error). padding is
    the gap in pixels around and between cells; colours are 0xRRGGBB. The text is drawn with
    Pillow's bundled font. The result is a batch of one image.
    """
    style = GridStyle(padding, font_size, background, text_color)
    sheet = grid_layout(
        list(images),
        columns,
        split_labels(row_labels),
        split_labels(column_labels),
        split_labels(cell_labels),
        style,
    )
    return sheet.unsqueeze(0).to(images.device)


NODES = [image_grid]
