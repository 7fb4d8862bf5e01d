"""diffusion.k_sampler (gf_diffusion/k_sampler_node.py): graphflow's own node for ComfyUI's
sigma-space sampling, in a graphflow workflow on a tiny SD model."""

from __future__ import annotations

import pytest
import torch
from tiny_models import build_tiny_sd

from gf_comfy.names import CLASSES
from gf_diffusion.k_sampling import SAMPLERS
from graphflow import Executor, load_plugins
from graphflow.errors import ValidationFailed
from support import link, make_workflow


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("k_sampler_models")
    build_tiny_sd(root / "checkpoints" / "tiny-sd")
    return root


@pytest.fixture
def executor(models_root, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(models_root))
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    return Executor(load_plugins().registry)


def _workflow(sampler: str = "dpmpp_2m", **inputs):
    return make_workflow(
        {
            "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd"}),
            "pos_t": (
                "diffusion.tokenize",
                {"text": "a cat", "tokenizer": link("ckpt", "tokenizer")},
            ),
            "pos": (
                "diffusion.encode_text",
                {"tokens": link("pos_t", "tokens"), "text_encoder": link("ckpt", "text_encoder")},
            ),
            "neg_t": ("diffusion.tokenize", {"text": "", "tokenizer": link("ckpt", "tokenizer")}),
            "neg": (
                "diffusion.encode_text",
                {"tokens": link("neg_t", "tokens"), "text_encoder": link("ckpt", "text_encoder")},
            ),
            "lat": (
                "diffusion.empty_latent",
                {"width": 16, "height": 16, "vae": link("ckpt", "vae")},
            ),
            "ks": (
                "diffusion.k_sampler",
                {
                    "model": link("ckpt", "model"),
                    "positive": link("pos", "conditioning"),
                    "negative": link("neg", "conditioning"),
                    "latent": link("lat", "latent"),
                    "sampler": sampler,
                    "scheduler": "karras",
                    "seed": 2**64 - 1,
                    "steps": 3,
                    "cfg": 5.0,
                    **inputs,
                },
            ),
            "show": ("core.show", {"value": link("ks", "latent")}),
        }
    )


def test_the_native_node_offers_only_implemented_samplers():
    spec = load_plugins().registry.get("diffusion.k_sampler")
    choices = spec.inputs_by_name["sampler"].allowed_choices()
    assert set(choices) == set(SAMPLERS)
    comfy = CLASSES["KSampler"].spec.inputs_by_name["sampler_name"].allowed_choices()
    assert [c for c in comfy if c in choices] == choices  # ComfyUI's order


def test_the_native_node_runs_in_a_graphflow_workflow(executor):
    result = executor.run(_workflow(), outputs=["ks"])
    assert result.ok, result.error
    samples = result.outputs["ks"]["latent"].samples
    assert samples.shape == (1, 4, 8, 8) and torch.isfinite(samples).all()
    again = executor.run(_workflow(), outputs=["ks"]).outputs["ks"]["latent"].samples
    assert torch.equal(samples, again)


def test_an_unimplemented_sampler_is_refused_by_validation(executor):
    with pytest.raises(ValidationFailed, match="seeds_2"):
        executor.run(_workflow("seeds_2"), outputs=["ks"])
