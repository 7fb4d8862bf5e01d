"""The websocket feed: who sees what, previews, and client ids."""

from __future__ import annotations

import asyncio
import io
import sys

import pytest
from serverkit import chain, single

from graphflow.server import dispatcher

pytestmark = pytest.mark.asyncio


async def test_other_clients_see_only_queue_status(api):
    owner = await api.connect("owner")
    other = await api.connect("other")
    job_id = await api.submit(chain(3), client_id="owner")
    await owner.until_done(job_id)
    ping = await api.client.ws_connect("/ws?client_id=probe")  # a marker after the job
    await ping.close()
    seen = []
    await other.ws.send_str("ping")
    while (message := await other.next())["type"] != "pong":
        seen.append(message["type"])
    assert set(seen) <= {"status"}
    assert seen


async def test_a_job_without_a_client_id_sends_events_to_nobody(api):
    watcher = await api.connect("watcher")
    job_id = await api.submit(chain(2))
    await api.wait_finished(job_id)
    await watcher.ws.send_str("ping")
    while (message := await watcher.next())["type"] != "pong":
        assert message["type"] == "status"


async def test_a_client_id_is_made_up_when_missing(api):
    feed = await api.connect(None)
    assert len(feed.client_id) == 32


async def test_an_invalid_client_id_is_refused(api):
    response = await api.client.get("/ws?client_id=has space")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_client_id"


async def test_two_connections_of_one_client_both_get_the_events(api):
    first = await api.connect("same")
    second = await api.connect("same")
    job_id = await api.submit(chain(2), client_id="same")
    assert (await first.until_done(job_id))[-1]["type"] == "job_done"
    assert (await second.until_done(job_id))[-1]["type"] == "job_done"


@pytest.mark.parametrize("kind", ["numpy", "pil", "torch"])
async def test_previews_arrive_as_binary_jpeg_frames(api, kind):
    from PIL import Image

    feed = await api.connect("viewer")
    job_id = await api.submit(
        single("srv.preview", {"kind": kind, "size": 600}), client_id="viewer"
    )
    await feed.until_done(job_id)
    assert len(feed.previews) == 1
    header, payload = feed.previews[0]
    assert header["type"] == "preview"
    assert header["data"]["job_id"] == job_id and header["data"]["node"] == "n"
    assert header["data"]["format"] == "jpeg"
    assert (header["data"]["width"], header["data"]["height"]) == (512, 512)  # downscaled
    image = Image.open(io.BytesIO(payload))
    assert image.format == "JPEG" and image.size == (512, 512)


async def test_a_preview_that_cannot_be_encoded_does_not_fail_the_job(api):
    feed = await api.connect("viewer")
    job_id = await api.submit(single("srv.preview", {"kind": "broken"}), client_id="viewer")
    messages = await feed.until_done(job_id)
    assert messages[-1]["data"]["status"] == "done"
    assert feed.previews == []


async def test_previews_are_not_encoded_when_nobody_watches(api, monkeypatch):
    calls = []
    monkeypatch.setattr(dispatcher, "encode_preview", lambda *a: calls.append(a))
    job_id = await api.submit(single("srv.preview"), client_id="absent")
    assert (await api.wait_finished(job_id))["status"] == "done"
    assert calls == []


NO_TORCH_SCRIPT = """
import asyncio, sys, tempfile
from aiohttp.test_utils import TestClient, TestServer
from graphflow.server import ServerConfig, create_app

async def main():
    app = create_app(ServerConfig(data_dir=tempfile.mkdtemp()))
    async with TestClient(TestServer(app)) as client:
        ws = await client.ws_connect("/ws?client_id=c")
        workflow = {"format": "graphflow/1", "nodes": {
            "a": {"type": "core.float", "inputs": {"value": 1}},
            "out": {"type": "core.show", "inputs": {"value": {"link": ["a", "float"]}}}}}
        await client.post("/api/prompt", json={"workflow": workflow, "client_id": "c"})
        while (await ws.receive_json())["type"] != "job_done":
            pass
        await client.get("/api/system")
    print("torch" in sys.modules)

asyncio.run(main())
"""


async def test_serving_json_events_never_imports_torch():
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", NO_TORCH_SCRIPT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert out.decode().strip().splitlines()[-1] == "False"
