"""Fixtures for the editor's tests: Node tooling in web/, and the browser the e2e test drives."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
CHROMIUM = Path("/usr/bin/chromium")
REBUILD_HINT = "run `npm --prefix web ci && npm --prefix web run build`"


def required() -> bool:
    """CI sets GRAPHFLOW_REQUIRE_BROWSER=1: missing tools then fail the tests, not skip them."""
    return os.environ.get("GRAPHFLOW_REQUIRE_BROWSER") == "1"


def skip_or_fail(reason: str) -> None:
    if required():
        pytest.fail(f"{reason} (GRAPHFLOW_REQUIRE_BROWSER=1 is set)")
    pytest.skip(reason)


def npm() -> str:
    """The npm executable, or a skip (a failure in CI) when Node is not installed."""
    path = shutil.which("npm")
    if path is None:
        skip_or_fail("npm is not installed (Node 20+ runs the editor's tests)")
    return path


def run_in_web(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Runs a command in web/, failing the test with its output when it fails."""
    result = subprocess.run(
        command,
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited with {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-8000:]}\n--- stderr ---\n{result.stderr[-8000:]}"
        )
    return result


def ensure_node_modules() -> None:
    """`npm ci` when web/node_modules is missing or older than package-lock.json."""
    lock = WEB / "package-lock.json"
    installed = WEB / "node_modules" / ".package-lock.json"
    if installed.is_file() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    run_in_web([npm(), "ci", "--no-audit", "--no-fund", "--prefer-offline"], timeout=600)


@pytest.fixture
def web_npm() -> str:
    """npm, with web/node_modules installed from package-lock.json."""
    path = npm()
    ensure_node_modules()
    return path


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium, or a skip (a failure under GRAPHFLOW_REQUIRE_BROWSER=1)."""
    if not CHROMIUM.is_file():
        skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
def web_run():
    """``web_run(command, timeout)``: run in web/, failing the test with the output on error."""
    return run_in_web
