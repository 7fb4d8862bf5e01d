"""InstructPix2Pix nodes: loading an 8-channel checkpoint, the conditioning node's image
latent, what the two guidance scales and the image change, and the errors for wrong inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from tiny_ip2p import IP2P, PLAIN, ip2p_models_root, ip2p_workflow, tiny_picture
from tiny_models import loaded_checkpoint

from graphflow import Executor, Image, node
from graphflow.events import Progress
from support import link, make_workflow, registry_with

PICTURES = {"first": tiny_picture(seed=3), "second": tiny_picture(seed=4)}


@node("test.image")
def first_picture() -> Image:
    """The first picture to edit."""
    return PICTURES["first"]


@node("test.other_image")
def second_picture() -> Image:
    """Another picture."""
    return PICTURES["second"]


@node("test.odd_image")
def odd_picture() -> Image:
    """A picture whose sides are not multiples of the VAE's factor."""
    return torch.rand(1, 31, 32, 3)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHFLOW_MODELS", str(ip2p_models_root(tmp_path_factory)))
        patch.setenv("GRAPHFLOW_DEVICE", "cpu")
        yield registry_with(first_picture, second_picture, odd_picture)


@pytest.fixture(scope="module")
def executor(registry):
    """One executor for the module: the checkpoints load once."""
    return Executor(registry)


@pytest.fixture(scope="module")
def base_image(executor):
    """The default edit (guidance 7.5, image guidance 1.5, the first picture)."""
    return run_image(executor)


def run_image(executor, **inputs):
    result = executor.run(ip2p_workflow(steps=3, **inputs), outputs=["decode"])
    assert result.ok, result.error
    return result.outputs["decode"]["image"].cpu().numpy()


def failure(executor, workflow) -> tuple[str, str]:
    result = executor.run(workflow, outputs=["decode"])
    assert result.status == "failed"
    return result.error.node, str(result.error.message)


# --- loading ---


def test_folder_and_single_file_load_as_an_8_channel_unet(registry):
    for name in (IP2P, f"{IP2P}.safetensors"):
        loaded = loaded_checkpoint(registry, name)
        assert loaded["model"].unpatched.config.in_channels == 8
        assert loaded["vae"].unpatched.config.latent_channels == 4


@pytest.mark.slow
def test_single_file_gives_the_folders_image(executor, base_image):
    folder = base_image
    single = run_image(executor, checkpoint=f"{IP2P}.safetensors")
    assert np.abs(folder - single).max() < 1e-5


def test_an_8_channel_file_is_detected_as_instruct_pix2pix(tmp_path_factory, monkeypatch):
    from gf_diffusion import detect

    kinds = tuple(dataclasses.replace(k, sizes=None) for k in detect.KINDS)
    monkeypatch.setattr(detect, "KINDS", kinds)  # the tiny file has no full-size shapes
    path = ip2p_models_root(tmp_path_factory) / "checkpoints" / f"{IP2P}.safetensors"
    assert detect.checkpoint_family(path).name == "sd1-instruct-pix2pix"


# --- the conditioning node ---


def _conditioning_outputs(registry):
    from gf_diffusion.ip2p import instruct_pix2pix_conditioning
    from gf_diffusion.values import Conditioning, ConditioningEntry

    loaded = loaded_checkpoint(registry, IP2P)
    positive = Conditioning([ConditioningEntry(torch.randn(1, 77, 32))])
    negative = Conditioning([ConditioningEntry(torch.randn(1, 77, 32), weight=0.5)])
    outputs = instruct_pix2pix_conditioning.function(
        positive=positive, negative=negative, vae=loaded["vae"], image=PICTURES["first"]
    )
    return loaded, (positive, negative), outputs


def test_conditioning_carries_the_unscaled_posterior_mode_on_both_prompts(registry):
    loaded, inputs, (positive, negative, latent) = _conditioning_outputs(registry)
    vae = loaded["vae"].unpatched
    with torch.no_grad():
        pixels = PICTURES["first"].permute(0, 3, 1, 2) * 2 - 1
        expected = vae.encode(pixels).latent_dist.mode()
    for entry in (*positive.entries, *negative.entries):
        assert torch.equal(entry.concat_latent, expected)  # not × scaling_factor
    assert negative.entries[0].weight == 0.5  # the rest of each entry is kept
    assert torch.equal(positive.entries[0].embeds, inputs[0].entries[0].embeds)
    assert all(e.concat_latent is None for c in inputs for e in c.entries)  # inputs untouched
    assert latent.samples.shape == (1, 4, 16, 16) and not latent.samples.any()
    assert latent.scaling_factor == vae.config.scaling_factor and latent.downscale == 2


# --- what the scales and the image do ---


@pytest.mark.slow
def test_image_guidance_scale_changes_the_result(executor, base_image):
    keeps = base_image
    plain = run_image(executor, image_guidance_scale=1.0)
    assert np.abs(keeps - plain).max() > 1e-2


@pytest.mark.slow
def test_text_guidance_scale_changes_the_result(executor, base_image):
    strong = base_image
    weak = run_image(executor, guidance_scale=3.0)
    assert np.abs(strong - weak).max() > 1e-2


@pytest.mark.slow
def test_the_image_changes_the_result_and_the_seed_repeats_it(executor, base_image):
    first = base_image
    other = run_image(executor, image_node="test.other_image")
    assert np.abs(first - other).max() > 1e-2
    executor.cache.clear()
    assert np.array_equal(first, run_image(executor))  # same seed, computed again


@pytest.mark.slow
def test_progress_is_reported_per_step(executor):
    steps = []

    def observe(event):
        if isinstance(event, Progress) and event.node == "sample":
            steps.append((event.value, event.total))

    result = executor.run(ip2p_workflow(steps=2), outputs=["decode"], observers=[observe])
    assert result.ok, result.error
    assert steps == [(1, 2), (2, 2)]


@pytest.mark.slow
def test_interrupt_stops_sampling_within_one_step(executor):
    seen = []

    def stop_at_step_2(event):
        if isinstance(event, Progress) and event.node == "sample":
            seen.append(event.value)
            if event.value == 2:
                executor.interrupt()

    workflow = ip2p_workflow(steps=10, seed=99)
    result = executor.run(workflow, outputs=["decode"], observers=[stop_at_step_2])
    assert result.status == "interrupted" and seen == [1, 2]
    assert "sample" not in result.executed


# --- errors ---


def test_a_plain_checkpoint_is_refused_by_the_ip2p_sampler(executor):
    where, message = failure(executor, ip2p_workflow(checkpoint=PLAIN))
    assert where == "sample"
    assert "4 input channels" in message and "InstructPix2Pix checkpoint" in message
    assert "diffusion.sampler" in message


def test_prompts_without_the_image_are_refused(executor):
    workflow = _sampling(ip2p_workflow(), "positive", link("pos", "conditioning"))
    where, message = failure(executor, workflow)
    assert where == "sample"
    assert "carries no image" in message and "instruct_pix2pix_conditioning" in message


def test_a_latent_of_another_size_is_refused(executor):
    empty = ("diffusion.empty_latent", {"width": 64, "height": 64, "vae": link("ckpt", "vae")})
    workflow = _sampling(ip2p_workflow(), "latent", link("empty", "latent"), empty=empty)
    where, message = failure(executor, workflow)
    assert where == "sample" and "image latent is (1, 4, 16, 16)" in message


def test_image_sides_must_fit_the_vae(executor):
    where, message = failure(executor, ip2p_workflow(image_node="test.odd_image"))
    assert where == "cond" and "multiples of 2" in message


def _sampling(workflow, name: str, value, **extra_nodes):
    """``workflow`` whose sampler's input ``name`` is ``value``, with ``extra_nodes`` added."""
    nodes = {k: (v.type, _literal(v.inputs)) for k, v in workflow.nodes.items()}
    nodes.update(extra_nodes)
    nodes["sample"][1][name] = value
    return make_workflow(nodes)


def _literal(inputs) -> dict:
    return {k: ({"link": list(v.link)} if hasattr(v, "link") else v) for k, v in inputs.items()}
