"""A prompt queued again (the same ``POST /prompt`` bytes) reuses its parsed body and its
conversion, yet every job keeps its own number, editor data and node errors."""

from __future__ import annotations

import json

import pytest
from protocolkit import ComfyWs

from gf_comfy.protocol import prompts
from gf_comfy.protocol.state import COMFY

pytestmark = pytest.mark.asyncio

PARTLY_BAD = {
    "1": {"class_type": "core.float", "inputs": {"value": 3}},  # coerced to 3.0
    "2": {"class_type": "core.show", "inputs": {"value": ["1", 0]}},
    "3": {"class_type": "core.show", "inputs": {"value": ["99", 0]}},  # not in the prompt
    "4": {"class_type": "core.show", "inputs": {}},  # graphflow's validation finds this one
}


async def test_the_same_body_twice_is_converted_once_and_each_job_keeps_its_own_data(
    client, monkeypatch
):
    calls = []
    convert = prompts.convert_prompt
    monkeypatch.setattr(prompts, "convert_prompt", lambda *args: calls.append(1) or convert(*args))
    raw = json.dumps({"prompt": PARTLY_BAD, "client_id": "again"})
    headers = {"Content-Type": "application/json"}
    ws = await ComfyWs.open(client, "again")
    answers = []
    for _ in range(2):
        response = await client.post("/prompt", data=raw, headers=headers)
        answers.append(await response.json())
        assert response.status == 200, answers[-1]
        await ws.until_done(answers[-1]["prompt_id"])
    assert len(calls) == 1  # the second POST reused the conversion
    first, second = answers
    assert first["prompt_id"] != second["prompt_id"] and first["number"] != second["number"]
    # The problems are the job's own: the second job's list is not the first one's, grown.
    assert second["node_errors"] == first["node_errors"]
    assert [e["type"] for e in second["node_errors"]["3"]["errors"]] == [
        "exception_during_validation"
    ]
    assert len(second["node_errors"]["4"]["errors"]) == 1
    for answer in answers:
        entry = (await (await client.get(f"/history/{answer['prompt_id']}")).json())[
            answer["prompt_id"]
        ]
        number, prompt_id, prompt, extra, outputs = entry["prompt"]
        assert (number, prompt_id, outputs) == (answer["number"], answer["prompt_id"], ["2"])
        assert prompt["1"]["inputs"]["value"] == 3.0 and extra["client_id"] == "again"
        assert entry["status"]["status_str"] == "success"


async def test_a_changed_body_is_converted_anew(client, monkeypatch):
    calls = []
    convert = prompts.convert_prompt
    monkeypatch.setattr(prompts, "convert_prompt", lambda *args: calls.append(1) or convert(*args))
    for value in (1.0, 2.0):
        prompt = {
            "1": {"class_type": "core.float", "inputs": {"value": value}},
            "2": {"class_type": "core.show", "inputs": {"value": ["1", 0]}},
        }
        response = await client.post("/prompt", json={"prompt": prompt})
        assert response.status == 200, await response.json()
    assert len(calls) == 2
    assert len(client.app[COMFY].conversions._entries) == 2


async def test_the_cache_is_bounded():
    cache = prompts.Conversions(max_entries=2, max_body=10)
    registry = object()
    for raw in (b"a", b"b", b"c", b"x" * 11):
        cache.put(cache.key(raw), len(raw), registry, {"raw": raw}, None)
    assert cache.get(cache.key(b"a"), registry) is None  # the oldest went first
    assert cache.get(cache.key(b"c"), registry) == ({"raw": b"c"}, None)
    assert cache.get(cache.key(b"x" * 11), registry) is None  # too big to keep
    assert cache.get(cache.key(b"c"), object()) is None  # another registry's
