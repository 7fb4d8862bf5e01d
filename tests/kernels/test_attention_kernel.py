"""The Triton flash-attention kernel matches PyTorch SDPA (run in the interpreter)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.triton_interpret

FP32_ATOL = 1e-5


@pytest.fixture(scope="module")
def flash_attention():
    from graphflow.kernels import attention_triton

    if not attention_triton._INTERPRET:
        pytest.fail(
            "attention_triton was imported before TRITON_INTERPRET=1 was set (see conftest.py)"
        )
    return attention_triton.flash_attention


def qkv(
    b: int, h: int, nq: int, nk: int, d: int, dtype: torch.dtype = torch.float32, seed: int = 0
):
    gen = torch.Generator().manual_seed(seed)

    def rand(n: int) -> torch.Tensor:
        return torch.randn(b, h, n, d, generator=gen).to(dtype)

    return rand(nq), rand(nk), rand(nk)


def sdpa(q, k, v, mask=None, scale=None) -> torch.Tensor:
    """fp32 reference."""
    mask = mask.float() if mask is not None and mask.is_floating_point() else mask
    return F.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), attn_mask=mask, scale=scale
    )


def test_self_attention_matches_sdpa(flash_attention):
    q, k, v = qkv(1, 2, 64, 64, 32)
    torch.testing.assert_close(flash_attention(q, k, v), sdpa(q, k, v), atol=FP32_ATOL, rtol=0)


def test_cross_attention_with_ragged_last_key_block_matches_sdpa(flash_attention):
    # 24 keys = one full 16-key block plus a ragged block of 8.
    q, k, v = qkv(1, 2, 64, 24, 32)
    torch.testing.assert_close(flash_attention(q, k, v), sdpa(q, k, v), atol=FP32_ATOL, rtol=0)


def test_ragged_last_query_block_matches_sdpa(flash_attention):
    q, k, v = qkv(1, 2, 40, 64, 32)
    torch.testing.assert_close(flash_attention(q, k, v), sdpa(q, k, v), atol=FP32_ATOL, rtol=0)


def test_fewer_keys_than_one_block_matches_sdpa(flash_attention):
    q, k, v = qkv(1, 1, 16, 5, 32)
    torch.testing.assert_close(flash_attention(q, k, v), sdpa(q, k, v), atol=FP32_ATOL, rtol=0)


@pytest.mark.parametrize("head_dim", [8, 40, 80, 128, 160])
def test_head_dim_padded_to_power_of_two_matches_sdpa(flash_attention, head_dim):
    q, k, v = qkv(1, 2, 32, 24, head_dim)
    torch.testing.assert_close(flash_attention(q, k, v), sdpa(q, k, v), atol=FP32_ATOL, rtol=0)


@pytest.mark.parametrize(
    "mask_shape",
    [(2, 1, 1, 24), (2, 1, 40, 24), (2, 3, 40, 24), (40, 24)],
    ids=["per-batch-keys", "per-batch-query-key", "full", "unbatched"],
)
def test_additive_mask_broadcasts_like_sdpa(flash_attention, mask_shape):
    q, k, v = qkv(2, 3, 40, 24, 40)
    mask = torch.randn(mask_shape, generator=torch.Generator().manual_seed(1)) * 3
    out = flash_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, sdpa(q, k, v, mask), atol=FP32_ATOL, rtol=0)


def test_mask_with_minus_inf_entries_matches_sdpa(flash_attention):
    q, k, v = qkv(1, 2, 32, 24, 32)
    mask = torch.zeros(1, 1, 1, 24)
    mask[..., 20:] = float("-inf")  # e.g. padded text tokens
    out = flash_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, sdpa(q, k, v, mask), atol=FP32_ATOL, rtol=0)


def test_fully_masked_query_rows_give_zeros_not_nan(flash_attention):
    q, k, v = qkv(1, 1, 32, 24, 32)
    mask = torch.zeros(1, 1, 32, 24)
    mask[:, :, :3, :] = float("-inf")
    out = flash_attention(q, k, v, attn_mask=mask)
    assert torch.equal(out[:, :, :3], torch.zeros_like(out[:, :, :3]))
    torch.testing.assert_close(out[:, :, 3:], sdpa(q, k, v, mask)[:, :, 3:], atol=FP32_ATOL, rtol=0)


def test_explicit_scale_matches_sdpa(flash_attention):
    q, k, v = qkv(1, 2, 32, 24, 32)
    out = flash_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(out, sdpa(q, k, v, scale=0.3), atol=FP32_ATOL, rtol=0)


def test_strided_bnhd_views_match_sdpa(flash_attention):
    # Diffusers produces q/k/v as (B, N, H, D) buffers viewed as (B, H, N, D).
    b, h, n, d = 2, 2, 48, 32
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, n, h, d, generator=gen).transpose(1, 2) for _ in range(3))
    torch.testing.assert_close(flash_attention(q, k, v), sdpa(q, k, v), atol=FP32_ATOL, rtol=0)


def test_odd_strides_match_sdpa(flash_attention):
    # Row stride 41 and head stride 41 * 33: no alignment the kernel could assume.
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 33, 41, generator=gen)[..., :40] for _ in range(3))
    torch.testing.assert_close(flash_attention(q, k, v), sdpa(q, k, v), atol=FP32_ATOL, rtol=0)


def test_output_has_token_major_layout(flash_attention):
    q, k, v = qkv(2, 3, 32, 16, 32)
    out = flash_attention(q, k, v)
    assert out.shape == (2, 3, 32, 32)
    assert out.transpose(1, 2).is_contiguous()


@pytest.mark.parametrize(
    ("dtype", "atol"), [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)], ids=["fp16", "bf16"]
)
def test_half_precision_inputs_match_fp32_reference(flash_attention, dtype, atol):
    q, k, v = qkv(1, 2, 64, 24, 40, dtype=dtype)
    out = flash_attention(q, k, v)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), sdpa(q, k, v), atol=atol, rtol=0)


def test_half_precision_mask_is_applied(flash_attention):
    q, k, v = qkv(1, 2, 32, 24, 32, dtype=torch.float16)
    mask = (torch.randn(1, 1, 32, 24, generator=torch.Generator().manual_seed(2)) * 3).half()
    out = flash_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out.float(), sdpa(q, k, v, mask), atol=2e-3, rtol=0)


def test_forced_triton_dispatch_runs_kernel_with_bool_mask(monkeypatch, flash_attention):
    from graphflow.kernels import attention_triton
    from graphflow.kernels.attention import attention, set_attention_backend

    calls = []

    def spy(*args, **kwargs):
        calls.append(True)
        return flash_attention(*args, **kwargs)

    monkeypatch.setattr(attention_triton, "flash_attention", spy)
    set_attention_backend("triton")
    q, k, v = qkv(2, 2, 32, 24, 40)
    keep = torch.ones(2, 1, 1, 24, dtype=torch.bool)
    keep[1, ..., 17:] = False
    out = attention(q, k, v, attn_mask=keep)
    assert calls, "the dispatcher did not call the Triton kernel"
    torch.testing.assert_close(out, sdpa(q, k, v, keep), atol=FP32_ATOL, rtol=0)
