"""Text written below images (classifier answers, hedged answers): a white panel of lines.

Pillow's built-in scalable font is used (no font file needed). Long lines are wrapped at
word boundaries to the image's width; every image of a batch gets a panel of the same
height (the tallest), so the batch stays one tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MARGIN = 6


def font(size: int) -> Any:
    """Pillow's default font at ``size`` pixels (its bitmap font on builds without FreeType)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def wrapped(lines: Sequence[str], width: int, typeface: Any) -> list[str]:
    """``lines`` broken at spaces so that each fits in ``width`` pixels (a single word
    longer than that stays whole)."""
    out = []
    for line in lines:
        indent = line[: len(line) - len(line.lstrip())]
        current = ""
        for word in line.split():
            trial = f"{current} {word}" if current else indent + word
            if current and typeface.getlength(trial) > width:
                out.append(current)
                current = indent + "  " + word
            else:
                current = trial
        out.append(current)
    return out


def caption_size(width: int) -> int:
    """Text size for an image ``width`` pixels wide (readable from 128 to 1024 pixels)."""
    return max(10, min(22, width // 28))


def with_captions(images: Any, captions: Sequence[Sequence[str]]) -> Any:
    """(B, H, W, C) images with captions[b]'s lines written in a white panel below image b;
    (B, H + panel, W, 3) in 0..1."""
    import numpy as np
    import torch
    from PIL import Image as PILImage
    from PIL import ImageDraw

    batch, height, width = images.shape[:3]
    size = caption_size(width)
    typeface = font(size)
    text = [
        wrapped(captions[min(i, len(captions) - 1)], width - 2 * MARGIN, typeface)
        for i in range(batch)
    ]
    line_height = round(size * 1.3)
    panel = 2 * MARGIN + line_height * max(len(lines) for lines in text)
    out = []
    for index in range(batch):
        picture = PILImage.new("RGB", (width, panel), "white")
        draw = ImageDraw.Draw(picture)
        for row, line in enumerate(text[index]):
            draw.text((MARGIN, MARGIN + row * line_height), line, fill=(20, 20, 20), font=typeface)
        strip = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0)
        rgb = images[index, ..., :3].to(torch.float32).cpu()
        out.append(torch.cat([rgb.expand(height, width, 3), strip]))
    return torch.stack(out)
