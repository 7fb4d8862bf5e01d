"""Shared fixtures (helpers live in tests/support.py, importable as ``support``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Triton binds its own @jit helpers to compiled or interpreted mode when it is first imported,
# and `import diffusers` imports it; so on a machine without an NVIDIA driver the interpreter
# has to be chosen here, before any test module loads (tests/kernels runs kernels through it).
if "TRITON_INTERPRET" not in os.environ and not Path("/proc/driver/nvidia/version").exists():
    os.environ["TRITON_INTERPRET"] = "1"


from support import TestPack


@pytest.fixture
def pack() -> TestPack:
    """A fresh test node pack with call counters."""
    return TestPack()
