"""The ComfyUI feed's edges: held messages are bounded, a prompt without client_id shows
others only status and progress, and the queue (with ComfyUI's data) survives a restart."""

from __future__ import annotations

import asyncio
import json

import pytest
from protocolkit import GATE, ComfyWs, seed_prompt

from gf_comfy.protocol.feed import ComfyFeed
from graphflow.events import NodeStarted, Progress, RunStarted

pytestmark = pytest.mark.asyncio


class _Queue:
    def active_counts(self):
        return {"pending": 0, "running": 0}


class _State:
    queue = _Queue()
    registry = None


async def test_only_step_progress_reaches_comfyui_clients_not_element_progress():
    feed = ComfyFeed(_State(), hold_seconds=5, hold_bytes=100_000, hold_total=100_000)
    feed.expect("c", "p", {})
    feed.job_event("c", "p", RunStarted("r", planned=("1",)))
    feed.job_event("c", "p", NodeStarted("r", node="1"))
    feed.job_event("c", "p", Progress("r", node="1", value=1, total=3, element=0, elements=2))
    feed.job_event("c", "p", Progress("r", node="1", value=1, total=2, unit="element", elements=2))
    feed.job_event("c", "p", Progress("r", node="1", value=2, total=3, element=1, elements=2))
    sent = [json.loads(text) for _, text in feed.held["c"].items]
    progress = [m["data"] for m in sent if m["type"] == "progress"]
    assert [(p["value"], p["max"]) for p in progress] == [(1, 3), (2, 3)]


async def test_held_messages_are_bounded_in_bytes_and_time():
    feed = ComfyFeed(_State(), hold_seconds=0.2, hold_bytes=2000, hold_total=5000)
    feed.expect("slow", "p1", {})
    for i in range(100):
        feed.send("slow", "progress", {"value": i, "max": 100, "prompt_id": "p1", "node": "1"})
    held = feed.held["slow"]
    assert 0 < held.size <= 2000 and len(held.items) < 100
    assert '"value":99' in held.items[-1][1]  # the newest are kept
    for n in range(10):  # many waiting clients: all held messages stay within hold_total
        feed.expect(f"c{n}", f"q{n}", {})
        for i in range(50):
            feed.send(f"c{n}", "progress", {"value": i, "max": 50, "prompt_id": "q", "node": "1"})
    feed.sweep()
    assert sum(h.size for h in feed.held.values()) <= 5000
    await asyncio.sleep(0.25)
    feed.sweep()
    assert feed.held == {} and feed.expected == {}
    feed.send("slow", "executing", {"node": None, "prompt_id": "p1"})
    assert feed.held == {}  # no longer expected: dropped, not held


async def test_a_prompt_without_client_id_shows_others_only_status_and_progress(client):
    watcher = await ComfyWs.open(client, "watcher")
    await watcher.next()
    prompt = {
        "1": {"class_type": "GFTestImage", "inputs": {"width": 4, "steps": 3}},
        "2": {"class_type": "GFTestSave", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    response = await client.post("/prompt", json={"prompt": prompt})
    prompt_id = (await response.json())["prompt_id"]
    for _ in range(300):
        if await (await client.get(f"/history/{prompt_id}")).json():
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    while True:
        try:
            await watcher.next(timeout=0.2)
        except asyncio.TimeoutError:
            break
    seen = {m["type"] for m in watcher.messages}
    assert seen == {"status", "progress"}
    assert [m["data"]["value"] for m in watcher.messages if m["type"] == "progress"] == [1, 2, 3]
    assert watcher.frames == []


async def test_pending_prompts_survive_a_restart_with_their_comfyui_data(make_client):
    GATE.clear()
    first = await make_client()
    blocker = {
        "1": {"class_type": "GFTestGate", "inputs": {"value": 1}},
        "2": {"class_type": "GFTestShowInt", "inputs": {"value": ["1", 0]}},
    }
    await first.post("/prompt", json={"prompt": blocker, "prompt_id": "blocker"})
    body = {"prompt": seed_prompt(2**64 - 1), "prompt_id": "kept", "number": 41.5,
            "extra_data": {"note": "kept"}}  # fmt: skip
    assert (await first.post("/prompt", json=body)).status == 200
    await first.close()
    GATE.set()
    second = await make_client()
    for _ in range(300):
        history = await (await second.get("/history")).json()
        if "kept" in history:
            break
        await asyncio.sleep(0.02)
    entry = history["kept"]
    assert entry["prompt"][0] == 41.5 and entry["prompt"][3] == {"note": "kept"}
    assert entry["outputs"]["9"] == {"text": [str(2**64 - 1)]}
    later = await (await second.post("/prompt", json={"prompt": seed_prompt(1)})).json()
    assert later["number"] > 1  # default numbers go on growing after a restart


async def test_a_client_reconnecting_mid_run_is_told_the_node_now_running(client):
    GATE.clear()
    prompt = {
        "1": {"class_type": "GFTestGate", "inputs": {"value": 1}},
        "2": {"class_type": "GFTestShowInt", "inputs": {"value": ["1", 0]}},
    }
    first = await ComfyWs.open(client, "again")
    await first.next()
    response = await client.post("/prompt", json={"prompt": prompt, "client_id": "again"})
    prompt_id = (await response.json())["prompt_id"]
    while (await first.next())["type"] != "executing":
        pass
    await first.ws.close()
    second = await ComfyWs.open(client, "again")
    assert (await second.next())["data"]["sid"] == "again"
    now = await second.next()
    assert now["type"] == "executing" and now["data"]["node"] == "1"
    assert now["data"]["prompt_id"] == prompt_id
    GATE.set()
    rest = await second.until_done(prompt_id)
    assert [m["type"] for m in rest][-2:] == ["status", "executing"]
