"""Fixtures of the ComfyUI tests (the protocol's live in protocolkit.py).

``registry`` (every installed pack, one per test module) and ``executor`` (on it, with the
module's own ``models_root`` as the models folder, on the CPU) serve the node tests; a
module that needs extra test nodes defines its own ``registry``.
"""

import pytest
from protocolkit import client, comfy_registry, make_client  # noqa: F401

from graphflow import Executor, load_plugins


@pytest.fixture(scope="module")
def registry():
    """Every installed pack's nodes, loaded once per test module."""
    return load_plugins().registry


@pytest.fixture
def executor(models_root, registry, monkeypatch):
    """An executor over ``registry`` whose models folder is the module's ``models_root``."""
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(models_root))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    return Executor(registry)
