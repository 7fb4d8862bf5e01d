"""Fixtures for the diffusion pack: a tiny SD model in a temporary models folder."""

from __future__ import annotations

import pytest
from tiny_models import build_tiny_sd


@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    """A models folder with checkpoints/tiny-sd (a diffusers folder), built once."""
    root = tmp_path_factory.mktemp("models")
    build_tiny_sd(root / "checkpoints" / "tiny-sd")
    return root


@pytest.fixture
def models(models_root, monkeypatch):
    """Point graphflow at the tiny models folder for one test."""
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(models_root))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    return models_root
