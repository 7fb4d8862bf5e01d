"""Diffusion nodes one by one: validation errors, tokens, conditioning, latents, VAE tiling."""

from __future__ import annotations

import pytest
import torch
from tiny_models import loader_workflow

from graphflow import ErrorCode, Executor, load_plugins, validate
from support import link, make_workflow


@pytest.fixture
def registry(models):
    return load_plugins().registry


def test_missing_checkpoint_is_a_validation_error_listing_available(registry):
    _, errors = validate(loader_workflow(checkpoint="nope.safetensors"), registry)
    assert [(e.code, e.input) for e in errors] == [(ErrorCode.NOT_IN_CHOICES, "checkpoint")]
    assert "tiny-sd" in errors[0].message


def test_pickle_checkpoint_needs_opt_in(registry, models):
    (models / "checkpoints" / "old.ckpt").write_bytes(b"not really a pickle")
    (models / "checkpoints" / "old").symlink_to(models / "checkpoints" / "tiny-sd")  # its config
    try:
        _, errors = validate(loader_workflow(checkpoint="old.ckpt"), registry)
        assert [(e.code, e.input) for e in errors] == [(ErrorCode.INVALID_INPUT, "checkpoint")]
        assert "pickle" in errors[0].message and "allow_pickle" in errors[0].message
        _, errors = validate(loader_workflow(checkpoint="old.ckpt", allow_pickle=True), registry)
        assert errors == []
    finally:
        (models / "checkpoints" / "old.ckpt").unlink()
        (models / "checkpoints" / "old").unlink()


def test_single_file_without_config_folder_is_a_validation_error(registry, models):
    import shutil

    target = models / "checkpoints" / "alone.safetensors"
    shutil.copy(models / "loose" / "alone.safetensors", target)
    try:
        _, errors = validate(loader_workflow(checkpoint="alone.safetensors"), registry)
        assert [(e.code, e.input) for e in errors] == [(ErrorCode.INVALID_INPUT, "config")]
        assert "needs a diffusers config folder" in errors[0].message
    finally:
        target.unlink()


def test_latent_size_not_multiple_of_8_is_a_validation_error(registry):
    workflow = make_workflow(
        {
            "empty": ("diffusion.empty_latent", {"width": 100, "height": 64}),
            "show": ("core.show", {"value": link("empty", "latent")}),
        }
    )
    _, errors = validate(workflow, registry)
    assert [(e.code, e.input) for e in errors] == [(ErrorCode.INVALID_INPUT, "width")]
    assert "multiple of 8" in errors[0].message


def load_parts(registry):
    result = Executor(registry).run(loader_workflow(), outputs=["ckpt"])
    assert result.ok, result.error
    return result.outputs["ckpt"]


def test_tokenize_shows_tokens_and_chunks_long_prompts(registry):
    tokenizer = load_parts(registry)["tokenizer"]
    spec = registry["diffusion.tokenize"]
    short = spec.function(text="a red cat", tokenizer=tokenizer)
    assert short.ui["tokens"] == [
        "<|startoftext|>",
        "a</w>",
        "re",
        "d</w>",
        "cat</w>",
        "<|endoftext|>",
    ]
    assert "warnings" not in short.ui
    long = spec.function(text="cat " * 100, tokenizer=tokenizer)
    # Nothing is cut any more: 100 tokens are two chunks of 77 (75 + 25 content tokens).
    assert long.outputs.per_tokenizer[0].truncated == 0
    assert long.outputs.per_tokenizer[0].input_ids.shape == (2, 77)
    assert long.ui["tokens"].count("cat</w>") == 100
    assert "warnings" not in long.ui


def encode(registry, parts, text):
    tokens = registry["diffusion.tokenize"].function(text=text, tokenizer=parts["tokenizer"])
    return registry["diffusion.encode_text"].function(
        tokens=tokens.outputs, text_encoder=parts["text_encoder"]
    )


def sample(registry, parts, positive, negative, scheduler="ddim", **options):
    """Run the sampler node on a 32×32 empty latent of the tiny model."""
    latent = registry["diffusion.empty_latent"].function(width=32, height=32, vae=parts["vae"])
    sched = registry["diffusion.scheduler"].function(scheduler=parts["scheduler"], name=scheduler)
    return registry["diffusion.sampler"].function(
        model=parts["model"],
        positive=positive,
        negative=negative,
        latent=latent,
        scheduler=sched,
        **options,
    )


def test_clip_skip_uses_an_earlier_layer(registry):
    parts = load_parts(registry)
    tokens = registry["diffusion.tokenize"].function(text="a cat", tokenizer=parts["tokenizer"])
    encode_text = registry["diffusion.encode_text"].function
    last = encode_text(tokens=tokens.outputs, text_encoder=parts["text_encoder"], clip_skip=0)
    skipped = encode_text(tokens=tokens.outputs, text_encoder=parts["text_encoder"], clip_skip=1)
    assert last.entries[0].embeds.shape == skipped.entries[0].embeds.shape == (1, 77, 32)
    assert not torch.allclose(last.entries[0].embeds, skipped.entries[0].embeds)


def test_combine_and_average_conditioning(registry):
    parts = load_parts(registry)
    cat, dog = encode(registry, parts, "a cat"), encode(registry, parts, "a dog")
    combined = registry["diffusion.combine_conditioning"].function(a=cat, b=dog)
    assert len(combined.entries) == 2
    average = registry["diffusion.average_conditioning"].function(a=cat, b=dog, weight_a=0.25)
    expected = 0.25 * cat.entries[0].embeds + 0.75 * dog.entries[0].embeds
    assert torch.allclose(average.entries[0].embeds, expected)


def test_combined_conditioning_of_one_prompt_twice_equals_the_prompt(registry):
    parts = load_parts(registry)
    cat, empty = encode(registry, parts, "a cat"), encode(registry, parts, "")
    twice = registry["diffusion.combine_conditioning"].function(a=cat, b=cat)
    one = sample(registry, parts, cat, empty, seed=3, steps=3).samples
    two = sample(registry, parts, twice, empty, seed=3, steps=3).samples
    assert torch.allclose(one, two, atol=1e-5)


def test_dynamic_thresholding_changes_high_cfg_result_and_stays_finite(registry):
    parts = load_parts(registry)
    cat, empty = encode(registry, parts, "a cat"), encode(registry, parts, "")
    plain = sample(registry, parts, cat, empty, seed=3, steps=3, cfg=25.0).samples
    clipped = sample(
        registry, parts, cat, empty, seed=3, steps=3, cfg=25.0, dynamic_threshold_percentile=0.9
    ).samples
    assert torch.isfinite(clipped).all()
    assert not torch.allclose(plain, clipped)


def test_dynamic_threshold_clips_x0_into_unit_range():
    from gf_diffusion.sampler import dynamic_threshold

    torch.manual_seed(0)
    x_t, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8) * 5
    alpha_bar = 0.5
    new_eps = dynamic_threshold(eps, x_t, alpha_bar, 0.95, "epsilon")
    x0 = (x_t - (1 - alpha_bar) ** 0.5 * new_eps) / alpha_bar**0.5
    assert x0.abs().max() <= 1.0 + 1e-5


def test_interpolate_latents_endpoints_and_norm(registry):
    from gf_diffusion.values import Latent

    torch.manual_seed(0)
    a, b = Latent(torch.randn(1, 4, 8, 8)), Latent(torch.randn(1, 4, 8, 8))
    walk = registry["diffusion.interpolate_latents"].function
    assert torch.allclose(walk(a=a, b=b, t=0.0).samples, a.samples, atol=1e-5)
    assert torch.allclose(walk(a=a, b=b, t=1.0).samples, b.samples, atol=1e-5)
    middle = walk(a=a, b=b, t=0.5).samples
    lerped = walk(a=a, b=b, t=0.5, method="lerp").samples
    assert middle.norm() > lerped.norm()  # slerp keeps Gaussian latents' norm, lerp shrinks it


def test_vae_decode_tiles_large_images_and_restores_the_vae(registry):
    parts = load_parts(registry)
    vae = parts["vae"]
    decode = registry["diffusion.vae_decode"].function
    latent = registry["diffusion.empty_latent"].function(width=64, height=64, vae=vae)
    latent.samples = torch.randn_like(latent.samples)
    calls = []
    hook = vae.unpatched.decoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        whole = decode(vae=vae, latent=latent, tiling="off")
        assert len(calls) == 1
        calls.clear()
        tiled = decode(vae=vae, latent=latent, tiling="auto", tile_size=32)
        assert len(calls) > 1
    finally:
        hook.remove()
    assert tiled.shape == whole.shape == (1, 64, 64, 3)
    assert vae.unpatched.use_tiling is False and vae.unpatched.tile_sample_min_size == 32
    assert (tiled - whole).abs().mean() < 0.1


def test_vae_encode_then_decode_keeps_the_shape(registry):
    parts = load_parts(registry)
    image = torch.rand(2, 32, 32, 3)
    latent = registry["diffusion.vae_encode"].function(vae=parts["vae"], image=image)
    assert latent.samples.shape == (2, 4, 16, 16) and latent.posterior is not None
    mean = registry["diffusion.vae_encode"].function(vae=parts["vae"], image=image, mode="mean")
    assert mean.posterior is None
    back = registry["diffusion.vae_decode"].function(vae=parts["vae"], latent=latent)
    assert back.shape == image.shape


@pytest.mark.parametrize(
    "name", sorted(__import__("gf_diffusion.schedulers").schedulers.SCHEDULERS)
)
def test_every_scheduler_samples_finite_latents(registry, name):
    parts = load_parts(registry)
    cat, empty = encode(registry, parts, "a cat"), encode(registry, parts, "")
    out = sample(registry, parts, cat, empty, scheduler=name, seed=1, steps=3)
    assert out.samples.shape == (1, 4, 16, 16) and torch.isfinite(out.samples).all()


def test_attention_choice_switches_processors_per_run_with_the_same_image(registry):
    from gf_diffusion.attention_processor import GraphflowAttnProcessor

    executor = Executor(registry)
    images, kinds = {}, {}
    for choice in ("graphflow", "diffusers", "graphflow"):
        workflow = loader_workflow(attention=choice)
        parts = executor.run(workflow, outputs=["ckpt"]).outputs["ckpt"]
        kinds[choice] = {type(p) for p in parts["model"].unpatched.attn_processors.values()}
        cat, empty = encode(registry, parts, "a cat"), encode(registry, parts, "")
        images[choice] = sample(registry, parts, cat, empty, seed=5, steps=2).samples
    assert kinds["graphflow"] == {GraphflowAttnProcessor}
    assert GraphflowAttnProcessor not in kinds["diffusers"]
    assert torch.allclose(images["graphflow"], images["diffusers"], atol=1e-5)


def test_average_conditioning_keeps_each_entrys_options(registry):
    import dataclasses

    parts = load_parts(registry)
    cat, dog = encode(registry, parts, "a cat"), encode(registry, parts, "a dog")
    mask = torch.ones(1, 4, 4)
    regional = dataclasses.replace(cat.entries[0], mask=mask, timestep_range=(0.0, 0.5))
    two = type(cat)([regional, cat.entries[0]])
    average = registry["diffusion.average_conditioning"].function(a=two, b=dog, weight_a=0.5)
    assert len(average.entries) == 2
    assert average.entries[0].mask is mask and average.entries[0].timestep_range == (0.0, 0.5)
    expected = 0.5 * cat.entries[0].embeds + 0.5 * dog.entries[0].embeds
    assert all(torch.allclose(entry.embeds, expected) for entry in average.entries)


def test_an_item_taken_from_a_batch_samples_as_it_did_in_the_batch(registry):
    parts = load_parts(registry)
    cat, empty = encode(registry, parts, "a cat"), encode(registry, parts, "")
    latent = registry["diffusion.empty_latent"].function(
        width=32, height=32, vae=parts["vae"], batch_size=3
    )
    sched = registry["diffusion.scheduler"].function(scheduler=parts["scheduler"], name="ddim")
    run = registry["diffusion.sampler"].function
    options = dict(model=parts["model"], positive=cat, negative=empty, scheduler=sched, seed=5)
    whole = run(latent=latent, steps=2, **options).samples
    third = registry["diffusion.latent_from_batch"].function(latent, 2, 1)
    alone = run(latent=third, steps=2, **options).samples
    assert torch.allclose(alone[0], whole[2], atol=1e-4)  # batched matmuls differ ~1e-5
    assert not torch.allclose(alone[0], whole[0], atol=1e-3)
