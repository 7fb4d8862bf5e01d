"""Which text-encoder layer a CLIP value's prompts are encoded from, in ComfyUI's terms.

A :class:`~gf_comfy.types.ClipValue`'s ``clip_skip`` is ComfyUI's layer as a positive
number: ``CLIPSetLastLayer(stop_at_clip_layer=-n)`` sets ``clip_skip = n`` (1 = the last
layer, 2 = the penultimate). Without CLIPSetLastLayer ComfyUI encodes SD 1.x prompts from
the last layer and SD 2.x and SDXL prompts from the penultimate one, so
CheckpointLoaderSimple starts the value at :func:`default_layer`. graphflow's own
``diffusion.encode_text`` counts its ``clip_skip`` from the layer diffusers' pipelines use
(0 = that one), which is what :func:`encode_clip_skip` converts to:

- SD 1.x: diffusers uses the last layer (through the final norm) → ``n − 1``.
- SD 2.x: diffusers' conversion drops OpenCLIP ViT-H's last layer (23 of 24 remain), so its
  last layer is ComfyUI's penultimate → ``n − 2`` (ComfyUI's −1 does not exist here).
- SDXL (and its refiner): diffusers uses the penultimate hidden states (no final norm) →
  ``n − 2``; ComfyUI's −1 (the last layer) is ``encode_text``'s −1 (hidden state −1).

A layer past the encoder's depth is the last layer, as ComfyUI treats it. Encoders that are
not CLIP (graphflow-tiny's MiniLM) have no layer choice: their default is kept, with a note.
"""

from __future__ import annotations

from typing import Any

from .types import ClipValue

SD2_DIFFUSERS_LAYERS = 23  # OpenCLIP ViT-H (24 layers) as diffusers converts SD 2.x


def _config(handle: Any) -> Any:
    return getattr(handle.unpatched, "config", None)


def _is_clip(handle: Any) -> bool:
    module = handle.unpatched
    layers = getattr(module, "text_model", module)
    return hasattr(layers, "final_layer_norm")


def _is_sd2(encoders: list[Any]) -> bool:
    config = _config(encoders[0])
    return (
        len(encoders) == 1
        and getattr(config, "num_hidden_layers", None) == SD2_DIFFUSERS_LAYERS
        and getattr(config, "hidden_size", None) == 1024
    )


def _is_sdxl(encoders: list[Any]) -> bool:
    """SDXL's two encoders, or the refiner's OpenCLIP G alone (a projection model)."""
    return len(encoders) > 1 or any(
        hasattr(handle.unpatched, "text_projection") for handle in encoders
    )


def default_layer(text_encoders: Any) -> int:
    """ComfyUI's default layer for a checkpoint's encoders as a ``clip_skip``: 2 (the
    penultimate) for SDXL (base and refiner) and SD 2.x, else 1 (the last)."""
    encoders = list(text_encoders.encoders)
    if encoders and (_is_sdxl(encoders) or _is_sd2(encoders)):
        return 2
    return 1


def comfy_layer_count(text_encoders: Any) -> int:
    """How many layers ComfyUI counts in these encoders (the shallowest one's)."""
    counts = []
    for handle in text_encoders.encoders:
        layers = getattr(_config(handle), "num_hidden_layers", None) or 1
        counts.append(layers + 1 if _is_sd2([handle]) else layers)
    return min(counts, default=1)


def encode_clip_skip(clip: ClipValue) -> tuple[int, str | None]:
    """(``diffusion.encode_text``'s clip_skip for ``clip``'s layer, a note or None)."""
    encoders = list(clip.text_encoder.encoders)
    if not encoders:
        return 0, None
    wanted = clip.clip_skip
    default = default_layer(clip.text_encoder)
    if not all(_is_clip(handle) for handle in encoders):
        if wanted == default:
            return 0, None
        return 0, (
            f"this checkpoint's text encoder is not a CLIP model: stop_at_clip_layer "
            f"-{wanted} is ignored (its own layer is used)"
        )
    if wanted > comfy_layer_count(clip.text_encoder):
        wanted = 1  # ComfyUI: a layer past the encoder's depth is the last layer
    if _is_sdxl(encoders):
        return wanted - 2, None
    if _is_sd2(encoders):
        if wanted < 2:
            return 0, (
                "SD 2.x's last text-encoder layer is not part of its diffusers weights: "
                "the penultimate layer (ComfyUI's default for SD 2.x) is used"
            )
        return wanted - 2, None
    return wanted - 1, None
