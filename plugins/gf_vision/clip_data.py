"""Captioned images for clip-graphflow-mini, read from Debian packages (training, tests only).

Three sources, each split into train and test the same way on every machine:

- tinted Fashion-MNIST (``dataset-fashion-mnist``, MIT): graphflow-tiny's palette, class
  phrasings and caption grammar (``scripts/tiny_data.py``, imported from there), plus a few
  captions naming only the colour ("a red object"); its own train/test files.
- Openclipart (``openclipart-png``, public domain): ~6k PNGs; the caption is the file name's
  words and the folder path ("clip art of apple bitten, fruit, food"). ``shapes/stars`` and
  the gradient/pattern folders are skipped. Test split: every file whose CRC-32 of the
  relative path is 0 mod 10.
- Noto Color Emoji (``fonts-noto-color-emoji``, OFL): every single-code-point emoji the font
  draws, rendered with Pillow at its bitmap size 109; the caption is its Unicode name
  ("an emoji of a grinning face"). Same CRC-32 split on the name.

Every image comes as uint8 H×W×3 at ``IMAGE_SIZE``; transparent pixels are composited on
white. Nothing here is needed at run time: the nodes load only the trained weights.
"""

from __future__ import annotations

import importlib.util
import unicodedata
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TINY_DATA = ROOT / "scripts" / "tiny_data.py"
CLIPART = Path("/usr/share/openclipart/png")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_PIXELS = 109  # Noto Color Emoji is a bitmap font: 109 px is its one native size
IMAGE_SIZE = 64
MAX_PIXELS = 6_000_000  # a few posters are 15k² pixels: skipped rather than decoded
SKIP_CLIPART = ("shapes/stars", "special/gradients", "special/patterns", "unsorted/duplicates")
EMOJI_RANGES = ((0x2000, 0x2C00), (0x1F000, 0x1FB00))
# Captions that name only the colour, for any Fashion-MNIST item (and the colour prompts).
COLOUR_ONLY = ["a {c} object", "something {c}", "a {c} thing", "the colour {c}", "{c}"]
CLASS_PROMPT = "a photo of {a} {n}"
COLOUR_PROMPT = "a photo of a {c} object"


class DataMissing(RuntimeError):
    """A Debian data package (or graphflow's scripts folder) is not installed here."""


@lru_cache(maxsize=1)
def tiny_data():
    """graphflow-tiny's data module (scripts/tiny_data.py): palette, classes, captions."""
    if not TINY_DATA.is_file():
        raise DataMissing(f"{TINY_DATA} not found: clip_data needs a graphflow source checkout")
    spec = importlib.util.spec_from_file_location("graphflow_tiny_data", TINY_DATA)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def held_out(key: str) -> bool:
    """True for the test split: a stable 10% by CRC-32 of ``key``."""
    return zlib.crc32(key.encode("utf-8")) % 10 == 0


@dataclass
class Captions:
    """Caption strings with, for each, the attributes it names (-1: says nothing about it).

    ``item[i]`` is the Fashion-MNIST class or, for clip art and emoji, the sample's own id
    (offset so that ids never collide); ``colour[i]`` is a palette index.
    """

    texts: list[str] = field(default_factory=list)
    item: list[int] = field(default_factory=list)
    colour: list[int] = field(default_factory=list)

    def add(self, text: str, item: int = -1, colour: int = -1) -> int:
        """Append one caption; its index."""
        self.texts.append(text)
        self.item.append(item)
        self.colour.append(colour)
        return len(self.texts) - 1


def fashion_captions(captions: Captions) -> dict[tuple[int, int], list[int]]:
    """Add every Fashion-MNIST caption; (class, colour) → the ids of captions that fit it.

    A caption fits an item when each attribute it names matches: "a red sneaker" fits red
    sneakers, "a sneaker" every sneaker, "a red object" every red item.
    """
    td = tiny_data()
    fits: dict[tuple[int, int], list[int]] = {
        (k, c): [] for k in range(len(td.CLASS_NAMES)) for c in range(len(td.COLOURS))
    }
    for label, phrases in enumerate(td.CLASS_PHRASES):
        for noun in phrases:
            for ci, colour in enumerate(td.COLOURS):
                for template in td.WITH_COLOUR:
                    fits[(label, ci)].append(
                        captions.add(td.caption(template, noun, colour), label, ci)
                    )
            for template in td.WITHOUT_COLOUR:
                cid = captions.add(td.caption(template, noun, None), label, -1)
                for ci in range(len(td.COLOURS)):
                    fits[(label, ci)].append(cid)
    for ci, colour in enumerate(td.COLOURS):
        for template in COLOUR_ONLY:
            cid = captions.add(template.format(c=colour), -1, ci)
            for label in range(len(td.CLASS_NAMES)):
                fits[(label, ci)].append(cid)
    return fits


def class_prompts() -> list[str]:
    """The 10 zero-shot class prompts: "a photo of a t-shirt", ... "a photo of an ankle boot"."""
    td = tiny_data()
    return [td.caption(CLASS_PROMPT, name, None) for name in td.CLASS_NAMES]


def colour_prompts() -> list[str]:
    """The 8 zero-shot colour prompts: "a photo of a red object", ..."""
    return [COLOUR_PROMPT.format(c=c) for c in tiny_data().COLOURS]


def load_fashion(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` ("train" or "test"): (N×32×32 float32 items on black, labels)."""
    td = tiny_data()
    if not (td.FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        raise DataMissing(f"Fashion-MNIST not found in {td.FASHION_MNIST} (dataset-fashion-mnist)")
    return td.load_fashion_mnist(split)


def tinted_fashion(images: np.ndarray, colour_ids: np.ndarray, jitter: np.ndarray | None = None):
    """N×32×32 items × palette indices → N×3×32×32 float32 RGB (optional colour jitter N×3)."""
    td = tiny_data()
    colours = td.palette_array()[colour_ids]
    if jitter is not None:
        colours = np.clip(colours + jitter, 0, 1).astype(np.float32)
    return td.tint(images, colours)


def _words(text: str) -> str:
    """File or folder name → lower-case words without digits or one-letter leftovers."""
    tokens = text.replace("-", " ").replace("_", " ").replace(".", " ").lower().split()
    return " ".join(t for t in tokens if not t.isdigit() and len(t) > 1)


def clipart_caption(relative: Path) -> str:
    """Caption of a clip-art file from its name and folders, innermost folder first."""
    folders = [_words(part) for part in reversed(relative.parent.parts)]
    name = _words(relative.stem) or folders[0]
    return ", ".join(["clip art of " + name, *[f for f in folders if f]])


def clipart_category(relative: Path) -> str:
    """The top-level folder as words ("signs and symbols"): the zero-shot label."""
    return _words(relative.parts[0])


def clipart_files() -> list[Path]:
    """Relative paths of the clip-art PNGs used (sorted; skipped folders left out)."""
    if not CLIPART.is_dir():
        raise DataMissing(f"{CLIPART} not found (Debian package openclipart-png)")
    files = sorted(p.relative_to(CLIPART) for p in CLIPART.rglob("*.png"))
    return [p for p in files if not any(p.as_posix().startswith(s + "/") for s in SKIP_CLIPART)]


def _square(image, background=(255, 255, 255)) -> np.ndarray:
    """A PIL image → uint8 IMAGE_SIZE² RGB: alpha over ``background``, padded square, resized."""
    from PIL import Image

    image = image.convert("RGBA")
    box = image.getbbox()
    if box:
        image = image.crop(box)
    side = max(image.size) + 4
    canvas = Image.new("RGBA", (side, side), (*background, 255))
    canvas.alpha_composite(image, ((side - image.width) // 2, (side - image.height) // 2))
    return np.asarray(canvas.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS))


def load_clipart_image(relative: Path) -> np.ndarray | None:
    """One clip-art file as uint8 IMAGE_SIZE² RGB on white (None: unreadable or huge)."""
    from PIL import Image

    try:
        with Image.open(CLIPART / relative) as image:
            if image.width * image.height > MAX_PIXELS:
                return None
            return _square(image)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def emoji_font():
    """Noto Color Emoji at its bitmap size (Pillow's basic layout: raqm fails on some)."""
    from PIL import ImageFont

    if not EMOJI_FONT.is_file():
        raise DataMissing(f"{EMOJI_FONT} not found (Debian package fonts-noto-color-emoji)")
    return ImageFont.truetype(str(EMOJI_FONT), EMOJI_PIXELS, layout_engine=ImageFont.Layout.BASIC)


def render_emoji(char: str, font) -> np.ndarray | None:
    """One emoji as uint8 IMAGE_SIZE² RGB on white, or None when the font has no glyph."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (EMOJI_PIXELS + 40, EMOJI_PIXELS + 20), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((0, 0), char, font=font, embedded_color=True)
    if image.getbbox() is None:
        return None
    return _square(image)


def emoji_caption(name: str) -> str:
    """Unicode name → caption: "GRINNING FACE" → "an emoji of a grinning face"."""
    words = name.lower()
    article = "an" if words[0] in "aeiou" else "a"
    return f"an emoji of {article} {words}"


def emoji_chars() -> list[tuple[str, str]]:
    """(character, Unicode name) of every single-code-point emoji candidate, in order."""
    chars = []
    for low, high in EMOJI_RANGES:
        for code in range(low, high):
            name = unicodedata.name(chr(code), "")
            if name and "VARIATION SELECTOR" not in name and "MODIFIER" not in name:
                chars.append((chr(code), name))
    return chars


def load_emoji(limit: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Every emoji the font draws: (N×S×S×3 uint8, Unicode names); ``limit`` stops early."""
    font = emoji_font()
    images, names = [], []
    for char, name in emoji_chars():
        image = render_emoji(char, font)
        if image is not None:
            images.append(image)
            names.append(name)
            if limit and len(images) >= limit:
                break
    return np.stack(images), names
