"""Patched models in workflows: a patch never leaks into the shared resident UNet, equals a
hand-merged UNet, and an offloaded UNet is brought back for the sampler."""

from __future__ import annotations

import copy
import hashlib

import pytest
import torch

from gf_diffusion.types import Model
from graphflow import EventLog, Executor, Float, node
from graphflow.events import NodeFinished
from graphflow.runtime.handles import ModelHandle
from graphflow.runtime.models import ModelManager
from graphflow.runtime.patches import FullDelta, LowRankDelta, ModelPatch
from support import link, make_workflow, registry_with

CROSS_K = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"  # (64, 32)


def unet_patch() -> ModelPatch:
    """A fixed LoRA-like change of one cross-attention projection and a diff of conv_in."""
    generator = torch.Generator().manual_seed(0)
    return ModelPatch(
        {
            CROSS_K: LowRankDelta(
                torch.randn(64, 4, generator=generator),
                torch.randn(4, 32, generator=generator),
                alpha=1.0,
            ),
            "conv_in.weight": FullDelta(torch.randn(32, 4, 3, 3, generator=generator) * 0.05),
        },
        name="test-patch",
    )


@node("test.patch_unet", category="test")
def patch_unet(model: Model, strength: Float(-4.0, 4.0) = 1.0) -> Model:
    """The model with the fixed test patch at ``strength``."""
    return model.with_patches(unet_patch(), strength)


@node("test.merge_by_hand", category="test")
def merge_by_hand(model: Model, strength: Float(-4.0, 4.0) = 1.0) -> Model:
    """A separate copy of the UNet with the test patch added into its weights by hand."""
    merged = copy.deepcopy(model.unpatched)
    weights = dict(merged.named_parameters())
    with torch.no_grad():
        for key, change in unet_patch().changes.items():
            weight = weights[key]
            if isinstance(change, LowRankDelta):
                scale = change.alpha / change.down.shape[0]
                weight += (strength * scale) * (change.up @ change.down).reshape(weight.shape)
            else:
                weight += strength * change.diff
    return ModelHandle.of(merged, "merged by hand")


@node("test.vae_key_patch", category="test")
def vae_key_patch(model: Model) -> Model:
    """A patch naming a VAE weight, applied to the UNet (wrong model)."""
    return model.with_patches({"decoder.conv_out.weight": FullDelta(torch.zeros(3, 16, 3, 3))})


@pytest.fixture
def registry(models):
    return registry_with(patch_unet, merge_by_hand, vae_key_patch)


def txt2img(patch: tuple[str, dict] | None = None, seed: int = 3) -> object:
    """tiny-sd text-to-image; with ``patch``, the sampler's model goes through that node."""
    nodes = {
        "ckpt": ("diffusion.load_checkpoint", {"checkpoint": "tiny-sd"}),
        "tokens": ("diffusion.tokenize", {"text": "a cat", "tokenizer": link("ckpt", "tokenizer")}),
        "empty_tokens": (
            "diffusion.tokenize",
            {"text": "", "tokenizer": link("ckpt", "tokenizer")},
        ),
        "pos": (
            "diffusion.encode_text",
            {"tokens": link("tokens", "tokens"), "text_encoder": link("ckpt", "text_encoder")},
        ),
        "neg": (
            "diffusion.encode_text",
            {
                "tokens": link("empty_tokens", "tokens"),
                "text_encoder": link("ckpt", "text_encoder"),
            },
        ),
        "empty": (
            "diffusion.empty_latent",
            {"width": 32, "height": 32, "vae": link("ckpt", "vae")},
        ),
        "sample": (
            "diffusion.sampler",
            {
                "model": link("patch" if patch else "ckpt", "model"),
                "positive": link("pos", "conditioning"),
                "negative": link("neg", "conditioning"),
                "latent": link("empty", "latent"),
                "scheduler": link("ckpt", "scheduler"),
                "seed": seed,
                "steps": 3,
            },
        ),
        "decode": (
            "diffusion.vae_decode",
            {"vae": link("ckpt", "vae"), "latent": link("sample", "latent")},
        ),
        "show": ("core.show", {"value": link("decode", "image")}),
    }
    if patch:
        kind, inputs = patch
        nodes["patch"] = (kind, {"model": link("ckpt", "model"), **inputs})
    return make_workflow(nodes)


def image(executor, workflow) -> torch.Tensor:
    result = executor.run(workflow, outputs=["decode"])
    assert result.ok, result.error
    return result.outputs["decode"]["image"]


def unet_checksum(executor) -> str:
    """blake2b of every byte of the resident UNet's state dict."""
    unet = executor.run(txt2img(), outputs=["ckpt"]).outputs["ckpt"]["model"].unpatched
    digest = hashlib.blake2b()
    for name, tensor in sorted(unet.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def test_a_patched_workflow_leaves_the_shared_unpatched_model_bit_identical(registry):
    executor = Executor(registry)
    plain = image(executor, txt2img())
    before = unet_checksum(executor)
    patched = image(executor, txt2img(("test.patch_unet", {})))
    executor.cache.clear()  # the unpatched graph really runs again, on the same resident UNet
    again = image(executor, txt2img())
    assert executor.models.loads == 1
    assert (patched - plain).abs().max() > 1e-3
    assert torch.equal(again, plain)
    assert unet_checksum(executor) == before


def test_the_patched_sampler_equals_a_unet_with_the_delta_merged_by_hand(registry):
    executor = Executor(registry)
    patched = image(executor, txt2img(("test.patch_unet", {"strength": 0.8})))
    merged = image(executor, txt2img(("test.merge_by_hand", {"strength": 0.8})))
    torch.testing.assert_close(patched, merged, rtol=0, atol=1e-5)


def test_only_what_follows_a_changed_strength_runs_again(registry):
    log = EventLog()
    executor = Executor(registry, observers=[log])
    image(executor, txt2img(("test.patch_unet", {"strength": 0.5})))
    log.events.clear()
    image(executor, txt2img(("test.patch_unet", {"strength": 1.0})))
    assert sorted(log.nodes(NodeFinished)) == ["decode", "patch", "sample"]
    log.events.clear()
    image(executor, txt2img(("test.patch_unet", {"strength": 0.5})))
    assert log.nodes(NodeFinished) == []  # equal patches: the cached image


def test_a_patch_for_another_model_fails_the_run_with_a_message(registry):
    result = Executor(registry).run(txt2img(("test.vae_key_patch", {})), outputs=["decode"])
    assert result.status == "failed" and result.error.node == "sample"
    assert result.error.exception_type == "PatchError"
    assert "decoder.conv_out.weight" in result.error.message


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_an_offloaded_unet_is_taken_back_and_the_sampler_computes_on_the_run_device(
    registry, device
):
    expected = image(Executor(registry, device=device), txt2img())
    probe = Executor(registry, device=device)
    handle = probe.run(txt2img(), outputs=["ckpt"]).outputs["ckpt"]["model"]
    # a budget for the UNet alone: encoding the prompts pushes it out, the sampler takes it back
    models = ModelManager(max_bytes=handle.nbytes)
    executor = Executor(registry, device=device, models=models)
    unet = executor.run(txt2img(), outputs=["ckpt"]).outputs["ckpt"]["model"]
    seen = []

    def record(module, args):
        seen.append((args[0].device.type, next(module.parameters()).device.type))
        seen.append(models.resident_labels())

    executor.run(txt2img(), outputs=["pos"])
    assert unet.label not in models.resident_labels()  # offloaded before sampling
    hook = unet.unpatched.register_forward_pre_hook(record)
    try:
        result = image(executor, txt2img())
    finally:
        hook.remove()
    assert seen[0] == (device, device)
    assert unet.label in seen[1]
    torch.testing.assert_close(result, expected, rtol=0, atol=0)
