"""Which backend graphflow.kernels.attention.attention picks, and how it is forced."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from graphflow.kernels.attention import (
    attention,
    get_attention_backend,
    select_backend,
    set_attention_backend,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def qkv(nq: int = 16, nk: int = 16, d: int = 32, **kwargs):
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.randn(1, 2, n, d, generator=gen, **kwargs) for n in (nq, nk, nk))


def test_default_backend_is_auto():
    assert get_attention_backend() == "auto"


def test_auto_picks_sdpa_on_cpu():
    assert select_backend(*qkv()) == ("sdpa", "device cpu")


def test_cpu_result_equals_sdpa():
    q, k, v = qkv(nk=8)
    mask = torch.randn(1, 1, 16, 8)
    assert torch.equal(
        attention(q, k, v, mask, 0.5), F.scaled_dot_product_attention(q, k, v, mask, scale=0.5)
    )


def test_env_var_forces_sdpa(monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_ATTENTION", "sdpa")
    assert select_backend(*qkv()) == ("sdpa", "forced")


def test_env_var_forces_triton_on_cpu_under_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("GRAPHFLOW_ATTENTION", "triton")
    assert select_backend(*qkv()) == ("triton", "forced")


def test_env_var_is_case_and_space_insensitive(monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_ATTENTION", " SDPA ")
    assert get_attention_backend() == "sdpa"


def test_forcing_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("GRAPHFLOW_ATTENTION", "triton")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        attention(*qkv())


def test_unknown_env_value_is_rejected(monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_ATTENTION", "flash")
    with pytest.raises(ValueError, match="GRAPHFLOW_ATTENTION"):
        get_attention_backend()


def test_set_attention_backend_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown attention backend"):
        set_attention_backend("xformers")  # type: ignore[arg-type]


def test_set_attention_backend_overrides_env_var(monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_ATTENTION", "triton")
    set_attention_backend("sdpa")
    assert select_backend(*qkv()) == ("sdpa", "forced")


def test_set_attention_backend_none_restores_env_var(monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_ATTENTION", "sdpa")
    set_attention_backend("auto")
    set_attention_backend(None)
    assert get_attention_backend() == "sdpa"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ({"d": 320}, "head dim 320 > 256"),
        ({"dtype": torch.float64}, "dtype torch.float64"),
        ({"dropout_p": 0.1}, "dropout"),
        ({"is_causal": True}, "causal"),
        ({"requires_grad": True}, "autograd (forward-only kernel)"),
        ({"mask": torch.ones(1, 2, 16, 16, dtype=torch.int64)}, "mask dtype torch.int64"),
        ({"mask": torch.zeros(3, 1, 16, 16)}, "mask not broadcastable to (B, H, Nq, Nk)"),
    ],
    ids=["head-dim", "dtype", "dropout", "causal", "autograd", "int-mask", "bad-mask-shape"],
)
def test_forced_triton_falls_back_to_sdpa_for_unsupported_calls(monkeypatch, case, reason):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    set_attention_backend("triton")
    case = dict(case)
    tensors = qkv(d=case.pop("d", 32), dtype=case.pop("dtype", torch.float32))
    if case.pop("requires_grad", False):
        tensors[0].requires_grad_(True)
    mask = case.pop("mask", None)
    assert select_backend(*tensors, mask, **case) == (
        "sdpa",
        f"forced triton unsupported: {reason}",
    )


def test_fallback_for_unsupported_forced_call_is_logged_as_warning(monkeypatch, caplog):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    set_attention_backend("triton")
    with caplog.at_level(logging.INFO, logger="graphflow.kernels"):
        attention(*qkv(), dropout_p=0.5)
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "dropout" in caplog.records[0].getMessage()


def test_choice_is_logged_once_per_backend_and_reason(caplog):
    with caplog.at_level(logging.INFO, logger="graphflow.kernels"):
        for _ in range(3):
            attention(*qkv())
        set_attention_backend("sdpa")
        attention(*qkv())
        attention(*qkv())
    messages = [r.getMessage() for r in caplog.records if r.name == "graphflow.kernels"]
    assert messages == ["attention backend: sdpa (device cpu)", "attention backend: sdpa (forced)"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_picks_triton_for_supported_cuda_inputs():
    q, k, v = qkv(device="cuda", dtype=torch.float16)
    assert select_backend(q, k, v) == ("triton", "supported")


def _modules_after_import(statement: str) -> set[str]:
    """Import in a fresh interpreter and report which heavy modules got loaded."""
    report = "print(json.dumps([m for m in ('torch', 'triton') if m in sys.modules]))"
    code = f"{statement}\nimport json, sys\n{report}"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_importing_the_dispatcher_does_not_import_triton():
    assert "triton" not in _modules_after_import("import graphflow.kernels.attention")


def test_importing_the_kernels_package_imports_neither_torch_nor_triton():
    assert _modules_after_import("import graphflow.kernels") == set()
