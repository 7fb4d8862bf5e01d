"""The server path at scale: big chains run right, and the websocket traffic is linear.

``/ws?batch=1`` sends the job events that arrive together as one ``events`` message whose
items are exactly the messages of the plain feed; both feeds must grow linearly with the
number of nodes (no message repeats the graph or the list of executed nodes).
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import WSMsgType
from serverkit import chain

pytestmark = pytest.mark.asyncio


async def read_until_done(ws, job_id: str) -> tuple[list[dict], int, int]:
    """(the feed's messages with ``events`` unpacked, text frames, bytes) up to ``job_done``."""
    messages, frames, size = [], 0, 0
    while True:
        frame = await asyncio.wait_for(ws.receive(), 30)
        assert frame.type == WSMsgType.TEXT, frame
        frames += 1
        size += len(frame.data.encode())
        message = frame.json()
        if message["type"] == "events":
            assert message["data"]["job_id"] == job_id
            messages.extend(message["data"]["events"])
        else:
            messages.append(message)
        if message["type"] == "job_done" and message["data"]["job_id"] == job_id:
            return messages, frames, size


async def traffic(api, nodes: int, batch: bool, start: float) -> tuple[list[dict], int, int]:
    """Run a fresh ``nodes``-node chain; what its client read."""
    query = "&batch=1" if batch else ""
    ws = await api.client.ws_connect(f"/ws?client_id=scale{query}")
    hello = (await ws.receive()).json()
    assert hello["type"] == "status" and hello["data"].get("batch", False) is batch
    job_id = await api.submit(chain(nodes, start), client_id="scale")
    result = await read_until_done(ws, job_id)
    await ws.close()
    return result


@pytest.mark.parametrize("batch", [True, False], ids=["batched", "plain"])
async def test_websocket_bytes_grow_linearly_with_the_chain(api, batch):
    _, _, small = await traffic(api, 500, batch, start=1.0)
    _, _, double = await traffic(api, 1000, batch, start=2.0)
    assert 1.8 < double / small < 2.2, (small, double)


async def test_a_batched_feed_sends_few_frames_for_a_big_run(api):
    messages, frames, _ = await traffic(api, 1000, True, start=3.0)
    assert len(messages) > 2000  # run_started, 2 per node, run_finished, job_done, status
    assert frames < len(messages) / 10


async def test_a_big_chain_runs_every_node_and_reports_each_one_in_order(api):
    nodes = 2000
    messages, _, _ = await traffic(api, nodes, True, start=0.5)
    job_id = messages[-1]["data"]["job_id"]
    events = [m for m in messages if m["type"] not in ("status", "job_done")]
    assert events[0]["type"] == "run_started"
    assert len(events[0]["data"]["planned"]) == nodes + 1
    started = [m["data"]["node"] for m in events if m["type"] == "node_started"]
    finished = [m["data"]["node"] for m in events if m["type"] == "node_finished"]
    expected = [f"n{i}" for i in range(nodes)] + ["out"]
    assert started == expected and finished == expected
    assert events[-1]["type"] == "run_finished"
    assert events[-1]["data"]["executed"] == nodes + 1
    assert all(m["data"]["job_id"] == job_id for m in events)
    record = await api.job(job_id)
    assert record["status"] == "done" and record["executed"] == nodes + 1
    assert record["outputs"]["out"] == {"text": [repr(0.5 + nodes - 1)]}
    assert len(record["timings"]["nodes"]) == nodes + 1


async def test_batched_items_are_the_plain_feeds_messages(api):
    plain = await api.client.ws_connect("/ws?client_id=both")
    batched = await api.client.ws_connect("/ws?client_id=both&batch=1")
    await plain.receive()
    await batched.receive()
    job_id = await api.submit(chain(300, 7.0), client_id="both")
    seen_plain, plain_frames, _ = await read_until_done(plain, job_id)
    seen_batched, batched_frames, _ = await read_until_done(batched, job_id)

    def job_messages(messages):
        return [m for m in messages if m["type"] != "status"]

    assert job_messages(seen_batched) == job_messages(seen_plain)
    assert batched_frames < plain_frames


async def test_a_bad_batch_value_is_refused(api):
    response = await api.client.get("/ws?client_id=c&batch=maybe")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_request"
