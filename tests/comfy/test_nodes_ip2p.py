"""ComfyUI's InstructPixToPixConditioning (gf_comfy/nodes_ip2p.py): its spec, ComfyUI's
cropping and unscaled image latent on both prompts, and KSampler running an InstructPix2Pix
checkpoint with it (plain cfg, both prompts carrying the image, as ComfyUI)."""

from __future__ import annotations

import pytest
import torch
from tiny_ip2p import IP2P, ip2p_models_root, tiny_picture
from tiny_models import loaded_checkpoint

from gf_comfy.names import CLASSES
from gf_comfy.object_info import object_info_for
from gf_diffusion.ip2p import instruct_pix2pix_conditioning
from gf_diffusion.values import Conditioning, ConditioningEntry
from graphflow import Executor, Image, node
from support import link, make_workflow, registry_with

CONDITION = CLASSES["InstructPixToPixConditioning"].spec.function
PICTURES = {"first": tiny_picture(seed=3), "second": tiny_picture(seed=4)}


@node("test.image")
def first_picture() -> Image:
    """The first picture to edit."""
    return PICTURES["first"]


@node("test.other_image")
def second_picture() -> Image:
    """Another picture."""
    return PICTURES["second"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHFLOW_MODELS", str(ip2p_models_root(tmp_path_factory)))
        patch.setenv("GRAPHFLOW_DEVICE", "cpu")
        yield registry_with(first_picture, second_picture)


@pytest.fixture(scope="module")
def ip2p(registry):
    return loaded_checkpoint(registry, IP2P)


def _prompts(seed: int = 0) -> tuple[Conditioning, Conditioning]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(
        Conditioning([ConditioningEntry(torch.randn(1, 77, 32, generator=generator))])
        for _ in range(2)
    )


def test_spec_is_comfyuis(registry):
    info = object_info_for(registry, "InstructPixToPixConditioning")["InstructPixToPixConditioning"]
    assert info["category"] == "conditioning/instructpix2pix"
    assert info["input_order"] == {"required": ["positive", "negative", "vae", "pixels"]}
    required = info["input"]["required"]
    assert [required[k] for k in ("positive", "negative", "vae", "pixels")] == [
        ["CONDITIONING"], ["CONDITIONING"], ["VAE"], ["IMAGE"],
    ]  # fmt: skip
    assert info["output"] == ["CONDITIONING", "CONDITIONING", "LATENT"]
    assert info["output_name"] == ["positive", "negative", "latent"]


def test_both_prompts_carry_the_unscaled_latent_of_the_cropped_image(ip2p):
    positive, negative = _prompts()
    pixels = torch.rand(1, 37, 42, 3)  # cut to 32×40, offsets (2, 1) as ComfyUI cuts
    out_pos, out_neg, latent = CONDITION(
        positive=positive, negative=negative, vae=ip2p["vae"], pixels=pixels
    )
    with torch.no_grad():
        cropped = pixels[:, 2:34, 1:41].permute(0, 3, 1, 2) * 2 - 1
        expected = ip2p["vae"].unpatched.encode(cropped).latent_dist.mode()
    for entry in (*out_pos.entries, *out_neg.entries):
        assert torch.allclose(entry.concat_latent, expected, atol=1e-6)
    assert torch.equal(out_pos.entries[0].embeds, positive.entries[0].embeds)
    assert positive.entries[0].concat_latent is None  # the inputs are not changed
    assert latent.samples.shape == (1, 4, 16, 20) and not latent.samples.any()


def test_equals_graphflows_own_node_on_an_image_of_whole_blocks(ip2p):
    positive, negative = _prompts()
    ours = CONDITION(
        positive=positive, negative=negative, vae=ip2p["vae"], pixels=PICTURES["first"]
    )
    native = instruct_pix2pix_conditioning.function(
        positive=positive, negative=negative, vae=ip2p["vae"], image=PICTURES["first"]
    )
    for mine, theirs in zip(ours[:2], native[:2], strict=True):
        assert torch.equal(mine.entries[0].concat_latent, theirs.entries[0].concat_latent)
    assert torch.equal(ours[2].samples, native[2].samples)


def _ksampler_workflow(image_node: str = "test.image", cfg: float = 6.0):
    text = {"clip": link("ckpt", "clip")}
    return make_workflow(
        {
            "ckpt": ("comfy.checkpoint_loader_simple", {"ckpt_name": IP2P}),
            "pos": ("comfy.clip_text_encode", {"text": "make it red", **text}),
            "neg": ("comfy.clip_text_encode", {"text": "", **text}),
            "image": (image_node, {}),
            "ip2p": (
                "comfy.instruct_pix_to_pix_conditioning",
                {
                    "positive": link("pos", "conditioning"),
                    "negative": link("neg", "conditioning"),
                    "vae": link("ckpt", "vae"),
                    "pixels": link("image", "image"),
                },
            ),
            "ks": (
                "comfy.k_sampler",
                {
                    "model": link("ckpt", "model"),
                    "seed": 7,
                    "steps": 3,
                    "cfg": cfg,
                    "sampler_name": "euler",
                    "scheduler": "normal",
                    "positive": link("ip2p", "positive"),
                    "negative": link("ip2p", "negative"),
                    "latent_image": link("ip2p", "latent"),
                    "denoise": 1.0,
                },
            ),
            "decode": (
                "comfy.vae_decode",
                {"samples": link("ks", "latent"), "vae": link("ckpt", "vae")},
            ),
            "show": ("core.show", {"value": link("decode", "image")}),
        }
    )


def _ksampled(executor, **inputs):
    result = executor.run(_ksampler_workflow(**inputs), outputs=["decode"])
    assert result.ok, result.error
    return result.outputs["decode"]["image"]


@pytest.mark.slow
def test_ksampler_runs_an_ip2p_checkpoint_and_the_image_steers_it(registry):
    executor = Executor(registry)
    first = _ksampled(executor)
    assert first.shape == (1, 32, 32, 3) and torch.isfinite(first).all()
    other = _ksampled(executor, image_node="test.other_image")
    assert (first - other).abs().max() > 1e-2
    executor.cache.clear()
    assert torch.equal(first, _ksampled(executor))  # same seed, same image
