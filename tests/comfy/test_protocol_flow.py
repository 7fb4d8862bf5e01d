"""ComfyUI clients against graphflow serve: the synchronous client (POST /prompt → ws →
/history → /view), a websocket opened late, message order, and both dialects on one queue."""

from __future__ import annotations

import asyncio
import json

import pytest
from protocolkit import (
    GATE,
    SEED_MAX,
    ComfyWs,
    frame_type,
    image_prompt,
    kinds,
    seed_prompt,
)

pytestmark = pytest.mark.asyncio


async def post(client, prompt, **fields):
    response = await client.post("/prompt", json={"prompt": prompt, **fields})
    body = await response.json()
    assert response.status == 200, body
    return body


async def test_a_synchronous_client_queues_waits_reads_history_and_views_the_image(client):
    ws = await ComfyWs.open(client, "sync-client")
    first = await ws.next()
    assert first["type"] == "status" and first["data"]["sid"] == "sync-client"
    body = await post(client, image_prompt(prefix="sync"), client_id="sync-client")
    assert body["node_errors"] == {} and isinstance(body["number"], int)
    messages = await ws.until_done(body["prompt_id"])
    assert kinds(messages, body["prompt_id"]) == [
        "execution_start",
        "execution_cached",
        "executing",
        "executing",
        "executed",
        "execution_success",
        "executing",
    ]
    executed = next(m for m in messages if m["type"] == "executed")["data"]
    assert executed["node"] == "2" and executed["display_node"] == "2"
    history = await (await client.get(f"/history/{body['prompt_id']}")).json()
    entry = history[body["prompt_id"]]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_success",
    ]
    number, prompt_id, prompt, extra, outputs = entry["prompt"]
    assert (number, prompt_id, outputs) == (body["number"], body["prompt_id"], ["2"])
    assert prompt["2"]["class_type"] == "GFTestSave" and extra["client_id"] == "sync-client"
    image = entry["outputs"]["2"]["images"][0]
    view = await client.get("/view", params=image)
    assert view.status == 200 and view.content_type == "image/png"
    assert (await view.read())[:8] == b"\x89PNG\r\n\x1a\n"


async def test_history_is_readable_the_moment_execution_success_arrives(client):
    ws = await ComfyWs.open(client, "racer")
    body = await post(client, seed_prompt(5), client_id="racer")
    while True:
        message = await ws.next()
        if message["type"] == "execution_success":
            break
    history = await (await client.get(f"/history/{body['prompt_id']}")).json()
    assert history[body["prompt_id"]]["outputs"]["9"] == {"text": ["5"]}


async def test_a_client_that_connects_after_posting_still_gets_every_message(client):
    body = await post(client, image_prompt(steps=2, prefix="late"), client_id="late-client")
    for _ in range(200):  # let it finish before the socket exists
        if await (await client.get(f"/history/{body['prompt_id']}")).json():
            break
        await asyncio.sleep(0.02)
    ws = await ComfyWs.open(client, "late-client")
    first = await ws.next()
    assert first["type"] == "status" and first["data"]["sid"] == "late-client"
    messages = await ws.until_done(body["prompt_id"])
    seen = kinds(messages, body["prompt_id"])
    assert seen[0] == "execution_start" and seen[-2:] == ["execution_success", "executing"]
    assert seen.count("progress") == 2 and "executed" in seen
    assert ws.frames == []  # no previews for a socket that did not ask


async def test_an_async_client_with_feature_flags_gets_type_4_previews(client):
    ws = await ComfyWs.open(client, "flags")
    await ws.next()  # status
    await ws.ws.send_str(
        json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    )
    reply = await ws.next()
    assert reply["type"] == "feature_flags" and reply["data"]["supports_preview_metadata"]
    body = await post(client, image_prompt(steps=2, prefix="flags"), client_id="flags")
    await ws.until_done(body["prompt_id"])
    assert len(ws.frames) == 2 and all(frame_type(f) == 4 for f in ws.frames)
    length = int.from_bytes(ws.frames[0][4:8], "big")
    meta = json.loads(ws.frames[0][8 : 8 + length])
    assert meta["prompt_id"] == body["prompt_id"] and meta["node_id"] == "1"
    assert ws.frames[0][8 + length : 8 + length + 2] == b"\xff\xd8"  # JPEG


async def test_a_cached_rerun_sends_execution_cached_and_executed_again(client):
    ws = await ComfyWs.open(client, "again")
    first = await post(client, seed_prompt(11), client_id="again")
    await ws.until_done(first["prompt_id"])
    second = await post(client, seed_prompt(11), client_id="again")
    messages = await ws.until_done(second["prompt_id"])
    assert kinds(messages, second["prompt_id"]) == [
        "execution_start",
        "execution_cached",
        "executed",
        "execution_success",
        "executing",
    ]
    cached = next(m for m in messages if m["type"] == "execution_cached")["data"]["nodes"]
    assert sorted(cached) == ["3", "9"]


async def test_a_failing_node_sends_execution_error_with_comfyui_fields(client):
    ws = await ComfyWs.open(client, "failing")
    prompt = {
        "1": {"class_type": "GFTestFail", "inputs": {"value": 3}},
        "2": {"class_type": "GFTestShowInt", "inputs": {"value": ["1", 0]}},
    }
    body = await post(client, prompt, client_id="failing")
    messages = await ws.until_done(body["prompt_id"])
    error = next(m for m in messages if m["type"] == "execution_error")["data"]
    assert error["node_id"] == "1" and error["node_type"] == "GFTestFail"
    assert error["exception_type"] == "ValueError"
    assert "failing on purpose at 3" in error["exception_message"]
    assert isinstance(error["traceback"], list) and error["traceback"]
    history = await (await client.get(f"/history/{body['prompt_id']}")).json()
    assert history[body["prompt_id"]]["status"]["status_str"] == "error"


async def test_interrupt_sends_execution_interrupted(client):
    ws = await ComfyWs.open(client, "stopper")
    prompt = {
        "1": {"class_type": "GFTestGate", "inputs": {"value": 1}},
        "2": {"class_type": "GFTestShowInt", "inputs": {"value": ["1", 0]}},
    }
    body = await post(client, prompt, client_id="stopper")
    while (await ws.next())["type"] != "executing":
        pass
    response = await client.post("/interrupt", json={"prompt_id": body["prompt_id"]})
    assert response.status == 200
    messages = await ws.until_done(body["prompt_id"])
    stopped = next(m for m in messages if m["type"] == "execution_interrupted")["data"]
    assert stopped["node_id"] == "1" and stopped["node_type"] == "GFTestGate"


async def test_seed_2_64_minus_1_round_trips_exactly(client):
    body = await post(client, seed_prompt(SEED_MAX), client_id="seeds")
    ws = await ComfyWs.open(client, "seeds")
    await ws.until_done(body["prompt_id"])
    raw = await (await client.get(f"/history/{body['prompt_id']}")).text()
    entry = json.loads(raw)[body["prompt_id"]]
    assert entry["prompt"][2]["3"]["inputs"]["seed"] == SEED_MAX
    assert entry["outputs"]["9"] == {"text": [str(SEED_MAX)]}
    assert str(SEED_MAX) in raw and "1.8446744073709552e+19" not in raw


async def test_both_dialects_share_one_queue(client):
    GATE.clear()
    blocker = {
        "1": {"class_type": "GFTestGate", "inputs": {"value": 1}},
        "2": {"class_type": "GFTestShowInt", "inputs": {"value": ["1", 0]}},
    }
    running = await post(client, blocker)
    comfy_job = await post(client, seed_prompt(3), prompt_id="my-own-id")
    assert comfy_job["prompt_id"] == "my-own-id"
    document = {
        "format": "graphflow/1",
        "nodes": {
            "a": {"type": "core.float", "inputs": {"value": 2.0}},
            "b": {"type": "core.show", "inputs": {"value": {"link": ["a", "float"]}}},
        },
    }
    response = await client.post("/api/prompt", json={"workflow": document})
    graphflow_job = (await response.json())["job_id"]
    ours = await (await client.get("/api/queue")).json()
    assert [j["job_id"] for j in ours["pending"]] == ["my-own-id", graphflow_job]
    assert [j["job_id"] for j in ours["running"]] == [running["prompt_id"]]
    theirs = await (await client.get("/queue")).json()
    assert [item[1] for item in theirs["queue_pending"]] == ["my-own-id", graphflow_job]
    derived = theirs["queue_pending"][1][2]
    assert derived["b"] == {"inputs": {"value": ["a", 0]}, "class_type": "core.show",
                            "_meta": {"title": "Show Value"}}  # fmt: skip
    assert (await (await client.get("/prompt")).json())["exec_info"]["queue_remaining"] == 3
    GATE.set()
    for _ in range(300):
        history = await (await client.get("/history")).json()
        if len(history) == 3:
            break
        await asyncio.sleep(0.02)
    assert list(history) == [running["prompt_id"], "my-own-id", graphflow_job]
    record = await (await client.get("/api/history/my-own-id")).json()
    assert record["status"] == "done" and record["outputs"]["9"] == {"text": ["3"]}


async def test_a_reused_prompt_id_after_delete_shows_its_new_run(client):
    ws = await ComfyWs.open(client, "reuse")
    for seed in (21, 22):
        body = await post(client, seed_prompt(seed), client_id="reuse", prompt_id="same")
        await ws.until_done("same")
        history = await (await client.get("/history")).json()
        assert history["same"]["outputs"]["9"] == {"text": [str(seed)]}
        await client.post("/history", json={"delete": ["same"]})
        assert body["prompt_id"] == "same"
    assert await (await client.get("/history")).json() == {}


async def test_type_1_previews_when_the_comfy_previews_setting_is_on(make_client):
    from graphflow.settings import Settings

    client = await make_client(settings=Settings(comfy_previews=True))
    ws = await ComfyWs.open(client, "legacy")
    body = await post(client, image_prompt(steps=2, prefix="legacy"), client_id="legacy")
    await ws.until_done(body["prompt_id"])
    assert [frame_type(f) for f in ws.frames] == [1, 1]
    assert all(f[4:8] == b"\x00\x00\x00\x01" and f[8:10] == b"\xff\xd8" for f in ws.frames)
