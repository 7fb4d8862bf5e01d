"""The extra UNet input channels of inpainting (mask + masked-image latent) and
InstructPix2Pix (image latent) checkpoints, called by ``unet_call.forward``.

(issue 17: the inpainting helper completes this module.)
"""

from __future__ import annotations


def with_extra_channels(unet, model_in, entries, batch: int, step):
    """``model_in`` with the channels a 9- or 8-channel UNet takes after the latent's."""
    expected = int(getattr(unet.config, "in_channels", model_in.shape[1]))
    if model_in.shape[1] == expected:
        return model_in
    raise ValueError(
        f"this UNet takes {expected} input channels; the latent has {model_in.shape[1]}"
    )
