"""Example photos bundled with scikit-image, so workflows and demos run without input files."""

from __future__ import annotations

from graphflow import Choice, Image, Int, node

# scikit-image ships these in its wheel (no download); name → skimage.data function.
EXAMPLE_PHOTOS = {
    "astronaut": "astronaut",
    "brick": "brick",
    "camera": "camera",
    "chelsea": "chelsea",
    "coffee": "coffee",
    "coins": "coins",
    "grass": "grass",
    "gravel": "gravel",
    "hubble_deep_field": "hubble_deep_field",
    "immunohistochemistry": "immunohistochemistry",
    "moon": "moon",
    "page": "page",
    "retina": "retina",
    "rocket": "rocket",
    "text": "text",
}


def example_photo_array(name: str):
    """The photo as an (H, W, 3) uint8 array (grey photos repeated to RGB)."""
    import numpy as np

    try:
        from skimage import data
    except ImportError:
        raise RuntimeError(
            "image.example_photo needs scikit-image (pip install scikit-image)"
        ) from None
    if name not in EXAMPLE_PHOTOS:
        raise ValueError(f"no example photo {name!r} (choose from {', '.join(EXAMPLE_PHOTOS)})")
    array = np.asarray(getattr(data, EXAMPLE_PHOTOS[name])())
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3])


@node("image.example_photo", category="image/io", display_name="Example Photo")
def example_photo(
    photo: Choice(list(EXAMPLE_PHOTOS)) = "astronaut",
    size: Int(min=0, max=4096, step=8) = 0,
) -> Image:
    """A photo from scikit-image's bundled test images (astronaut, coffee, chelsea, ...).

    size resizes it (Lanczos) so its longer side has that many pixels; 0 keeps the original.
    Useful for trying workflows without input files.
    """
    import numpy as np
    import torch
    from PIL import Image as PILImage

    array = example_photo_array(photo)
    if size:
        picture = PILImage.fromarray(array)
        ratio = size / max(picture.size)
        target = (max(1, round(picture.width * ratio)), max(1, round(picture.height * ratio)))
        array = np.asarray(picture.resize(target, PILImage.Resampling.LANCZOS))
    return torch.from_numpy(array.astype("float32") / 255.0)[None]


NODES = [example_photo]
