"""A blocking client written the way ComfyUI's own script examples are (urllib, no
Content-Type of its own, polling /history), against a real TCP server."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from protocolkit import SEED_MAX, ServerThread, image_prompt, seed_prompt

from graphflow.server import ServerConfig, create_app


@pytest.fixture
def server(comfy_registry, tmp_path):
    """A running server; its base URL."""
    thread = ServerThread(
        create_app(ServerConfig(data_dir=tmp_path / "data"), registry=comfy_registry)
    )
    yield f"http://127.0.0.1:{thread.port}"
    thread.stop()


def queue_prompt(base: str, prompt: dict, **fields) -> dict:
    data = json.dumps({"prompt": prompt, **fields}).encode()  # urllib: form-urlencoded
    with urllib.request.urlopen(urllib.request.Request(f"{base}/prompt", data=data)) as reply:
        return json.loads(reply.read())


def wait_history(base: str, prompt_id: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/history/{prompt_id}") as reply:
            history = json.loads(reply.read())
        if prompt_id in history:
            return history[prompt_id]
        time.sleep(0.02)
    raise AssertionError(f"{prompt_id} never finished")


def test_a_urllib_client_queues_polls_and_downloads(server):
    answer = queue_prompt(server, image_prompt(prefix="urllib"), client_id="script")
    entry = wait_history(server, answer["prompt_id"])
    image = entry["outputs"]["2"]["images"][0]
    with urllib.request.urlopen(f"{server}/view?{urllib.parse.urlencode(image)}") as reply:
        assert reply.headers["Content-Type"] == "image/png"
        assert reply.read()[:4] == b"\x89PNG"


def test_a_urllib_client_gets_a_readable_400_and_exact_seeds(server):
    with pytest.raises(urllib.error.HTTPError) as refused:
        queue_prompt(server, {"1": {"class_type": "NoSuchNode", "inputs": {}}})
    body = json.loads(refused.value.read())
    assert refused.value.code == 400 and body["error"]["type"] == "invalid_prompt"
    answer = queue_prompt(server, seed_prompt(SEED_MAX))
    assert wait_history(server, answer["prompt_id"])["outputs"]["9"] == {"text": [str(SEED_MAX)]}
