"""Canvas nodes for inpainting and outpainting: pad an image with a feathered mask, paste
an image onto another through a mask, and join two images into one batch.

The functions here are also the implementation of ComfyUI's ImagePadForOutpaint,
ImageCompositeMasked and ImageBatch (gf_comfy/nodes_mask.py); the nodes are their
graphflow front ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from graphflow import Boolean, Image, Int, Mask, Outputs, node

from . import mask_ops
from .io import MAX_PIXELS
from .transform import resize

if TYPE_CHECKING:
    import torch

PAD = Int(min=0, max=16384, step=8)
OFFSET = Int(min=0, max=16384)
PAD_FILL = 0.5  # grey: the new area starts neutral, as ComfyUI fills it


# -- pad for outpainting ---------------------------------------------------------------------


def outpaint_feather(
    height: int, width: int, left: int, top: int, right: int, bottom: int, feathering: int
) -> torch.Tensor:
    """(height, width) mask over the original image: ((f − d) / f)² within f pixels of a
    padded side, d being the distance to the nearest padded side, 0 beyond.

    As ComfyUI counts it: d is the row index from the top (0 on the first row) but
    height − row from the bottom (1 on the last row), likewise for columns; sides that are
    not padded do not count. No feathering when 2 · f is not below both sides.
    """
    import torch

    mask = torch.zeros((height, width), dtype=torch.float32)
    if feathering <= 0 or 2 * feathering >= height or 2 * feathering >= width:
        return mask
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    columns = torch.arange(width, dtype=torch.float32)[None, :]
    distances = [
        rows if top else None,
        height - rows if bottom else None,
        columns if left else None,
        width - columns if right else None,
    ]
    d = torch.full((height, width), float(max(height, width)))
    for distance in distances:
        if distance is not None:
            d = torch.minimum(d, distance.expand(height, width))
    ramp = (feathering - d) / feathering
    return torch.where(d < feathering, ramp * ramp, mask)


def pad_for_outpaint(
    image: torch.Tensor, left: int, top: int, right: int, bottom: int, feathering: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(IMAGE, MASK): the image on a canvas grown by the given pixels per side, the new area
    0.5 grey and selected (mask 1), the original unselected (0) except a feathered band of
    ``feathering`` pixels along the padded sides (:func:`outpaint_feather`). The mask is a
    batch of one, used with every image of the batch."""
    import torch

    batch, height, width, channels = image.shape
    new_height, new_width = height + top + bottom, width + left + right
    if new_height * new_width > MAX_PIXELS:
        raise ValueError(
            f"padding to {new_width}×{new_height} is refused; images above "
            f"{MAX_PIXELS / 1e6:.0f} MP are not made"
        )
    canvas = torch.full(
        (batch, new_height, new_width, channels), PAD_FILL, dtype=torch.float32, device=image.device
    )
    canvas[:, top : top + height, left : left + width] = image
    mask = torch.ones((1, new_height, new_width), dtype=torch.float32)
    feather = outpaint_feather(height, width, left, top, right, bottom, feathering)
    mask[0, top : top + height, left : left + width] = feather
    return canvas, mask.to(image.device)


@node("image.pad_for_outpaint", category="image/mask", display_name="Pad Image for Outpainting")
def pad_image_for_outpaint(
    image: Image,
    left: PAD = 0,
    top: PAD = 0,
    right: PAD = 0,
    bottom: PAD = 0,
    feathering: Int(min=0, max=16384) = 40,
) -> Outputs(image=Image, mask=Mask):
    """Extend the canvas for outpainting: adds left/top/right/bottom pixels of grey and a mask
    selecting them (1), ready for VAE Encode for Inpainting or a latent noise mask.

    feathering blends the seam: along the padded sides the mask also reaches into the
    original image, fading as ((feathering − distance) / feathering)² (no feathering if the
    image is not more than twice as large as it). Multiples of 8 keep latent sizes whole.
    """
    return pad_for_outpaint(image, left, top, right, bottom, feathering)


# -- composite through a mask ----------------------------------------------------------------


def _match_channels(destination: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Source with the destination's channel count: extra channels dropped, a missing alpha
    added opaque."""
    import torch.nn.functional as F

    wanted, have = destination.shape[-1], source.shape[-1]
    if have > wanted:
        return source[..., :wanted]
    if have < wanted:
        if (have, wanted) != (3, 4):
            raise ValueError(f"cannot paste a {have}-channel image onto a {wanted}-channel one")
        return F.pad(source, (0, 1), value=1.0)
    return source


def resize_planes(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """IMAGE resized to height × width by plain bilinear interpolation (ComfyUI's choice
    for resize_source, no antialiasing)."""
    import torch.nn.functional as F

    planes = F.interpolate(image.movedim(-1, 1), size=(height, width), mode="bilinear")
    return planes.movedim(1, -1)


def composite_images(
    destination: torch.Tensor,
    source: torch.Tensor,
    x: int,
    y: int,
    resize_source: bool = False,
    mask: torch.Tensor | None = None,
    resize_mask: bool = False,
) -> torch.Tensor:
    """IMAGE ``source`` pasted onto ``destination`` at (x, y) through ``mask`` (ComfyUI's
    ImageCompositeMasked): mask · source + (1 − mask) · destination over the overlap.

    resize_source first stretches the source to the destination's size (bilinear). The mask
    must be the source's size, or with resize_mask it is resized to it (bilinear); missing,
    the whole source is pasted. Batches of one go with every item of the others.
    """
    source = _match_channels(destination, source.to(destination.device))
    if resize_source and source.shape[1:3] != destination.shape[1:3]:
        source = resize_planes(source, *destination.shape[1:3])
    size = mask_ops.batch_size(source.shape[0], destination.shape[0], "source", "destination")
    if mask is not None:
        mask = mask_ops.as_mask(mask).to(destination.device)
        height, width = source.shape[1:3]
        if resize_mask:
            mask = mask_ops.resize_mask(mask, height, width)
        mask_ops.check_size(mask, height, width, "the source image")
        size = mask_ops.batch_size(mask.shape[0], size, "mask", "image")
        mask = mask_ops.expand_batch(mask, size)
    return mask_ops.paste(
        mask_ops.expand_batch(destination, size), mask_ops.expand_batch(source, size), x, y, mask
    )


@node("image.composite_masked", category="image/mask", display_name="Composite Images (Masked)")
def composite_masked(
    destination: Image,
    source: Image,
    x: OFFSET = 0,
    y: OFFSET = 0,
    resize_source: Boolean = False,
    mask: Mask = None,
    resize_mask: Boolean = False,
) -> Image:
    """Paste source onto destination with its top-left corner at (x, y), through an optional
    mask: where the mask is 1 the source shows, where 0 the destination, between they blend.

    The mask is the source's size (an error names both sizes otherwise), unless resize_mask
    stretches it to the source. resize_source stretches the source to the destination's
    size first. Parts beyond the destination are cut off. Typical use: put an inpainted
    result back onto the original so only the masked area changes.
    """
    return composite_images(destination, source, x, y, resize_source, mask, resize_mask)


# -- batches ---------------------------------------------------------------------------------


def crop_to_aspect(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centre of IMAGE with the aspect ratio of width × height (the longer axis cut
    evenly on both sides, rounded), so that resizing does not stretch."""
    old_height, old_width = image.shape[1:3]
    old_aspect, new_aspect = old_width / old_height, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_width - old_width * new_aspect / old_aspect) / 2)
    elif old_aspect < new_aspect:
        y = round((old_height - old_height * old_aspect / new_aspect) / 2)
    return image[:, y : old_height - y, x : old_width - x]


def bilinear_fit(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """IMAGE centre-cropped to the target's aspect ratio, then resized bilinearly."""
    return resize(crop_to_aspect(image, height, width), height, width, "bilinear")


def batch_images(
    image1: torch.Tensor,
    image2: torch.Tensor,
    fit: Callable[[torch.Tensor, int, int], torch.Tensor] = bilinear_fit,
) -> torch.Tensor:
    """One batch: image1's images, then image2's, image2 first brought to image1's size by
    ``fit`` (image, height, width) when the sizes differ."""
    import torch

    if image1.shape[-1] != image2.shape[-1]:
        raise ValueError(
            f"cannot batch images with {image1.shape[-1]} and {image2.shape[-1]} channels"
        )
    if image2.shape[1:3] != image1.shape[1:3]:
        image2 = fit(image2, *image1.shape[1:3])
    return torch.cat((image1, image2.to(image1.device, image1.dtype)), dim=0)


@node("image.image_batch", category="image/batch", display_name="Batch Images")
def image_batch(image1: Image, image2: Image) -> Image:
    """Join two images (or batches) into one batch, image1's first.

    If image2's size differs it is resized to image1's: centre-cropped to the same aspect
    ratio, then scaled bilinearly (as ComfyUI's Batch Images).
    """
    return batch_images(image1, image2)


NODES = [pad_image_for_outpaint, composite_masked, image_batch]
