"""Attention dispatcher: the Triton flash kernel where it applies, SDPA elsewhere.

Rules (``auto`` backend):

* Triton is used when the tensors are on CUDA, triton is installed, the dtype is
  fp16/bf16/fp32, q/k/v are 4-D ``(B, H, N, D)`` with matching batch, heads and
  head dim, ``D <= 256``, the mask (if any) is a bool or float tensor
  broadcastable to ``(B, H, Nq, Nk)``, there is no dropout, no causal flag and
  no autograd (the kernel is forward-only).
* Everything else goes to ``torch.nn.functional.scaled_dot_product_attention``.

The backend can be forced with the ``attention`` setting (``GRAPHFLOW_ATTENTION``:
``auto`` | ``triton`` | ``sdpa``; see graphflow.settings) or
:func:`set_attention_backend`, which takes precedence.  A forced ``triton``
backend raises if triton cannot run at all (not installed, or CPU tensors
without ``TRITON_INTERPRET=1``) and falls back to SDPA, with a warning, for
calls the kernel does not support.

Triton is imported lazily, only when the triton path actually runs, so importing
this module stays cheap.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "attention",
    "get_attention_backend",
    "select_backend",
    "set_attention_backend",
]

logger = logging.getLogger("graphflow.kernels")

Backend = Literal["auto", "triton", "sdpa"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "sdpa")
ENV_VAR = "GRAPHFLOW_ATTENTION"

_MAX_HEAD_DIM = 256  # keep in sync with attention_triton.MAX_HEAD_DIM
_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

_override: str | None = None
_logged: set[tuple[str, str]] = set()


def _validate(backend: str, source: str) -> str:
    value = backend.strip().lower()
    if value not in BACKENDS:
        raise ValueError(
            f"{source}: unknown attention backend {backend!r}; expected one of {BACKENDS}"
        )
    return value


def set_attention_backend(backend: Backend | None) -> None:
    """Force the attention backend for this process.

    ``"auto"``, ``"triton"`` or ``"sdpa"``; ``None`` clears the override so the
    ``attention`` setting (``GRAPHFLOW_ATTENTION``, default ``auto``) applies again.
    """
    global _override
    _override = None if backend is None else _validate(backend, "set_attention_backend")


def get_attention_backend() -> str:
    """Return the configured backend: the override, else the ``attention`` setting
    (``GRAPHFLOW_ATTENTION``, default ``"auto"``)."""
    if _override is not None:
        return _override
    from graphflow.settings import current_settings

    return current_settings().attention


def _interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _triton_installed() -> bool:
    # find_spec locates the package without importing it.
    return importlib.util.find_spec("triton") is not None


def _unsupported_reason(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None,
    dropout_p: float,
    is_causal: bool,
) -> str | None:
    """Why the kernel cannot take this call (device aside), or None if it can."""
    if dropout_p > 0.0:
        return "dropout"
    if is_causal:
        return "causal"
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        return "not 4-D (B, H, N, D)"
    if q.dtype not in _SUPPORTED_DTYPES:
        return f"dtype {q.dtype}"
    if k.dtype != q.dtype or v.dtype != q.dtype:
        return "mixed dtypes"
    if not (q.device == k.device == v.device):
        return "mixed devices"
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3]:
        return "batch/heads/keys mismatch"
    head_dim = q.shape[-1]
    if k.shape[-1] != head_dim or v.shape[-1] != head_dim:
        return "q/k/v head dims differ"
    if head_dim > _MAX_HEAD_DIM:
        return f"head dim {head_dim} > {_MAX_HEAD_DIM}"
    if q.shape[2] == 0 or k.shape[2] == 0 or q.numel() == 0:
        return "empty"
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        return "autograd (forward-only kernel)"
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
            return f"mask dtype {attn_mask.dtype}"
        if attn_mask.device != q.device:
            return "mask on another device"
        if attn_mask.requires_grad and torch.is_grad_enabled():
            return "autograd (forward-only kernel)"
        target = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        try:
            if torch.broadcast_shapes(attn_mask.shape, target) != target:
                return "mask not broadcastable to (B, H, Nq, Nk)"
        except RuntimeError:
            return "mask not broadcastable to (B, H, Nq, Nk)"
    return None


def select_backend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    *,
    dropout_p: float = 0.0,
    is_causal: bool = False,
) -> tuple[str, str]:
    """Decide which backend :func:`attention` uses for these inputs.

    Returns ``(backend, reason)`` with backend ``"triton"`` or ``"sdpa"``.  Raises
    ``RuntimeError`` when triton is forced but cannot run in this environment.
    """
    configured = get_attention_backend()
    if configured == "sdpa":
        return "sdpa", "forced"

    forced = configured == "triton"
    on_cuda = q.device.type == "cuda"
    if forced:
        if not _triton_installed():
            raise RuntimeError(f"{ENV_VAR}=triton but triton is not installed")
        if not on_cuda and not _interpreter_enabled():
            raise RuntimeError(
                f"{ENV_VAR}=triton needs CUDA tensors (got {q.device.type}); "
                "set TRITON_INTERPRET=1 to run the kernel in the interpreter"
            )
    else:
        if not on_cuda:
            return "sdpa", f"device {q.device.type}"
        if not _triton_installed():
            return "sdpa", "triton not installed"

    reason = _unsupported_reason(q, k, v, attn_mask, dropout_p, is_causal)
    if reason is not None:
        return "sdpa", ("forced triton unsupported: " + reason) if forced else reason
    return "triton", "forced" if forced else "supported"


def _log_choice(backend: str, reason: str) -> None:
    key = (backend, reason)
    if key in _logged:
        return
    _logged.add(key)
    if reason.startswith("forced triton unsupported"):
        logger.warning("attention backend: %s (%s)", backend, reason)
    else:
        logger.info("attention backend: %s (%s)", backend, reason)


def _additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # SDPA treats True as "attend"; the kernel adds the mask to the scores.
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return bias.masked_fill_(~mask, float("-inf"))


def _run_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None,
    scale: float | None,
) -> torch.Tensor:
    from graphflow.kernels.attention_triton import flash_attention

    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = _additive_mask(attn_mask, q.dtype)
    # Strided head-dim rows cannot be loaded as vectors; such inputs are rare
    # (our processor produces unit stride), so a copy is the simple fix.
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    return flash_attention(q, k, v, attn_mask=attn_mask, scale=scale)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    dropout_p: float = 0.0,
    is_causal: bool = False,
) -> torch.Tensor:
    """Scaled dot-product attention over ``(B, H, N, D)`` tensors.

    Same contract as ``torch.nn.functional.scaled_dot_product_attention``:
    ``attn_mask`` is a bool mask (True = attend) or an additive float mask
    broadcastable to ``(B, H, Nq, Nk)``; ``scale`` defaults to ``1/sqrt(D)``.
    The backend is chosen by :func:`select_backend` and logged once per
    (backend, reason) on the ``graphflow.kernels`` logger.
    """
    backend, reason = select_backend(q, k, v, attn_mask, dropout_p=dropout_p, is_causal=is_causal)
    _log_choice(backend, reason)
    if backend == "triton":
        return _run_triton(q, k, v, attn_mask, scale)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale
    )
