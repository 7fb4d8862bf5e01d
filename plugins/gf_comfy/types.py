"""The port type ComfyUI has and graphflow does not: CLIP (a text encoder with its tokenizer).

Every other ComfyUI socket type maps onto a graphflow type of the same name (MODEL, VAE,
CONDITIONING, LATENT, IMAGE, MASK, UPSCALE_MODEL), so ComfyUI-named nodes and graphflow's
own nodes connect to each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphflow import port_type

CLIP_TYPE, Clip = port_type(
    "CLIP",
    "Text encoder(s) with their tokenizer(s) and clip skip (ComfyUI's CLIP)",
    "#ffd500",
    model=True,
)

PORT_TYPES = (CLIP_TYPE,)


@dataclass(frozen=True)
class ClipValue:
    """What travels on a CLIP port: graphflow's TEXT_ENCODER and TOKENIZER values and the
    clip skip set by CLIPSetLastLayer (1 = the last layer, 2 = the penultimate, ...)."""

    text_encoder: Any  # gf_diffusion.values.TextEncoders
    tokenizer: Any  # gf_diffusion.values.Tokenizers
    clip_skip: int = 1
