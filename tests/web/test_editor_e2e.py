"""The editor end to end: Chromium drives the built editor against a real `graphflow serve`.

Runs web/e2e/editor.e2e.mjs, comfy-import.e2e.mjs and subgraphs.e2e.mjs (playwright-core) and
keeps their screenshots and logs in tests/web/artifacts/. Skipped without /usr/bin/chromium unless
GRAPHFLOW_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from graphflow import Executor, build_graph, load_plugins, load_workflow

pytestmark = [pytest.mark.web, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WEB = Path(__file__).resolve().parents[2] / "web"
SERVER_START_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"graphflow serve exited early:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "api/queue", timeout=2) as answer:
                json.load(answer)
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"graphflow serve did not answer within {SERVER_START_TIMEOUT}s")


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def server_url(tmp_path, data_dir):
    """A real `graphflow serve` on a free loopback port with a fresh data folder."""
    port = free_port()
    log = tmp_path / "server.log"
    command = [sys.executable, "-c", "from graphflow.cli import main; main()", "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    with open(log, "w") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, server, log)
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "server.log").write_text(log.read_text())


def run_e2e_script(script: str, server_url: str, chromium: Path, log_name: str) -> None:
    """Runs web/e2e/<script> against the server; fails with its step log when a step fails."""
    ARTIFACTS.mkdir(exist_ok=True)
    command = ["node", f"e2e/{script}", "--url", server_url, "--artifacts", str(ARTIFACTS)]
    command += ["--chromium", str(chromium)]
    result = subprocess.run(
        command, cwd=WEB, capture_output=True, text=True, timeout=420, env=dict(os.environ)
    )
    report = f"{result.stdout}\n{result.stderr}\nscreenshots: {ARTIFACTS}"
    (ARTIFACTS / log_name).write_text(report)
    assert result.returncode == 0, report


def test_editor_end_to_end_in_chromium(chromium, web_npm, server_url, data_dir):
    run_e2e_script("editor.e2e.mjs", server_url, chromium, "e2e.log")
    # What the editor saved is a workflow the engine itself loads and validates.
    saved = load_workflow(data_dir / "workflows" / "e2e-photo.json")
    validated = build_graph(saved, load_plugins().registry)
    node_types = {spec.id for spec in validated.specs.values()}
    assert node_types >= {"image.example_photo", "image.preview"}


def test_editor_opens_comfy_workflows_in_chromium(chromium, web_npm, server_url, data_dir):
    """Upload a ComfyUI UI workflow, run it, and drop one with an unknown class type."""
    run_e2e_script("comfy-import.e2e.mjs", server_url, chromium, "e2e-comfy.log")
    outputs = sorted((data_dir / "output").rglob("*.png"))
    assert len(outputs) == 4, f"the imported workflow saves its batch of 4, got {outputs}"


def test_editor_collapses_and_opens_subgraphs_in_chromium(chromium, web_npm, server_url, data_dir):
    """Collapse two nodes into a subgraph, open a subgraph (and the one nested in it), edit
    it, go back, see a problem inside it on both nodes, and save."""
    run_e2e_script("subgraphs.e2e.mjs", server_url, chromium, "e2e-subgraphs.log")
    saved = load_workflow(data_dir / "workflows" / "e2e-subgraph.json")
    assert set(saved.subgraphs) == {"area", "megapixels", "subgraph"}
    assert set(saved.subgraphs["subgraph"].nodes) == {"width", "height"}
    assert saved.subgraphs["megapixels"].nodes["rounded"].inputs["b"] == 10
    result = Executor(load_plugins().registry).run(saved)
    assert result.status == "finished", result.error
    assert result.ui["show_mp"]["text"] == ["megapixels: 20.7"]
