"""A tiny random-weight Stable Diffusion *inpainting* checkpoint (9-channel UNet: latent +
mask + masked-image latent), built locally like tiny_models.py, and the shared pieces of
the inpainting tests (pictures, masks, graph builders)."""

from __future__ import annotations

from pathlib import Path

from tiny_models import _tiny_vae, build_clip_tokenizer

INPAINT_CHECKPOINT = "tiny-sd-inpainting"


def build_tiny_inpaint_sd(target: Path, seed: int = 0) -> Path:
    """Save a tiny StableDiffusionInpaintPipeline (32×32 images, 16×16×4 latents, a UNet with
    9 input channels) into ``target``."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    tokenizer = build_clip_tokenizer(target.parent / f".{target.name}-tokenizer-src")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=3,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionInpaintPipeline(
        unet=unet,
        vae=_tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(target)
    return target


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
