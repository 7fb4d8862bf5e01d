"""scripts/gpu_check.sh: valid bash; a dry run writes the plan and runs nothing; without CUDA
it says so, writes a report saying so, and exits 0 (the real check needs an NVIDIA GPU)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
STEPS = ["GPU", "versions", "CUDA tests", "attention benchmark", "txt2img overhead"]


def run_check(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


@pytest.fixture
def no_cuda_env(tmp_path: Path) -> dict:
    """PATH with an nvidia-smi that finds no GPU (as on a machine without a driver)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    return env


def test_gpu_check_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_dry_run_writes_every_step_and_its_command_and_runs_nothing(tmp_path):
    report = tmp_path / "report.md"
    result = run_check("--dry-run", "--python", "/nonexistent/python", "--report", str(report))
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    assert all(f"## {step}\n" in text for step in STEPS)
    for command in ["tests/kernels", "tests/image/test_noise.py", "benchmarks/attention.py"]:
        assert command in text
    assert "GRAPHFLOW_DEVICE=cuda" in text and "benchmarks/txt2img_overhead.py" in text
    assert text.count("not run (dry run") == text.count("\n## ") - 1  # all but the summary


def test_without_cuda_it_says_so_writes_the_report_and_exits_0(tmp_path, no_cuda_env):
    report = tmp_path / "report.md"
    result = run_check("--report", str(report), env=no_cuda_env)
    assert result.returncode == 0, result.stderr
    assert "no CUDA" in result.stderr and "Traceback" not in result.stderr
    text = report.read_text()
    assert "**no CUDA**" in text and "nothing was run" in text and "## CUDA tests" not in text


def test_report_goes_to_OUT_when_it_is_set(tmp_path, no_cuda_env):
    out = tmp_path / "out"
    result = run_check(env={**no_cuda_env, "OUT": str(out)})
    assert result.returncode == 0, result.stderr
    assert "**no CUDA**" in (out / "gpu_report.md").read_text()


def test_unknown_option_is_refused_with_exit_2():
    result = run_check("--fast")
    assert result.returncode == 2 and "unknown option --fast" in result.stderr


def test_dry_run_in_a_checkout_without_venv_plans_the_readme_setup(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    (checkout / "scripts" / "gpu_check.sh").write_bytes(SCRIPT.read_bytes())
    (checkout / "scripts" / "gpu_check.sh").chmod(0o755)
    report = tmp_path / "report.md"
    result = subprocess.run(
        [str(checkout / "scripts" / "gpu_check.sh"), "--dry-run", "--report", str(report)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    assert "## set-up (README)" in text
    assert "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'" in text
    assert not (checkout / ".venv").exists()
