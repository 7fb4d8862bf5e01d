"""Colour tables for label maps: ADE20K's (what ControlNet's seg models read), Pascal VOC's,
and a deterministic palette for any other number of labels.

- ADE20K (150 classes, SceneParsing benchmark): the class colours published with the
  benchmark's tools and used by every ADE20K segmenter's visualisation; ControlNet's
  ``control_*_seg`` models were trained on maps drawn in exactly these colours, so a map
  for them must use this table (index = the class id of an ADE20K model, 0 = wall).
- Pascal VOC (21 classes with background): the colour map the VOC devkit defines by
  spreading the bits of the label over the three channels (computed, not tabled).
- ``distinct_colors(n)``: for superpixels and models of other label sets, colours far
  apart in hue and lightness, the same for the same n on every machine.
"""

from __future__ import annotations

import colorsys

# Hex triplets, ten per row: class id = position (row * 10 + column).
_ADE20K_HEX = (
    "787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07"
    " e005ff ebff07 96053d 787846 08ff33 ff0652 8fff8c ccff04 ff3307 cc4603"
    " 0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 0907e6 dcdcdc ff095c 7009ff"
    " 08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 ffc207"
    " ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff 8c8c8c fa0a0f"
    " 14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff"
    " 0bc8c8 ff5200 00fff5 003dff 00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00"
    " 008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff"
    " ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2"
    " 00ff52 000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900 00ff0a ff7000"
    " 8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff"
    " 00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3"
    " ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00"
    " 00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff"
    " 4700ff 7a00ff 00ffb8 005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff"
)

Color = tuple[int, int, int]

ADE20K_PALETTE: tuple[Color, ...] = tuple(
    (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)) for h in _ADE20K_HEX.split()
)
"""The 150 ADE20K class colours (RGB 0..255), by class id."""

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
"""The 21 Pascal VOC labels, as torchvision's DeepLabV3 / FCN / LR-ASPP heads number them."""

UNLABELLED: Color = (0, 0, 0)
"""The colour of pixels no class was given (a panoptic model's void)."""


def voc_color(label: int) -> Color:
    """The Pascal VOC devkit colour of ``label``: its bits 0, 1, 2 go to the top bits of red,
    green, blue, bits 3, 4, 5 to the next ones, and so on."""
    red = green = blue = 0
    for shift in range(7, -1, -1):
        red |= (label & 1) << shift
        green |= ((label >> 1) & 1) << shift
        blue |= ((label >> 2) & 1) << shift
        label >>= 3
    return red, green, blue


def voc_palette(count: int = len(VOC_CLASSES)) -> tuple[Color, ...]:
    """The VOC colours of labels 0..count-1 (0, background, is black)."""
    return tuple(voc_color(label) for label in range(count))


def distinct_colors(count: int) -> tuple[Color, ...]:
    """``count`` colours spread around the hue circle by the golden angle, alternating three
    lightness and saturation levels so neighbours in label order stay apart."""
    colors = []
    for index in range(count):
        hue = (index * 0.618033988749895) % 1.0
        lightness = (0.5, 0.35, 0.65)[index % 3]
        saturation = (0.85, 0.7, 1.0)[(index // 3) % 3]
        rgb = colorsys.hls_to_rgb(hue, lightness, saturation)
        colors.append(tuple(round(channel * 255) for channel in rgb))
    return tuple(colors)


def is_ade20k_labels(names: dict[int, str]) -> bool:
    """True for a model labelled as ADE20K's 150 classes (ids 0..149, wall and building
    first), whose map ControlNet's seg models can read."""
    if sorted(names) != list(range(len(ADE20K_PALETTE))):
        return False
    first = [names[0].lower(), names[1].lower()]
    return first[0].startswith("wall") and first[1].startswith("building")


def palette_for(names: dict[int, str]) -> tuple[Color, ...]:
    """The colours of a model's labels by id (0..max id): ADE20K's table for an ADE20K
    model, VOC's for a 21-class VOC model, distinct colours otherwise."""
    if is_ade20k_labels(names):
        return ADE20K_PALETTE
    size = max(names, default=-1) + 1
    if size == len(VOC_CLASSES) and names.get(0, "").lower() in ("background", "__background__"):
        return voc_palette(size)
    return distinct_colors(size)
