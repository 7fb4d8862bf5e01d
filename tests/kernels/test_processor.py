"""GraphflowAttnProcessor reproduces diffusers' attention.

install_attention_processor swaps it in and out of whole models.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.attention_processor import (
    Attention,
    AttnAddedKVProcessor2_0,
    AttnProcessor,
    AttnProcessor2_0,
)

from gf_diffusion.attention_processor import GraphflowAttnProcessor, install_attention_processor
from graphflow.kernels.attention import set_attention_backend

ATOL = 1e-5


def tiny_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    ).eval()


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=16,
    ).eval()


def attention_modules(model: torch.nn.Module) -> list[Attention]:
    return [m for m in model.modules() if isinstance(m, Attention)]


def unet_inputs(batch: int = 2):
    gen = torch.Generator().manual_seed(1)
    sample = torch.randn(batch, 4, 8, 8, generator=gen)
    text = torch.randn(batch, 7, 32, generator=gen)
    return sample, torch.tensor([10, 500][:batch]), text


@torch.no_grad()
def test_unet_output_matches_default_processor():
    unet = tiny_unet()
    sample, t, text = unet_inputs()
    expected = unet(sample, t, encoder_hidden_states=text).sample
    install_attention_processor(unet, enabled=True)
    actual = unet(sample, t, encoder_hidden_states=text).sample
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@torch.no_grad()
def test_unet_with_text_padding_mask_matches_default_processor():
    unet = tiny_unet()
    sample, t, text = unet_inputs()
    keep = torch.ones(2, 7)
    keep[1, 4:] = 0  # second prompt is shorter
    expected = unet(sample, t, encoder_hidden_states=text, encoder_attention_mask=keep).sample
    install_attention_processor(unet, enabled=True)
    actual = unet(sample, t, encoder_hidden_states=text, encoder_attention_mask=keep).sample
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@torch.no_grad()
def test_vae_round_trip_matches_default_processor():
    vae = tiny_vae()
    image = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    expected = vae(image, sample_posterior=False).sample
    install_attention_processor(vae, enabled=True)
    actual = vae(image, sample_posterior=False).sample
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.triton_interpret
@torch.no_grad()
def test_unet_through_triton_kernel_matches_default_processor(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    unet = tiny_unet()
    sample, t, text = unet_inputs(batch=1)
    expected = unet(sample, t, encoder_hidden_states=text).sample
    install_attention_processor(unet, enabled=True)
    set_attention_backend("triton")
    actual = unet(sample, t, encoder_hidden_states=text).sample
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


@pytest.mark.triton_interpret
@torch.no_grad()
def test_unet_text_mask_through_triton_kernel_matches_default_processor(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    unet = tiny_unet()
    sample, t, text = unet_inputs(batch=2)
    keep = torch.ones(2, 7)
    keep[1, 4:] = 0
    expected = unet(sample, t, encoder_hidden_states=text, encoder_attention_mask=keep).sample
    install_attention_processor(unet, enabled=True)
    set_attention_backend("triton")
    actual = unet(sample, t, encoder_hidden_states=text, encoder_attention_mask=keep).sample
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


@pytest.mark.triton_interpret
@torch.no_grad()
def test_vae_through_triton_kernel_matches_default_processor(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    vae = tiny_vae()
    image = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    expected = vae(image, sample_posterior=False).sample
    install_attention_processor(vae, enabled=True)
    set_attention_backend("triton")
    actual = vae(image, sample_posterior=False).sample
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


# Attention configurations diffusers models use, each compared with AttnProcessor2_0.
MODULE_CASES = {
    "self": (dict(query_dim=32, heads=2, dim_head=16), {}),
    "cross": (dict(query_dim=32, cross_attention_dim=24, heads=2, dim_head=16), {"context": 24}),
    "cross-layer-norm": (
        dict(
            query_dim=32,
            cross_attention_dim=24,
            heads=2,
            dim_head=16,
            cross_attention_norm="layer_norm",
        ),
        {"context": 24},
    ),
    "cross-group-norm": (
        dict(
            query_dim=32,
            cross_attention_dim=32,
            heads=2,
            dim_head=16,
            cross_attention_norm="group_norm",
            cross_attention_norm_num_groups=8,
        ),
        {"context": 32},
    ),
    "qk-layer-norm": (dict(query_dim=32, heads=2, dim_head=16, qk_norm="layer_norm"), {}),
    "image-groupnorm-residual-rescale": (
        dict(
            query_dim=32,
            heads=1,
            dim_head=32,
            norm_num_groups=8,
            residual_connection=True,
            rescale_output_factor=2.0,
            bias=True,
        ),
        {"image": True},
    ),
    "image-spatial-norm": (
        dict(query_dim=32, heads=2, dim_head=16, spatial_norm_dim=4, residual_connection=True),
        {"image": True, "temb": True},
    ),
    "mask-batch-keys": (
        dict(query_dim=32, cross_attention_dim=24, heads=2, dim_head=16),
        {"context": 24, "mask": (2, 7)},
    ),
    "mask-batch-query-keys": (
        dict(query_dim=32, cross_attention_dim=24, heads=2, dim_head=16),
        {"context": 24, "mask": (2, 20, 7)},
    ),
    "mask-per-head": (
        dict(query_dim=32, cross_attention_dim=24, heads=2, dim_head=16),
        {"context": 24, "mask": (4, 20, 7)},
    ),
}


@pytest.mark.parametrize("case", list(MODULE_CASES))
@torch.no_grad()
def test_attention_module_matches_attn_processor_2_0(case):
    module_kwargs, inputs = MODULE_CASES[case]
    torch.manual_seed(0)
    attn = Attention(**module_kwargs).eval()
    gen = torch.Generator().manual_seed(3)
    if inputs.get("image"):
        hidden = torch.randn(2, 32, 4, 5, generator=gen)
    else:
        hidden = torch.randn(2, 20, 32, generator=gen)
    kwargs = {}
    if "context" in inputs:
        kwargs["encoder_hidden_states"] = torch.randn(2, 7, inputs["context"], generator=gen)
    if "mask" in inputs:
        kwargs["attention_mask"] = torch.randn(inputs["mask"], generator=gen) * 2
    if inputs.get("temb"):
        # SpatialNorm conditions on a (B, C_z, h, w) latent.
        kwargs["temb"] = torch.randn(2, 4, 2, 2, generator=gen)

    attn.set_processor(AttnProcessor2_0())
    expected = attn(hidden, **kwargs)
    attn.set_processor(GraphflowAttnProcessor())
    actual = attn(hidden, **kwargs)
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@torch.no_grad()
def test_module_scale_is_honoured_when_scale_qk_is_false():
    # AttnProcessor2_0 ignores attn.scale; the classic AttnProcessor uses it, as do we.
    torch.manual_seed(0)
    attn = Attention(query_dim=32, heads=2, dim_head=16, scale_qk=False).eval()
    hidden = torch.randn(2, 20, 32, generator=torch.Generator().manual_seed(4))
    attn.set_processor(AttnProcessor())
    expected = attn(hidden)
    attn.set_processor(GraphflowAttnProcessor())
    torch.testing.assert_close(attn(hidden), expected, atol=ATOL, rtol=0)


def test_install_sets_processor_on_every_attention_module_and_counts_them():
    unet = tiny_unet()
    modules = attention_modules(unet)
    assert install_attention_processor(unet, enabled=True) == len(modules) > 0
    assert all(isinstance(m.processor, GraphflowAttnProcessor) for m in modules)


def test_install_is_idempotent():
    unet = tiny_unet()
    install_attention_processor(unet, enabled=True)
    assert install_attention_processor(unet, enabled=True) == 0


def test_disable_restores_attn_processor_2_0():
    vae = tiny_vae()
    enabled = install_attention_processor(vae, enabled=True)
    assert install_attention_processor(vae, enabled=False) == enabled
    assert all(type(m.processor) is AttnProcessor2_0 for m in attention_modules(vae))


def test_default_leaves_cpu_model_on_diffusers_processor():
    unet = tiny_unet()
    assert install_attention_processor(unet) == 0
    assert not any(isinstance(m.processor, GraphflowAttnProcessor) for m in attention_modules(unet))


def test_install_skips_modules_with_other_processors():
    unet = tiny_unet()
    special = attention_modules(unet)[0]
    special.set_processor(AttnAddedKVProcessor2_0())
    assert install_attention_processor(unet, enabled=True) == len(attention_modules(unet)) - 1
    assert type(special.processor) is AttnAddedKVProcessor2_0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_default_enables_on_cuda_model():
    unet = tiny_unet().cuda()
    assert install_attention_processor(unet) == len(attention_modules(unet))
