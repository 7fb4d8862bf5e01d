"""The GAN pack's port type for loaded generators (declared in gan_nodes' ``PORT_TYPES``)."""

from __future__ import annotations

from graphflow import port_type

GAN_MODEL_TYPE, GanModel = port_type(
    "GAN_MODEL", "GAN generator (latent → image)", "#ef6c00", model=True
)
