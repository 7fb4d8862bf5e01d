"""Affinity keys: which models a workflow loads, found without naming node ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serverkit import chain

from graphflow import load_plugins
from graphflow.distributed.affinity import affinity_keys, cache_signatures, loads_model
from graphflow.graph import build_graph
from graphflow.workflow import workflow_from_dict

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def registry():
    """The installed packs."""
    return load_plugins().registry


def txt2img(checkpoint: str = "graphflow-tiny", seed: int = 0) -> dict:
    """The shipped txt2img workflow with a checkpoint and seed."""
    workflow = json.loads((ROOT / "workflows" / "txt2img.json").read_text())
    workflow["nodes"]["ckpt"]["inputs"]["checkpoint"] = checkpoint
    workflow["nodes"]["sampler"]["inputs"]["seed"] = seed
    return workflow


def keys_of(registry, workflow: dict) -> dict[str, str]:
    """The affinity keys of a workflow document."""
    validated = build_graph(workflow_from_dict(workflow), registry)
    return affinity_keys(validated, model_types=registry.types.model_types())


def test_checkpoint_and_upscaler_loaders_load_models_and_samplers_do_not(registry):
    models = registry.types.model_types()
    assert loads_model(registry["diffusion.load_checkpoint"], models)
    assert loads_model(registry["image.load_upscale_model"], models)
    assert not loads_model(registry["diffusion.sampler"], models)
    assert not loads_model(registry["image.upscale_with_model"], models)
    assert not loads_model(registry["core.add"], models)


def test_a_plugins_own_model_type_counts_when_it_says_so(registry):
    # The image pack declares FAST_STYLE_MODEL with model=True: its loader gets affinity
    # although the core knows nothing about style networks.
    assert "FAST_STYLE_MODEL" in registry.types.model_types()
    assert "IMAGE" not in registry.types.model_types()
    assert loads_model(registry["image.load_fast_style_model"], registry.types.model_types())
    workflow = json.loads((ROOT / "workflows" / "fast_style.json").read_text())
    labels = list(keys_of(registry, workflow).values())
    assert len(labels) == 1 and labels[0].startswith("image.load_fast_style_model(")
    # Without the flag the same loader is invisible to the router.
    assert not loads_model(registry["image.load_fast_style_model"], {"MODEL", "VAE"})


def test_a_txt2img_job_is_keyed_by_its_checkpoint_loader(registry):
    keys = keys_of(registry, txt2img())
    assert list(keys.values()) == [
        "diffusion.load_checkpoint(checkpoint=graphflow-tiny, config=auto, dtype=auto, "
        "attention=auto)"
    ]


def test_jobs_differing_only_downstream_share_their_key(registry):
    assert keys_of(registry, txt2img(seed=1)) == keys_of(registry, txt2img(seed=2))


def test_a_workflow_without_model_loaders_has_no_affinity(registry):
    assert keys_of(registry, chain(3)) == {}


def test_the_worker_maps_each_key_to_the_loaders_cache_signature(registry):
    validated = build_graph(workflow_from_dict(txt2img()), registry)
    models = registry.types.model_types()
    signatures = cache_signatures(validated, model_types=models)
    assert set(signatures) == set(affinity_keys(validated, model_types=models))
    assert all(len(signature) == 32 for signature in signatures.values())
