"""Deprecated: the diffusers attention processor moved to the diffusion pack.

Import :class:`GraphflowAttnProcessor` and :func:`install_attention_processor` from
``gf_diffusion.attention_processor``; this module re-exports them, with a
DeprecationWarning, for one release. (The engine's kernels know attention, not diffusers.)
"""

from __future__ import annotations

import warnings

from gf_diffusion.attention_processor import GraphflowAttnProcessor, install_attention_processor

warnings.warn(
    "graphflow.kernels.processor is deprecated and will be removed in graphflow 0.3: import "
    "from gf_diffusion.attention_processor",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["GraphflowAttnProcessor", "install_attention_processor"]
