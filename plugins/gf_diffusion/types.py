"""The diffusion pack's port types (registered through ``graphflow_port_types``).

The engine knows only generic types (numbers, text, IMAGE, MASK, ANY); everything a latent
diffusion model passes between nodes is declared here. The values behind each type are
documented in ``values.py``.
"""

from __future__ import annotations

from graphflow import port_type

LATENT_TYPE, Latent = port_type("LATENT", "Latent tensor of a diffusion model", "#ff80ab")
CONDITIONING_TYPE, Conditioning = port_type(
    "CONDITIONING", "Text conditioning for a diffusion model", "#ffa931"
)
TOKENS_TYPE, Tokens = port_type("TOKENS", "Token ids, attention mask and token strings", "#ffd54f")
MODEL_TYPE, Model = port_type(
    "MODEL", "Denoising network (UNet or transformer)", "#b39ddb", model=True
)
VAE_TYPE, Vae = port_type("VAE", "Image autoencoder", "#ff6e6e", model=True)
TEXT_ENCODER_TYPE, TextEncoder = port_type("TEXT_ENCODER", "Text encoder", "#ffd500", model=True)
TOKENIZER_TYPE, Tokenizer = port_type("TOKENIZER", "Tokenizer", "#e6c200", model=True)
SCHEDULER_TYPE, Scheduler = port_type("SCHEDULER", "Noise scheduler", "#4db6ac")
CONTROL_NET_TYPE, ControlNet = port_type(
    "CONTROL_NET", "ControlNet or T2I-Adapter", "#00d78d", model=True
)

PORT_TYPES = (
    LATENT_TYPE,
    CONDITIONING_TYPE,
    TOKENS_TYPE,
    MODEL_TYPE,
    VAE_TYPE,
    TEXT_ENCODER_TYPE,
    TOKENIZER_TYPE,
    SCHEDULER_TYPE,
    CONTROL_NET_TYPE,
)
