"""ControlNet and T2I-Adapter residuals for one UNet call, called by ``unet_call.forward``.

(issue 17: the ControlNet helper completes this module.)
"""

from __future__ import annotations


def residuals(model_in, timestep, encoder_states, added, entries, batch: int, step) -> dict:
    """The UNet keyword arguments (``down_block_additional_residuals`` ...) for the
    controls of ``entries``; empty when no entry has one."""
    if not any(getattr(e, "controls", ()) for e in entries):
        return {}
    raise ValueError("ControlNet / T2I-Adapter conditioning is not supported by this sampler yet")
