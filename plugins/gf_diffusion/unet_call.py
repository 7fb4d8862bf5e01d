"""One UNet call for both samplers (``sampler.py`` and the sigma-space ``k_denoiser.py``).

A prompt's extras reach the model here, so neither sampling loop knows about them: the
extra input channels of inpainting and InstructPix2Pix UNets (``inpaint_concat.py``) and the
residuals of ControlNets and T2I-Adapters (``control_apply.py``). Every call names the
conditioning entries whose rows it holds, in batch order (entry 0's ``batch`` rows first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# UNet input channels → the latent channels a sampler works on (the rest are concatenated).
EXTRA_CHANNELS = {9: 5, 8: 4}  # inpainting: mask + masked image; InstructPix2Pix: image


@dataclass
class StepInfo:
    """Where a model call sits in its sampling run, for the extras that depend on it.

    The native sampler fills ``step_index``/``step_count`` (diffusers' pipelines switch
    ControlNets by step); the sigma-space sampler fills ``sigma`` and ``model_sigmas``
    (ComfyUI switches them by the noise level a start/end percentage maps to).
    ``latent``: the clean latent being sampled, (B, C, h, w) on the model's device (the
    inpainting fallback for a prompt without ``concat_latent``); ``noise_mask``: its mask
    (B, 1, h, w), or None. ``area``: (h, w, y, x) in latent pixels when the call is for an
    area crop of the latent; ``image_size``: (H, W) of the whole latent's image in pixels.
    """

    step_index: int | None = None
    step_count: int | None = None
    sigma: float | None = None
    model_sigmas: Any = None
    latent: Any = None
    noise_mask: Any = None
    area: tuple[int, int, int, int] | None = None
    image_size: tuple[int, int] | None = None


def latent_channels(unet: Any) -> int:
    """The latent channels a sampler gives this UNet (4 for a 9-channel inpainting UNet)."""
    channels = int(unet.config.in_channels)
    return channels - EXTRA_CHANNELS.get(channels, 0)


def forward(unet, model_in, timestep, encoder_states, added, entries, batch: int, step: StepInfo):
    """The UNet's output for ``model_in`` (len(entries)·batch, C, h, w), already scaled for
    the model, with every entry's extra channels and control residuals.

    ``entries`` are the :class:`~gf_diffusion.values.ConditioningEntry` objects whose rows
    the batch holds; ``added`` is SDXL's ``added_cond_kwargs`` (or None).
    """
    from . import control_apply, inpaint_concat

    full_in = inpaint_concat.with_extra_channels(unet, model_in, entries, batch, step)
    residuals = control_apply.residuals(
        model_in, timestep, encoder_states, added, entries, batch, step
    )
    return unet(
        full_in,
        timestep,
        encoder_hidden_states=encoder_states,
        added_cond_kwargs=added,
        return_dict=False,
        **residuals,
    )[0]
