"""Shared fixtures (helpers live in tests/support.py, importable as ``support``)."""

from __future__ import annotations

import pytest

from support import TestPack


@pytest.fixture
def pack() -> TestPack:
    """A fresh test node pack with call counters."""
    return TestPack()
