"""Data for graphflow-tiny: tinted Fashion-MNIST items, their captions, and colour naming.

Shared by ``train_tiny.py`` and ``eval_tiny.py`` so that training, evaluation and the model
card all use one palette and one caption grammar. Items are drawn on a black background:
a Fashion-MNIST pixel of intensity g becomes g × colour, so the item keeps its shading and
the background stays (0, 0, 0).
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import numpy as np

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SIZE = 32  # Fashion-MNIST's 28×28, padded by 2 pixels of background on each side

CLASS_NAMES = [
    "t-shirt",
    "trousers",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
]

# Several phrasings per class so that a user's wording (or one never seen) lands near the
# right class in MiniLM's embedding space. The first is the canonical name above.
CLASS_PHRASES = [
    ["t-shirt", "tee", "top", "tee shirt", "t shirt", "short sleeve top"],
    ["trousers", "pants", "jeans", "slacks", "pair of trousers", "pair of pants"],
    ["pullover", "sweater", "jumper", "knit sweater", "sweatshirt"],
    ["dress", "gown", "summer dress", "frock", "evening dress"],
    ["coat", "jacket", "overcoat", "parka", "winter coat"],
    ["sandal", "sandals", "flip-flop", "summer shoe", "strappy sandal"],
    ["shirt", "button-up shirt", "blouse", "collared shirt", "dress shirt"],
    ["sneaker", "running shoe", "trainers", "sneakers", "sports shoe", "tennis shoe"],
    ["bag", "handbag", "purse", "tote bag", "shopping bag", "shoulder bag"],
    ["ankle boot", "boot", "boots", "leather boot", "chelsea boot"],
]

# Named tints (RGB in 0..1). "white" is the untinted item, whose darker parts read as grey.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.95, 0.10, 0.10),
    "orange": (1.00, 0.50, 0.05),
    "yellow": (0.95, 0.90, 0.10),
    "green": (0.10, 0.75, 0.20),
    "blue": (0.15, 0.30, 1.00),
    "purple": (0.55, 0.15, 0.85),
    "pink": (1.00, 0.45, 0.70),
    "white": (1.00, 1.00, 1.00),
}
COLOURS = list(PALETTE)

WITH_COLOUR = [
    "{a} {c} {n}",
    "{c} {n}",
    "a photo of {a} {c} {n}",
    "{a} {n} in {c}",
    "a picture of {a} {c} {n}",
]
WITHOUT_COLOUR = ["{a} {n}", "{n}", "a photo of {a} {n}", "a picture of {a} {n}"]
PLURALS = {"trousers", "pants", "jeans", "slacks", "sandals", "trainers", "sneakers", "boots"}


def _article(first_word: str, noun: str) -> str:
    if noun in PLURALS or noun.startswith("pair of"):
        return ""
    return "an" if first_word[0] in "aeiou" else "a"


def caption(template: str, noun: str, colour: str | None) -> str:
    """One caption: ``template`` filled with the noun, its article and the colour."""
    first = colour if colour and template.index("{c}") < template.index("{n}") else noun
    if colour is None or "{c}" not in template:
        first = noun
    text = template.format(a=_article(first, noun), c=colour or "", n=noun)
    return " ".join(text.split())  # an empty article leaves a double space


def caption_table() -> tuple[list[str], dict[tuple[int, int | None], list[int]]]:
    """Every training caption once, and for (class, colour index or None) the caption ids.

    Caption 0 is the empty string: the unconditional prompt used for guidance.
    """
    captions = [""]
    by_key: dict[tuple[int, int | None], list[int]] = {}
    for label, phrases in enumerate(CLASS_PHRASES):
        for noun in phrases:
            for ci, colour in enumerate(COLOURS):
                for template in WITH_COLOUR:
                    by_key.setdefault((label, ci), []).append(len(captions))
                    captions.append(caption(template, noun, colour))
            for template in WITHOUT_COLOUR:
                by_key.setdefault((label, None), []).append(len(captions))
                captions.append(caption(template, noun, None))
    return captions, by_key


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images float32 N×32×32 in 0..1 with the item bright on black, labels int64 N)."""
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz")
    pad = (SIZE - images.shape[1]) // 2
    padded = np.zeros((len(images), SIZE, SIZE), dtype=np.float32)
    padded[:, pad : pad + images.shape[1], pad : pad + images.shape[2]] = images / 255.0
    return padded, labels.astype(np.int64)


def tint(gray: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """N×H×W intensities × N×3 colours → N×3×H×W RGB in 0..1 (black background)."""
    return gray[:, None, :, :] * colours[:, :, None, None]


def palette_array() -> np.ndarray:
    """The palette as a (len(COLOURS), 3) float32 array, in COLOURS order."""
    return np.array([PALETTE[c] for c in COLOURS], dtype=np.float32)


def item_colour(image: np.ndarray, threshold: float = 0.2) -> str | None:
    """The palette colour nearest to an H×W×3 image's item (pixels brighter than threshold).

    Compares chromaticity (the mean item colour divided by its largest channel), i.e. hue and
    saturation but not brightness, since the item's shading scales all channels alike.
    """
    bright = image.max(axis=-1) > threshold
    if bright.sum() < 10:
        return None
    mean = image[bright].mean(axis=0)
    chroma = mean / max(float(mean.max()), 1e-6)
    palette = palette_array()
    palette = palette / palette.max(axis=1, keepdims=True)
    return COLOURS[int(np.argmin(((palette - chroma) ** 2).sum(axis=1)))]


def seeded(seed: int) -> random.Random:
    """A private RNG, so data choices do not depend on global state."""
    return random.Random(seed)
