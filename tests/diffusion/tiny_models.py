"""Tiny random-weight Stable Diffusion components, built locally (no downloads).

Used by the diffusion tests and the txt2img benchmark: a UNet2DConditionModel with cross
attention, an AutoencoderKL, a CLIP text encoder and a byte-level CLIP tokenizer whose
vocabulary is generated here, saved as a diffusers folder.
"""

from __future__ import annotations

import json
from pathlib import Path


def _byte_characters() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for bytes."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def build_clip_tokenizer(folder: Path, max_length: int = 77):
    """A CLIPTokenizer over single bytes plus a few merges (enough to tokenize any prompt)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_characters()
    vocab: dict[str, int] = {}
    for token in [*chars, *(c + "</w>" for c in chars)]:
        vocab[token] = len(vocab)
    merges = ["r e", "e d</w>", "c a", "a t</w>", "ca t</w>", "o g</w>", "d og</w>"]
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length
    )


def _tiny_vae():
    """A 2-level AutoencoderKL: 32×32×3 images ↔ 16×16×4 latents."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(16, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=16,
        sample_size=32,
    )


def _ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build_tiny_sd(
    target: Path,
    seed: int = 0,
    *,
    in_channels: int = 4,
    cross_attention_first: bool = False,
    pipeline: str = "StableDiffusionPipeline",
    scheduler=None,
) -> Path:
    """Save a tiny SD pipeline (32×32 images, 16×16×4 latents) into ``target``.

    ``in_channels`` 9 / 8 with ``pipeline`` "StableDiffusionInpaintPipeline" /
    "StableDiffusionInstructPix2PixPipeline" make the inpainting / InstructPix2Pix variants;
    ``cross_attention_first`` lays the UNet out as SD 1.x (cross attention in the first down
    block, which SD 1.x T2I-Adapters need); ``scheduler`` defaults to SD's DDIM.
    """
    import diffusers
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    down = ("DownBlock2D", "CrossAttnDownBlock2D")
    up = ("CrossAttnUpBlock2D", "UpBlock2D")
    if cross_attention_first:
        down, up = down[::-1], up[::-1]
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=down,
        up_block_types=up,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = _tiny_vae()
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
    pipe = getattr(diffusers, pipeline)(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler if scheduler is not None else _ddim(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(target)
    return target


def build_tiny_sdxl(target: Path, seed: int = 0) -> Path:
    """Save a tiny StableDiffusionXLPipeline: two text encoders, pooled + size conditioning."""
    import torch
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer = build_clip_tokenizer(target.parent / f".{target.name}-tokenizer-src")

    def encoder_config(hidden: int, projection: int | None = None) -> CLIPTextConfig:
        extra = {"projection_dim": projection} if projection else {}
        return CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=hidden,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=3,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            **extra,
        )

    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 size ids × 8 + pooled 32
        cross_attention_dim=64,  # the two encoders' widths side by side
        norm_num_groups=16,
    )
    vae = _tiny_vae()
    pipe = StableDiffusionXLPipeline(
        unet=unet,
        vae=vae,
        text_encoder=CLIPTextModel(encoder_config(32)),
        text_encoder_2=CLIPTextModelWithProjection(encoder_config(32, projection=32)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            steps_offset=1,
            timestep_spacing="leading",
        ),
    )
    pipe.save_pretrained(target)
    return target


def loader_workflow(checkpoint: str = "tiny-sd", **inputs):
    """A workflow that loads ``checkpoint`` (other loader ``inputs`` as given) and shows its
    model, so it has an output node."""
    from support import link, make_workflow

    return make_workflow(
        {
            "ckpt": ("diffusion.load_checkpoint", {"checkpoint": checkpoint, **inputs}),
            "show": ("core.show", {"value": link("ckpt", "model")}),
        }
    )


def loaded_checkpoint(registry, checkpoint: str) -> dict:
    """The outputs of ``diffusion.load_checkpoint`` for ``checkpoint`` (model, vae, ...)."""
    from graphflow import Executor

    result = Executor(registry).run(loader_workflow(checkpoint), outputs=["ckpt"])
    assert result.ok, result.error
    return result.outputs["ckpt"]
