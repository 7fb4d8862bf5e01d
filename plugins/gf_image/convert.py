"""IMAGE / MASK tensors ↔ Pillow images.

IMAGE: float32 tensor (B, H, W, C), C = 3, values 0..1 (any device; converted on the CPU).
MASK: float32 tensor (B, H, W), 1 marks the selected area (transparent pixels when loaded).
"""

from __future__ import annotations

from typing import Any


def to_pil(image: Any) -> list[Any]:
    """One PIL RGB image per batch item."""
    import numpy as np
    from PIL import Image as PILImage

    array = (image.detach().float().clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
    if array.ndim == 3:
        array = array[None]
    return [PILImage.fromarray(item[..., :3], "RGB") for item in array]


def from_pil(picture: Any) -> tuple[Any, Any]:
    """(IMAGE of batch 1, MASK of batch 1) from a PIL image; the mask is 1 − alpha."""
    import numpy as np
    import torch

    rgba = np.asarray(picture.convert("RGBA"), dtype=np.float32) / 255.0
    image = torch.from_numpy(rgba[..., :3].copy())[None]
    mask = torch.from_numpy(1.0 - rgba[..., 3].copy())[None]
    return image, mask
