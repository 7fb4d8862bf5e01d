"""Fused GPU kernels for graphflow, with portable fallbacks.

* :mod:`graphflow.kernels.attention` - ``attention(q, k, v, attn_mask, scale)``
  dispatcher: Triton flash attention on CUDA, PyTorch SDPA elsewhere.
* :mod:`graphflow.kernels.attention_triton` - the Triton kernel itself.
* the diffusers attention processor that routes a model's attention through the
  dispatcher lives in the diffusion pack (``gf_diffusion.attention_processor``);
  :mod:`graphflow.kernels.processor` re-exports it, deprecated, for one release.

Importing this package imports neither torch nor triton; the names below are
resolved on first access.  The dispatcher function is not re-exported here
because its name would clash with the ``attention`` submodule; import it as
``from graphflow.kernels.attention import attention``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "get_attention_backend": "graphflow.kernels.attention",
    "set_attention_backend": "graphflow.kernels.attention",
    "select_backend": "graphflow.kernels.attention",
    "GraphflowAttnProcessor": "graphflow.kernels.processor",
    "install_attention_processor": "graphflow.kernels.processor",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
