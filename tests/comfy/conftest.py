"""Fixtures of the ComfyUI tests (the protocol's live in protocolkit.py)."""

from protocolkit import client, comfy_registry, make_client  # noqa: F401
