"""POST /prompt refusals in ComfyUI's shapes (``error`` + ``node_errors``, every problem
listed), coercion, partial validity, bodies of any Content-Type, queue order."""

from __future__ import annotations

import asyncio
import json

import pytest
from protocolkit import GATE, ComfyWs, seed_prompt

pytestmark = pytest.mark.asyncio


async def send(client, body, **kwargs):
    response = await client.post(
        "/prompt", **({"json": body} if body is not None else {}), **kwargs
    )
    return response.status, await response.json()


def errors_of(body, node_id):
    return [err["type"] for err in body["node_errors"][node_id]["errors"]]


async def test_no_prompt_key(client):
    status, body = await send(client, {"client_id": "x"})
    assert status == 400 and body["error"]["type"] == "no_prompt" and body["node_errors"] == {}


async def test_a_ui_format_body_is_a_400_saying_what_to_do(client):
    workflow = {"nodes": [{"id": 1, "type": "KSampler"}], "links": [], "version": 0.4}
    for body in (workflow, {"prompt": workflow}):
        status, reply = await send(client, body)
        assert status == 400 and reply["error"]["type"] == "invalid_prompt"
        assert "UI-format" in reply["error"]["message"]
        assert "graphflow convert" in reply["error"]["message"]


async def test_a_non_json_body_is_a_400_not_a_500(client):
    response = await client.post(
        "/prompt", data=b"{not json", headers={"Content-Type": "text/plain"}
    )
    body = await response.json()
    assert response.status == 400 and body["error"]["type"] == "invalid_json"
    assert set(body) == {"error", "node_errors"}


@pytest.mark.parametrize(
    "content_type", [None, "application/x-www-form-urlencoded", "text/plain", "application/json"]
)
async def test_json_is_read_whatever_the_content_type(client, content_type):
    raw = json.dumps({"prompt": seed_prompt(4)}).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await client.post("/prompt", data=raw, headers=headers)
    assert response.status == 200, await response.text()


async def test_unknown_class_types_are_all_listed(client):
    prompt = seed_prompt(1)
    prompt["5"] = {"class_type": "NoSuchNode", "inputs": {}}
    prompt["6"] = {"class_type": "AlsoMissing", "inputs": {}}
    prompt["7"] = {"inputs": {}}
    status, body = await send(client, {"prompt": prompt})
    assert status == 400 and body["error"]["type"] == "invalid_prompt"
    assert set(body["node_errors"]) == {"5", "6", "7"}
    assert "NoSuchNode" in body["error"]["message"] and "AlsoMissing" in body["error"]["details"]
    assert errors_of(body, "7") == ["invalid_prompt"]


async def test_every_input_problem_is_listed_per_node(client):
    prompt = {
        "1": {"class_type": "GFTestSeed", "inputs": {"seed": -1, "scale": "abc"}},
        "2": {"class_type": "GFTestShowInt", "inputs": {"value": ["1"]}},
        "3": {"class_type": "GFTestShowInt", "inputs": {}},
        "4": {"class_type": "GFTestShowInt", "inputs": {"value": ["99", 0]}},
        "5": {"class_type": "GFTestShowInt", "inputs": {"value": ["1", 3]}},
        "6": {"class_type": "core.round", "inputs": {"value": 1.5, "mode": "sideways"}},
        "7": {"class_type": "GFTestShowInt", "inputs": {"value": ["6", 0]}},
        "8": {"class_type": "GFTestSeed", "inputs": {"seed": 2**64}},
        "9": {"class_type": "GFTestShowInt", "inputs": {"value": ["8", 0]}},
        "10": {"class_type": "GFTestShowInt", "inputs": {"value": ["1", 0]}},
    }
    status, body = await send(client, {"prompt": prompt})
    assert status == 400 and body["error"]["type"] == "prompt_outputs_failed_validation"
    errors = body["node_errors"]
    assert sorted(errors_of(body, "1")) == ["invalid_input_type", "value_smaller_than_min"]
    assert errors_of(body, "2") == ["bad_linked_input"]
    assert errors_of(body, "3") == ["required_input_missing"]
    assert errors_of(body, "4") == ["exception_during_validation"]
    assert errors["4"]["errors"][0]["extra_info"]["exception_type"] == "KeyError"
    assert errors["5"]["errors"][0]["extra_info"]["exception_type"] == "IndexError"
    assert errors_of(body, "6") == ["value_not_in_list"]
    assert "sideways" in errors["6"]["errors"][0]["details"]
    assert errors_of(body, "8") == ["value_bigger_than_max"]
    assert errors["1"]["dependent_outputs"] == ["10"] and errors["1"]["class_type"] == "GFTestSeed"
    smaller = next(e for e in errors["1"]["errors"] if e["type"] == "value_smaller_than_min")
    assert smaller["extra_info"]["input_name"] == "seed"


async def test_a_cycle_names_its_nodes(client):
    prompt = {
        "1": {"class_type": "GFTestSeed", "inputs": {"seed": ["2", 0]}},
        "2": {"class_type": "GFTestSeed", "inputs": {"seed": ["1", 0]}},
        "9": {"class_type": "GFTestShowInt", "inputs": {"value": ["2", 0]}},
    }
    status, body = await send(client, {"prompt": prompt})
    assert status == 400
    assert set(body["node_errors"]) == {"1", "2"}
    err = body["node_errors"]["1"]["errors"][0]
    assert err["type"] == "dependency_cycle" and set(err["extra_info"]["nodes"]) == {"1", "2"}


async def test_values_are_coerced_as_comfyui_does_and_stored_coerced(client):
    prompt = seed_prompt("9", scale=True)
    status, body = await send(client, {"prompt": prompt, "client_id": "coerce"})
    assert status == 200, body
    ws = await ComfyWs.open(client, "coerce")
    await ws.until_done(body["prompt_id"])
    entry = (await (await client.get(f"/history/{body['prompt_id']}")).json())[body["prompt_id"]]
    assert entry["prompt"][2]["3"]["inputs"] == {"seed": 9, "scale": 1.0}
    assert entry["outputs"]["9"] == {"text": ["9"]}
    status, body = await send(client, {"prompt": seed_prompt(8.7)})
    assert status == 200 and body["node_errors"] == {}


async def test_valid_outputs_run_when_others_fail_validation(client):
    prompt = seed_prompt(2)
    prompt["20"] = {"class_type": "GFTestShowInt", "inputs": {}}
    status, body = await send(client, {"prompt": prompt, "client_id": "partly"})
    assert status == 200 and list(body["node_errors"]) == ["20"]
    assert body["node_errors"]["20"]["dependent_outputs"] == ["20"]
    ws = await ComfyWs.open(client, "partly")
    await ws.until_done(body["prompt_id"])
    entry = (await (await client.get(f"/history/{body['prompt_id']}")).json())[body["prompt_id"]]
    assert list(entry["outputs"]) == ["9"] and entry["prompt"][4] == ["9"]


async def test_partial_execution_targets_run_only_those_outputs(client):
    prompt = seed_prompt(2)
    prompt["10"] = {"class_type": "GFTestShowInt", "inputs": {"value": ["3", 0]}}
    status, body = await send(
        client, {"prompt": prompt, "client_id": "targets", "partial_execution_targets": ["10"]}
    )
    assert status == 200, body
    ws = await ComfyWs.open(client, "targets")
    await ws.until_done(body["prompt_id"])
    entry = (await (await client.get(f"/history/{body['prompt_id']}")).json())[body["prompt_id"]]
    assert list(entry["outputs"]) == ["10"]
    status, body = await send(client, {"prompt": prompt, "partial_execution_targets": ["3"]})
    assert status == 400 and body["error"]["type"] == "prompt_no_outputs"


async def test_front_and_number_order_the_queue_and_post_queue_deletes(client):
    GATE.clear()
    blocker = {
        "1": {"class_type": "GFTestGate", "inputs": {"value": 1}},
        "2": {"class_type": "GFTestShowInt", "inputs": {"value": ["1", 0]}},
    }
    await send(client, {"prompt": blocker})
    ids = {}
    for name, extra in [("a", {}), ("b", {}), ("front", {"front": True}), ("low", {"number": -50})]:
        status, body = await send(client, {"prompt": seed_prompt(1), "prompt_id": name, **extra})
        assert status == 200 and body["prompt_id"] == name
        ids[name] = body["number"]
    assert ids["front"] < 0 and ids["low"] == -50
    queue = await (await client.get("/queue")).json()
    order = [item[1] for item in sorted(queue["queue_pending"], key=lambda item: item[0])]
    pending_api = [j["job_id"] for j in (await (await client.get("/api/queue")).json())["pending"]]
    assert order == pending_api == ["low", "front", "a", "b"]
    status, body = await send(client, {"prompt": seed_prompt(1), "prompt_id": "a"})
    assert status == 400 and "already used" in body["error"]["message"]
    response = await client.post("/queue", json={"delete": ["a", "nope"]})
    assert response.status == 200
    queue = await (await client.get("/queue")).json()
    assert sorted(item[1] for item in queue["queue_pending"]) == ["b", "front", "low"]
    await client.post("/queue", json={"clear": True})
    assert (await (await client.get("/queue")).json())["queue_pending"] == []
    GATE.set()
    for _ in range(300):
        if not (await (await client.get("/queue")).json())["queue_running"]:
            break
        await asyncio.sleep(0.02)
    history = await (await client.get("/history")).json()
    assert len(history) == 1  # the cancelled pending prompts never ran: not in ComfyUI's history
    await client.post("/history", json={"clear": True})
    assert await (await client.get("/history")).json() == {}


async def test_text_that_is_not_unicode_is_a_400_and_a_link_shaped_literal_a_value(client):
    raw = json.dumps({"prompt": {
        "1": {"class_type": "core.string", "inputs": {"value": "\ud800"}},
        "2": {"class_type": "core.show", "inputs": {"value": ["1", 0]}},
    }})  # fmt: skip
    response = await client.post("/prompt", data=raw.encode())
    body = await response.json()
    assert response.status == 400 and body["error"]["type"] == "invalid_prompt"
    assert "Unicode" in body["error"]["message"]
    prompt = {"2": {"class_type": "core.show", "inputs": {"value": {"link": 5}}}}
    status, body = await send(client, {"prompt": prompt})
    assert status == 200 and body["node_errors"] == {}  # a literal, as graphflow reads it


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"prompt": {}}, "prompt_no_outputs"),
        ({"prompt": {"1": 5}}, "invalid_prompt"),
        ({"prompt": []}, "invalid_prompt"),
        ([1, 2], "invalid_prompt"),
        ({"prompt": {"3": {"class_type": "GFTestSeed"}}, "number": "first"}, "invalid_prompt"),
        ({"prompt": {"3": {"class_type": "GFTestSeed", "inputs": []}}}, "invalid_prompt"),
    ],
)
async def test_malformed_bodies_are_400s_in_comfyui_shape(client, body, kind):
    status, reply = await send(client, body)
    assert status == 400 and reply["error"]["type"] == kind
    assert set(reply) == {"error", "node_errors"}
    assert set(reply["error"]) == {"type", "message", "details", "extra_info"}
