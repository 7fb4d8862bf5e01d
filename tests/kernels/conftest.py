"""Test setup for graphflow.kernels.

The Triton kernel is exercised on CPU through triton's interpreter, which
triton selects when a kernel is *decorated*, i.e. when
``graphflow.kernels.attention_triton`` is first imported.  Setting the variable
here, at collection time, runs before any test in this directory imports it.
``TRITON_INTERPRET=0`` given on the command line is kept: on a GPU,
``TRITON_INTERPRET=0 pytest tests/kernels -m "not triton_interpret"`` runs the
CUDA tests on the compiled kernel (scripts/gpu_check.sh does).
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Registered here as well as in pyproject so this directory runs standalone.
    config.addinivalue_line(
        "markers",
        "triton_interpret: runs a Triton kernel in the CPU interpreter (TRITON_INTERPRET=1)",
    )


@pytest.fixture(autouse=True)
def _fresh_backend_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no backend override, no env override and an empty log-once set."""
    from graphflow.kernels import attention as dispatcher

    monkeypatch.delenv("GRAPHFLOW_ATTENTION", raising=False)
    monkeypatch.setattr(dispatcher, "_override", None)
    monkeypatch.setattr(dispatcher, "_logged", set())
