"""The pix2pix port type: a loaded pix2pix generator (registered through the pack's
``graphflow_port_types`` hook from pix2pix_nodes.PORT_TYPES)."""

from __future__ import annotations

from graphflow import port_type

PIX2PIX_MODEL_TYPE, Pix2PixModel = port_type(
    "PIX2PIX_MODEL", "pix2pix generator", "#8d6e63", model=True
)
