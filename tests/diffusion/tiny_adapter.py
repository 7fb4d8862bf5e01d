"""Tiny random T2I-Adapters and a tiny SD 1.x whose UNet they fit, built locally.

The shared tiny SD (tiny_models.py) starts with a DownBlock2D, so an adapter's first
features meet it after its first downsampling, as in SDXL. SD 1.x proper starts with cross
attention blocks whose residuals come before the downsampler, which is what an SD 1.x
``full_adapter`` fits; :func:`build_tiny_sd1` builds that layout (32×32 images, 16×16
latents) with the shared tiny VAE, text encoder and tokenizer.

:func:`original_layout` writes an adapter's weights the way TencentARC's files hold them
(written here from the layouts' description, independently of the loader under test).
"""

from __future__ import annotations

from pathlib import Path

from tiny_models import build_tiny_sd

# The tiny SD 1.x UNet's down blocks: 32 channels at 16×16, then 64 at 8×8.
SD1_WIDTHS = [32, 64]


def tiny_adapter(kind: str = "full_adapter", in_channels: int = 3, seed: int = 0, **config):
    """A random T2IAdapter fitting the tiny UNets: ``full_adapter`` (factor 2, the tiny
    SD 1.x of :func:`build_tiny_sd1`), ``full_adapter_xl`` (factor 4: the shared tiny SD
    and SDXL, whose first features are at half the latent size), ``light_adapter``."""
    import torch
    from diffusers import T2IAdapter

    defaults = {
        "full_adapter": {"channels": SD1_WIDTHS, "num_res_blocks": 2, "downscale_factor": 2},
        "full_adapter_xl": {"channels": SD1_WIDTHS, "num_res_blocks": 2, "downscale_factor": 4},
        "light_adapter": {"channels": SD1_WIDTHS, "num_res_blocks": 2, "downscale_factor": 2},
    }[kind]
    torch.manual_seed(seed)
    adapter = T2IAdapter(in_channels=in_channels, adapter_type=kind, **{**defaults, **config})
    with torch.no_grad():  # default init is tiny next to the UNet's activations: make it felt
        for parameter in adapter.parameters():
            parameter.mul_(3.0)
    return adapter.eval()


def original_layout(adapter) -> dict:
    """The adapter's weights in TencentARC's original key layout."""
    state = adapter.state_dict()
    kind = adapter.config.adapter_type
    per_level = adapter.config.num_res_blocks
    out = {}
    for key, value in state.items():
        parts = key.split(".")  # adapter.body.<i>.resnets.<j>.block1.weight / in_conv...
        if parts[1] == "conv_in":
            out[f"conv_in.{parts[-1]}"] = value
            continue
        level = int(parts[2])
        if kind == "light_adapter":
            if parts[3] == "resnets":
                out[f"body.{level}.body.{parts[4]}.{parts[5]}.{parts[6]}"] = value
            else:
                out[f"body.{level}.{parts[3]}.{parts[4]}"] = value
        elif parts[3] == "resnets":
            out[f"body.{level * per_level + int(parts[4])}.{parts[5]}.{parts[6]}"] = value
        else:  # the level's widening 1×1 convolution sits on its first resnet
            out[f"body.{level * per_level}.in_conv.{parts[4]}"] = value
    return {k: v.clone().contiguous() for k, v in out.items()}


def build_tiny_sd1(target: Path, seed: int = 0) -> Path:
    """Save a tiny StableDiffusionPipeline laid out as SD 1.x (cross attention first)."""
    return build_tiny_sd(target, seed, cross_attention_first=True)
