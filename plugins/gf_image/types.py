"""The image pack's port types for loaded models (registered through ``graphflow_port_types``)."""

from __future__ import annotations

from graphflow import port_type

UPSCALE_MODEL_TYPE, UpscaleModel = port_type(
    "UPSCALE_MODEL", "Super-resolution model", "#a1887f", model=True
)
