"""A tiny random-weight Stable Diffusion *inpainting* checkpoint (9-channel UNet: latent +
mask + masked-image latent), built locally like tiny_models.py, and the shared pieces of
the inpainting tests (pictures, masks, graph builders)."""

from __future__ import annotations

from pathlib import Path

from tiny_models import build_tiny_sd

INPAINT_CHECKPOINT = "tiny-sd-inpainting"


def build_tiny_inpaint_sd(target: Path, seed: int = 0) -> Path:
    """Save a tiny StableDiffusionInpaintPipeline (32×32 images, 16×16×4 latents, a UNet with
    9 input channels) into ``target``."""
    return build_tiny_sd(target, seed, in_channels=9, pipeline="StableDiffusionInpaintPipeline")


def ensure_inpaint_checkpoint(models_root: Path) -> Path:
    """The tiny inpainting checkpoint in ``models_root``/checkpoints, built on first use."""
    target = models_root / "checkpoints" / INPAINT_CHECKPOINT
    if not (target / "model_index.json").is_file():
        build_tiny_inpaint_sd(target)
    return target


def picture(seed: int = 0, batch: int = 1):
    """A smooth random 32×32 RGB picture (IMAGE, B×32×32×3 in 0..1)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, 8, 8, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear")
    return smooth.permute(0, 2, 3, 1).contiguous()


def square_mask(top: int = 8, left: int = 8, size: int = 16, side: int = 32):
    """MASK (1, side, side): 1 on a size×size square at (top, left), 0 elsewhere."""
    import torch

    mask = torch.zeros(1, side, side)
    mask[:, top : top + size, left : left + size] = 1.0
    return mask
