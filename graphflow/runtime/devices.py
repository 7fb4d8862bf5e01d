"""Which device and dtype nodes compute on by default.

torch is imported only when a node first asks, so the engine itself starts without it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..settings import current_settings


def default_device() -> str:
    """The ``device`` setting if set, else ``cuda`` when available, ``mps`` on Apple, else
    ``cpu``."""
    return current_settings().device or detected_device()


@lru_cache(maxsize=1)
def detected_device() -> str:
    """The best device this process can see: ``cuda``, else ``mps``, else ``cpu``."""
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def default_dtype(device: str) -> Any:
    """fp16 on accelerators (where diffusion models are usually run), fp32 on the CPU."""
    import torch

    return torch.float32 if device.split(":")[0] == "cpu" else torch.float16
