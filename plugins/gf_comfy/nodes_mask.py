"""ComfyUI's mask class types (comfy_extras/nodes_mask.py) and the canvas ones of its
nodes.py (ImagePadForOutpaint, ImageBatch), as of ComfyUI 0.3.64 (V1 nodes: display names
only where ComfyUI maps one, else the class name), on gf_image's mask_ops and outpaint
functions: one implementation, with graphflow's nodes as the other front end.

Where ComfyUI differs from graphflow's own nodes, these follow ComfyUI: CropMask clips the
rectangle to the mask, ImageCompositeMasked always resizes its mask to the source and
repeats batches to the destination's, ImageBatch resizes with ComfyUI's bilinear and
centre crop. One difference on purpose: FeatherMask's right and bottom ramps end on the
last column/row (ComfyUI 0.3.x started them one pixel off, scaling the first column/row
instead; fixed upstream later).
"""

from __future__ import annotations

import math

from gf_diffusion.resample import common_upscale
from gf_image import mask_ops
from gf_image.outpaint import batch_images, composite_images, pad_for_outpaint
from graphflow import Boolean, Choice, Float, Image, Int, Mask, Outputs

from .names import ComfyInput, comfy_node

MAX_RESOLUTION = 16384
POSITION = Int(min=0, max=MAX_RESOLUTION, step=1)
SIDE = Int(min=1, max=MAX_RESOLUTION, step=1)


def repeat_to_batch(tensor, size: int):
    """ComfyUI's repeat_to_batch_size: the batch cut to ``size``, or tiled up to it."""
    have = tensor.shape[0]
    if have > size:
        return tensor[:size]
    if have < size:
        tiles = math.ceil(size / have)
        return tensor.repeat(tiles, *([1] * (tensor.ndim - 1)))[:size]
    return tensor


@comfy_node("SolidMask", display_name="SolidMask", category="mask")
def solid_mask(
    value: Float(min=0.0, max=1.0, step=0.01) = 1.0, width: SIDE = 512, height: SIDE = 512
) -> Mask:
    """A mask of one value (1 selects everything)."""
    return mask_ops.solid(value, width, height, 1)


@comfy_node("InvertMask", display_name="InvertMask", category="mask")
def invert_mask(mask: Mask) -> Mask:
    """1 − mask."""
    return mask_ops.invert(mask)


@comfy_node("MaskToImage", display_name="Convert Mask to Image", category="mask")
def mask_to_image(mask: Mask) -> Image:
    """The mask as a grey RGB image."""
    return mask_ops.mask_to_image(mask)


@comfy_node("ImageToMask", display_name="Convert Image to Mask", category="mask")
def image_to_mask(image: Image, channel: Choice(["red", "green", "blue", "alpha"])) -> Mask:
    """One channel of the image as a mask (alpha only for RGBA images)."""
    return mask_ops.image_to_mask(image, channel)


@comfy_node(
    "ImageColorToMask",
    display_name="ImageColorToMask",
    category="mask",
    inputs={"color": ComfyInput(display="color")},
)
def image_color_to_mask(image: Image, color: Int(min=0, max=0xFFFFFF, step=1) = 0) -> Mask:
    """1 where the pixel's 8-bit colour is exactly color (0xRRGGBB), else 0."""
    return mask_ops.color_to_mask(image, color, 0)


@comfy_node("ThresholdMask", display_name="ThresholdMask", category="mask")
def threshold_mask(mask: Mask, value: Float(min=0.0, max=1.0, step=0.01) = 0.5) -> Mask:
    """1 where the mask is above value, else 0."""
    return mask_ops.threshold(mask, value)


@comfy_node("GrowMask", display_name="GrowMask", category="mask")
def grow_mask(
    mask: Mask,
    expand: Int(min=-MAX_RESOLUTION, max=MAX_RESOLUTION, step=1) = 0,
    tapered_corners: Boolean = True,
) -> Mask:
    """Grow the mask by expand pixels (shrink when negative), one 3×3 step per pixel:
    a cross with tapered_corners (corners cut), else a square."""
    return mask_ops.grow(mask, expand, "tapered" if tapered_corners else "square")


@comfy_node("FeatherMask", display_name="FeatherMask", category="mask")
def feather_mask(
    mask: Mask,
    left: POSITION = 0,
    top: POSITION = 0,
    right: POSITION = 0,
    bottom: POSITION = 0,
) -> Mask:
    """Fade the mask linearly to 1/n at each border over n = left, top, right, bottom pixels."""
    return mask_ops.feather_edges(mask, left, top, right, bottom)


@comfy_node("CropMask", display_name="CropMask", category="mask")
def crop_mask(
    mask: Mask, x: POSITION = 0, y: POSITION = 0, width: SIDE = 512, height: SIDE = 512
) -> Mask:
    """The width × height rectangle at (x, y), clipped to the mask."""
    mask = mask_ops.as_mask(mask)
    in_height, in_width = mask.shape[-2:]
    if x >= in_width or y >= in_height:
        raise ValueError(f"CropMask at ({x}, {y}) starts outside the {in_width}×{in_height} mask")
    return mask_ops.crop(mask, x, y, min(width, in_width - x), min(height, in_height - y))


@comfy_node("MaskComposite", display_name="MaskComposite", category="mask")
def mask_composite(
    destination: Mask,
    source: Mask,
    x: POSITION = 0,
    y: POSITION = 0,
    operation: Choice(mask_ops.COMPOSITE_OPERATIONS) = "multiply",
) -> Mask:
    """Combine source into destination at (x, y): multiply, add, subtract, and, or, xor;
    clamped to 0..1."""
    return mask_ops.composite_masks(destination, source, x, y, operation)


@comfy_node("ImageCompositeMasked", display_name="ImageCompositeMasked", category="image")
def image_composite_masked(
    destination: Image,
    source: Image,
    x: POSITION = 0,
    y: POSITION = 0,
    resize_source: Boolean = False,
    mask: Mask = None,
) -> Image:
    """Paste source onto destination at (x, y) through the mask (resized to the source,
    bilinear); resize_source stretches the source to the destination first."""
    batch = destination.shape[0]
    source = source.to(destination.device)
    if resize_source:
        source = common_upscale(
            source.movedim(-1, 1),
            destination.shape[2],
            destination.shape[1],
            "bilinear",
            "disabled",
        ).movedim(1, -1)
    source = repeat_to_batch(source, batch)
    if mask is not None:
        mask = mask_ops.resize_mask(mask.to(destination.device), *source.shape[1:3])
        mask = repeat_to_batch(mask, batch)
    return composite_images(destination, source, x, y, False, mask, resize_mask=False)


@comfy_node(
    "ImagePadForOutpaint",
    display_name="Pad Image for Outpainting",
    category="image",
)
def image_pad_for_outpaint(
    image: Image,
    left: Int(min=0, max=MAX_RESOLUTION, step=8) = 0,
    top: Int(min=0, max=MAX_RESOLUTION, step=8) = 0,
    right: Int(min=0, max=MAX_RESOLUTION, step=8) = 0,
    bottom: Int(min=0, max=MAX_RESOLUTION, step=8) = 0,
    feathering: POSITION = 40,
) -> Outputs(image=Image, mask=Mask):
    """Grow the canvas by grey borders and return a mask selecting them, feathered
    ((f − d) / f)² into the image along the padded sides."""
    return pad_for_outpaint(image, left, top, right, bottom, feathering)


def _comfy_fit(image, height: int, width: int):
    """ComfyUI's resize for ImageBatch: centre crop to the aspect, then plain bilinear."""
    planes = common_upscale(image.movedim(-1, 1), width, height, "bilinear", "center")
    return planes.movedim(1, -1)


@comfy_node("ImageBatch", display_name="Batch Images", category="image")
def image_batch(image1: Image, image2: Image) -> Image:
    """image1 then image2 in one batch; image2 is resized to image1's size if it differs."""
    return batch_images(image1, image2, fit=_comfy_fit)


NODES = [
    solid_mask,
    invert_mask,
    mask_to_image,
    image_to_mask,
    image_color_to_mask,
    threshold_mask,
    grow_mask,
    feather_mask,
    crop_mask,
    mask_composite,
    image_composite_masked,
    image_pad_for_outpaint,
    image_batch,
]
