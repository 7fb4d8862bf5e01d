"""The diffusion pack's values on the disk tier: prompts and latents round-trip through the
value codec (safetensors + JSON, no pickle); values holding a model stay memory-only."""

import pytest
import torch

from gf_diffusion.values import Conditioning, ConditioningEntry, ControlSpec, Latent
from graphflow import Unencodable
from graphflow.value_codec import decode_value, encode_value, pack, unpack


def round_trip(value):
    tree, tensors = encode_value(value)
    manifest, loaded = unpack(pack({"value": tree}, tensors))
    return decode_value(manifest["value"], loaded)


def test_a_regional_conditioning_round_trips_with_its_options():
    entry = ConditioningEntry(
        torch.randn(1, 77, 32), None, 1.0, area=(4, 4, 0, 2), strength=0.5,
        mask=torch.rand(1, 8, 8), timestep_range=(0.0, 0.4),
    )  # fmt: skip
    back = round_trip(Conditioning([entry]))
    assert isinstance(back, Conditioning) and isinstance(back.entries[0], ConditioningEntry)
    got = back.entries[0]
    assert torch.equal(got.embeds, entry.embeds) and torch.equal(got.mask, entry.mask)
    assert got.area == (4, 4, 0, 2) and got.strength == 0.5
    assert tuple(got.timestep_range) == (0.0, 0.4)


def test_a_latent_with_a_noise_mask_and_batch_index_round_trips():
    latent = Latent(torch.randn(2, 4, 4, 4), None, 0.18215, 0.0, 8, torch.ones(1, 4, 4), [3, 5])
    back = round_trip(latent)
    assert isinstance(back, Latent) and torch.equal(back.samples, latent.samples)
    assert back.batch_index == [3, 5] and torch.equal(back.noise_mask, latent.noise_mask)
    assert back.scaling_factor == pytest.approx(0.18215)


def test_a_vae_posterior_round_trips_once_vae_encode_registered_it():
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    from gf_diffusion.values import register_posterior_codec

    posterior = DiagonalGaussianDistribution(torch.randn(1, 8, 4, 4))
    register_posterior_codec(posterior)
    back = round_trip(Latent(posterior.mode(), posterior))
    assert torch.equal(back.posterior.mean, posterior.mean)
    assert torch.equal(back.posterior.std, posterior.std)


def test_a_conditioning_steered_by_a_controlnet_stays_in_memory():
    spec = ControlSpec(model=object(), kind="controlnet", hint=torch.zeros(1, 8, 8, 3))
    entry = ConditioningEntry(torch.zeros(1, 77, 32), controls=(spec,))
    with pytest.raises(Unencodable, match="model"):
        encode_value(Conditioning([entry]))
