"""Fixtures for the diffusion pack: a tiny SD model in a temporary models folder."""

from __future__ import annotations

import pytest
from tiny_models import build_tiny_sd, build_tiny_sdxl


@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    """A models folder, built once: checkpoints/tiny-sd (a diffusers folder) and
    checkpoints/tiny-sd.safetensors (the same weights as one LDM-layout file)."""
    import shutil

    from diffusers import StableDiffusionPipeline
    from ldm_export import export_single_file

    root = tmp_path_factory.mktemp("models")
    folder = build_tiny_sd(root / "checkpoints" / "tiny-sd")
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    # The same weights as one original-layout file; the folder beside it is its config.
    export_single_file(pipe, root / "checkpoints" / "tiny-sd.safetensors")
    build_tiny_sdxl(root / "checkpoints" / "tiny-sdxl")
    (root / "loose").mkdir()
    shutil.copy(root / "checkpoints" / "tiny-sd.safetensors", root / "loose" / "alone.safetensors")
    return root


@pytest.fixture
def models(models_root, monkeypatch):
    """Point graphflow at the tiny models folder for one test."""
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(models_root))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    return models_root
