"""Mask nodes: load, convert, make, invert, threshold, grow/shrink, blur, feather, crop,
combine, and masks from a colour. The tensor work is in mask_ops.py (shared with ComfyUI's
mask class types in gf_comfy/nodes_mask.py).

MASK is float (B, H, W) in 0..1, 1 = selected (for inpainting: the area to repaint).
"""

from __future__ import annotations

import os

from graphflow import Choice, Float, Image, Int, Mask, node
from graphflow.runtime.folders import input_dir, inside, list_input_images

from . import mask_ops
from .io import MAX_PIXELS, open_image_file

CATEGORY = "image/mask"
SIDE = Int(min=1, max=16384)
OFFSET = Int(min=0, max=16384)
EDGE = Int(min=0, max=16384)
FILE_CHANNELS = ["alpha", "red", "green", "blue"]


@node("image.load_mask", category=CATEGORY, display_name="Load Mask")
def load_mask(image: Choice(list_input_images), channel: Choice(FILE_CHANNELS) = "alpha") -> Mask:
    """Load a mask from one channel of an image in the input folder.

    alpha gives 1 − alpha, so transparent pixels are selected (as Load Image's mask output);
    red, green and blue give that channel's value (white = selected), e.g. for a black and
    white mask painted in an editor.
    """
    import numpy as np
    import torch

    picture = open_image_file(inside(input_dir(), image)).convert("RGBA")
    values = np.asarray(picture.getchannel(channel[0].upper()), dtype=np.float32) / 255.0
    mask = torch.from_numpy(values.copy())[None]
    return 1.0 - mask if channel == "alpha" else mask


@load_mask.fingerprint
def _file_version(image: str, **_) -> tuple[int, int]:
    stat = os.stat(inside(input_dir(), image))
    return stat.st_mtime_ns, stat.st_size


@node("image.image_to_mask", category=CATEGORY, display_name="Image to Mask")
def image_to_mask(image: Image, channel: Choice(mask_ops.CHANNELS) = "red") -> Mask:
    """One channel of an image as a mask: red, green, blue, or alpha (RGBA images only; an
    image file's transparency is the mask output of Load Image)."""
    return mask_ops.image_to_mask(image, channel)


@node("image.mask_to_image", category=CATEGORY, display_name="Mask to Image")
def mask_to_image(mask: Mask) -> Image:
    """Show a mask as a grey image (white = selected), to preview, save or edit it."""
    return mask_ops.mask_to_image(mask)


@node("image.solid_mask", category=CATEGORY, display_name="Solid Mask")
def solid_mask(
    value: Float(0.0, 1.0, step=0.01) = 1.0,
    width: SIDE = 512,
    height: SIDE = 512,
    batch: Int(min=1, max=4096) = 1,
) -> Mask:
    """A batch of masks of one value (1 selects everything, 0 nothing)."""
    if width * height * batch > MAX_PIXELS:
        raise ValueError(f"{batch} masks of {width}×{height} are above {MAX_PIXELS / 1e6:.0f} MP")
    return mask_ops.solid(value, width, height, batch)


@node("image.invert_mask", category=CATEGORY, display_name="Invert Mask")
def invert_mask(mask: Mask) -> Mask:
    """Swap selected and unselected: 1 − mask."""
    return mask_ops.invert(mask)


@node("image.threshold_mask", category=CATEGORY, display_name="Threshold Mask")
def threshold_mask(mask: Mask, value: Float(0.0, 1.0, step=0.01) = 0.5) -> Mask:
    """A hard mask: 1 where the mask is above value, 0 elsewhere."""
    return mask_ops.threshold(mask, value)


@node("image.grow_mask", category=CATEGORY, display_name="Grow / Shrink Mask")
def grow_mask(
    mask: Mask,
    pixels: Int(min=-4096, max=4096) = 8,
    shape: Choice(mask_ops.GROW_SHAPES) = "round",
) -> Mask:
    """Grow the selection by pixels (shrink it when negative).

    shape: round grows by a disk (smooth, even in every direction); square by a square (a
    single pixel grown by 2 becomes a 5×5 square); tapered by repeated 3×3 crosses, cutting
    the corners (ComfyUI's GrowMask with tapered_corners: a pixel becomes a diamond). Soft
    masks grow by their grey values (grey dilation / erosion).
    """
    return mask_ops.grow(mask, pixels, shape)


@node("image.blur_mask", category=CATEGORY, display_name="Blur Mask")
def blur_mask(mask: Mask, radius: Float(0.0, 256.0, step=0.1) = 4.0) -> Mask:
    """Soften the mask's edges with a Gaussian blur (radius = standard deviation in pixels,
    as in image editors). A hard edge becomes a ramp about 2 × radius wide each way."""
    return mask_ops.blur(mask, radius)


@node("image.feather_mask", category=CATEGORY, display_name="Feather Mask Edges")
def feather_mask(
    mask: Mask, left: EDGE = 0, top: EDGE = 0, right: EDGE = 0, bottom: EDGE = 0
) -> Mask:
    """Fade the mask out linearly towards the image borders: over the first left columns it
    is multiplied by 1/left, 2/left ... 1, likewise for top, right and bottom (ComfyUI's
    FeatherMask). 0 leaves that side as it is."""
    return mask_ops.feather_edges(mask, left, top, right, bottom)


@node("image.crop_mask", category=CATEGORY, display_name="Crop Mask")
def crop_mask(
    mask: Mask, x: OFFSET = 0, y: OFFSET = 0, width: SIDE = 512, height: SIDE = 512
) -> Mask:
    """Cut out the width × height rectangle whose top-left corner is at (x, y); it must lie
    inside the mask (the message says which edge it crosses)."""
    return mask_ops.crop(mask, x, y, width, height)


@node("image.composite_masks", category=CATEGORY, display_name="Combine Masks")
def composite_masks(
    destination: Mask,
    source: Mask,
    x: OFFSET = 0,
    y: OFFSET = 0,
    operation: Choice(mask_ops.COMPOSITE_OPERATIONS) = "add",
) -> Mask:
    """Combine source into destination, source's top-left corner at (x, y).

    multiply (intersection of soft masks), add (union), subtract (cut source out), and, or,
    xor (on the masks rounded to 0/1). Results are clamped to 0..1; outside the source the
    destination is kept, and source parts beyond the destination are ignored. A batch of
    one is combined with every mask of the other batch.
    """
    return mask_ops.composite_masks(destination, source, x, y, operation)


@node("image.color_to_mask", category=CATEGORY, display_name="Mask from Colour")
def color_to_mask(
    image: Image,
    color: Int(min=0, max=0xFFFFFF) = 0xFFFFFF,
    tolerance: Int(min=0, max=255) = 0,
) -> Mask:
    """Select the pixels of one colour (0xRRGGBB, e.g. 0xFF0000 for pure red).

    tolerance 0 takes exactly that 8-bit colour; larger values also take colours whose red,
    green and blue each differ by at most tolerance (out of 255), for JPEGs or soft edges.
    """
    return mask_ops.color_to_mask(image, color, tolerance)


NODES = [
    load_mask,
    image_to_mask,
    mask_to_image,
    solid_mask,
    invert_mask,
    threshold_mask,
    grow_mask,
    blur_mask,
    feather_mask,
    crop_mask,
    composite_masks,
    color_to_mask,
]
