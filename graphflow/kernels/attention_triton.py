"""Triton flash-attention forward kernel.

This module imports triton at import time, so only the dispatcher's triton path
(:mod:`graphflow.kernels.attention`) may import it, lazily.

The kernel computes ``softmax(q @ k^T * scale + mask) @ v`` one query block at a
time.  Keys and values are streamed in blocks and the softmax is accumulated
online (running row maximum and row sum), so the Nq x Nk score matrix never
exists in memory.  Products run on the tensor cores in the input precision and
accumulate in fp32.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# Head dims up to this size are handled; the padded head dim (BLOCK_D) is the
# next power of two, so 160 runs as 256 with the tail masked off.
MAX_HEAD_DIM = 256

_LOG2E = 1.4426950408889634

# Interpreter runs execute every program in numpy; one small config keeps the
# tests fast and still exercises multi-block loops and ragged tails.
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _configs() -> list[triton.Config]:
    if _INTERPRET:
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 16}, num_warps=1, num_stages=1)]
    # (BLOCK_M, BLOCK_N, num_warps, num_stages).  The 32-row configs exist so the
    # 256-wide head dim always has something that fits in shared memory.
    shapes = [
        (128, 64, 4, 3),
        (128, 64, 8, 3),
        (128, 128, 8, 3),
        (128, 32, 4, 4),
        (64, 64, 4, 3),
        (64, 32, 4, 2),
        (64, 64, 8, 2),
        (32, 32, 4, 1),
    ]
    return [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
        for m, n, w, s in shapes
    ]


def _prune_configs(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """Drop configs whose tiles cannot fit for the padded head dim."""
    block_d = kwargs.get("BLOCK_D", named_args.get("BLOCK_D"))
    if block_d is None or block_d <= 128:
        return configs
    # A 256-wide head keeps q (BLOCK_M x 256) and the fp32 accumulator resident
    # per program; large BLOCK_M would spill registers and overflow smem.
    small = [c for c in configs if c.kwargs["BLOCK_M"] <= 64 and c.kwargs["BLOCK_N"] <= 64]
    return small or configs[-1:]


@triton.autotune(
    configs=_configs(),
    # dtypes of tensor arguments are added to the key by triton itself.
    key=["N_Q", "N_K", "HEAD_DIM", "HAS_MASK", "STRIDE_MULT"],
    prune_configs_by={"early_config_prune": _prune_configs},
)
@triton.heuristics(
    {
        "EVEN_M": lambda a: a["N_Q"] % a["BLOCK_M"] == 0,
        "EVEN_N": lambda a: a["N_K"] % a["BLOCK_N"] == 0,
    }
)
@triton.jit
def _flash_attn_fwd(
    Q,
    K,
    V,
    Mask,
    Out,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_kd,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_vd,
    stride_mb,
    stride_mh,
    stride_mm,
    stride_mn,
    stride_ob,
    stride_oh,
    stride_om,
    stride_od,
    H,
    N_Q,
    N_K,
    qk_scale,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    HAS_MASK: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    DOT_IN_FP32: tl.constexpr,
    STRIDE_MULT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    EVEN_M: tl.constexpr,
    EVEN_N: tl.constexpr,
):
    # The host passed the q/k/v/out strides divided by STRIDE_MULT.  Multiplying
    # by the constant proves to the compiler that every row starts on an aligned
    # address; triton infers that itself only for multiples of 16, so without
    # this a head dim of 40 (strides of 40, 320) gets unvectorised loads, no
    # cp.async pipelining and register spills.
    stride_qb, stride_qh, stride_qm = (
        stride_qb * STRIDE_MULT,
        stride_qh * STRIDE_MULT,
        stride_qm * STRIDE_MULT,
    )
    stride_kb, stride_kh, stride_kn = (
        stride_kb * STRIDE_MULT,
        stride_kh * STRIDE_MULT,
        stride_kn * STRIDE_MULT,
    )
    stride_vb, stride_vh, stride_vn = (
        stride_vb * STRIDE_MULT,
        stride_vh * STRIDE_MULT,
        stride_vn * STRIDE_MULT,
    )
    stride_ob, stride_oh, stride_om = (
        stride_ob * STRIDE_MULT,
        stride_oh * STRIDE_MULT,
        stride_om * STRIDE_MULT,
    )

    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    # 64-bit batch/head offsets: B * stride_b can pass 2**31 for long sequences.
    off_b = (pid_bh // H).to(tl.int64)
    off_h = (pid_bh % H).to(tl.int64)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    # Padded head-dim lanes load zeros, which leave q.k and p.v unchanged.
    d_ok = offs_d < HEAD_DIM
    m_ok = offs_m < N_Q

    q_ptrs = Q + off_b * stride_qb + off_h * stride_qh
    q_ptrs = q_ptrs + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=m_ok[:, None] & d_ok[None, :], other=0.0)
    if DOT_IN_FP32:
        q = q.to(tl.float32)

    # k is read transposed (BLOCK_D x BLOCK_N) so q @ k needs no tl.trans.
    k_ptrs = K + off_b * stride_kb + off_h * stride_kh
    k_ptrs = k_ptrs + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd
    v_ptrs = V + off_b * stride_vb + off_h * stride_vh
    v_ptrs = v_ptrs + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd
    if HAS_MASK:
        mask_ptrs = Mask + off_b * stride_mb + off_h * stride_mh
        mask_ptrs = mask_ptrs + offs_m[:, None] * stride_mm + offs_n[None, :] * stride_mn

    # Scores are kept in log2 units so the softmax can use exp2; qk_scale
    # already contains log2(e).
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    for start_n in range(0, N_K, BLOCK_N):
        n_ok = (start_n + offs_n) < N_K
        if EVEN_N:
            k = tl.load(k_ptrs, mask=d_ok[:, None], other=0.0)
        else:
            k = tl.load(k_ptrs, mask=d_ok[:, None] & n_ok[None, :], other=0.0)
        if DOT_IN_FP32:
            k = k.to(tl.float32)
        s = tl.dot(q, k, input_precision=INPUT_PRECISION) * qk_scale
        if HAS_MASK:
            if EVEN_M & EVEN_N:
                bias = tl.load(mask_ptrs)
            else:
                bias = tl.load(mask_ptrs, mask=m_ok[:, None] & n_ok[None, :], other=0.0)
            s += bias.to(tl.float32) * 1.4426950408889634
        if not EVEN_N:
            s = tl.where(n_ok[None, :], s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row whose keys are all masked so far has m_new == -inf; shifting by
        # 0 instead keeps exp2 at 0 rather than exp2(-inf + inf) = NaN.
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(s - m_shift[:, None])
        alpha = tl.math.exp2(m_i - m_shift)
        l_i = l_i * alpha + tl.sum(p, 1)

        if EVEN_N:
            v = tl.load(v_ptrs, mask=d_ok[None, :], other=0.0)
        else:
            v = tl.load(v_ptrs, mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        if DOT_IN_FP32:
            v = v.to(tl.float32)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=INPUT_PRECISION)
        m_i = m_new

        k_ptrs += BLOCK_N * stride_kn
        v_ptrs += BLOCK_N * stride_vn
        if HAS_MASK:
            mask_ptrs += BLOCK_N * stride_mn

    # Fully masked rows (l_i == 0) produce zeros instead of NaN.
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    acc = acc / l_safe[:, None]

    o_ptrs = Out + off_b * stride_ob + off_h * stride_oh
    o_ptrs = o_ptrs + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, acc.to(Out.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])


def _stride_multiple(*tensors: torch.Tensor) -> int:
    """Largest of 8, 4, 2, 1 dividing every batch/head/row stride of ``tensors``."""
    strides = [s for t in tensors for s in t.stride()[:3]]
    return next(m for m in (8, 4, 2, 1) if all(s % m == 0 for s in strides))


def _scaled_strides(t: torch.Tensor, mult: int) -> tuple[int, int, int, int]:
    b, h, n, d = t.stride()
    return b // mult, h // mult, n // mult, d


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Run the fused attention kernel on ``(B, H, N, D)`` tensors.

    ``q`` is ``(B, H, Nq, D)``; ``k`` and ``v`` are ``(B, H, Nk, D)``; any strides
    are accepted.  ``attn_mask`` is an additive float mask broadcastable to
    ``(B, H, Nq, Nk)`` (broadcast dims are read with stride 0, never
    materialised).  The caller (the dispatcher) validates shapes and dtypes and
    converts boolean masks.

    The result has shape ``(B, H, Nq, D)`` but ``(B, Nq, H, D)`` memory layout,
    so the usual ``out.transpose(1, 2).reshape(B, Nq, H * D)`` is free.
    """
    batch, heads, n_q, head_dim = q.shape
    n_k = k.shape[2]
    if scale is None:
        scale = head_dim**-0.5
    out = torch.empty((batch, n_q, heads, head_dim), dtype=q.dtype, device=q.device)
    out = out.transpose(1, 2)

    if attn_mask is not None:
        mask = attn_mask.expand(batch, heads, n_q, n_k)
        mask_strides = mask.stride()
    else:
        # Never read (HAS_MASK is a compile-time False); any valid pointer works.
        mask = q
        mask_strides = (0, 0, 0, 0)

    mult = _stride_multiple(q, k, v, out)
    qs, ks, vs, os_ = (_scaled_strides(t, mult) for t in (q, k, v, out))
    block_d = max(16, triton.next_power_of_2(head_dim))
    # fp32 inputs would silently drop to tf32 on the tensor cores; the caller
    # asked for fp32, so keep full precision there.
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    # The interpreter's numpy tl.dot misreads bf16 operands, so there the
    # products run in fp32 (exact, and the rest of the bf16 path is unchanged).
    dot_in_fp32 = _INTERPRET and q.dtype == torch.bfloat16

    def grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(n_q, meta["BLOCK_M"]), batch * heads)

    _flash_attn_fwd[grid](
        q,
        k,
        v,
        mask,
        out,
        *qs,
        *ks,
        *vs,
        *mask_strides,
        *os_,
        heads,
        n_q,
        n_k,
        float(scale) * _LOG2E,
        HEAD_DIM=head_dim,
        BLOCK_D=block_d,
        HAS_MASK=attn_mask is not None,
        INPUT_PRECISION=precision,
        DOT_IN_FP32=dot_in_fp32,
        STRIDE_MULT=mult,
    )
    return out
