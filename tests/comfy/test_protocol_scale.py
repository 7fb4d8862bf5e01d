"""ComfyUI's validation fails past about 980 chained nodes (its issue #14911); through
graphflow's ComfyUI dialect a 10,000-node chain validates, runs and is reported."""

from __future__ import annotations

import pytest
from protocolkit import ComfyWs

pytestmark = pytest.mark.asyncio

LENGTH = 10_000


def chain(length: int) -> dict:
    """core.float → (length − 1) core.add → core.show, links by output index."""
    prompt = {"0": {"class_type": "core.float", "inputs": {"value": 0.5}}}
    for i in range(1, length):
        prompt[str(i)] = {"class_type": "core.add", "inputs": {"a": [str(i - 1), 0], "b": 1.0}}
    prompt["out"] = {"class_type": "core.show", "inputs": {"value": [str(length - 1), 0]}}
    return prompt


async def test_a_10000_node_chain_validates_runs_and_reaches_history(client):
    ws = await ComfyWs.open(client, "long-chain")
    response = await client.post(
        "/prompt", json={"prompt": chain(LENGTH), "client_id": "long-chain"}
    )
    body = await response.json()
    assert response.status == 200 and body["node_errors"] == {}, body
    messages = await ws.until_done(body["prompt_id"], timeout=120)
    assert any(m["type"] == "execution_success" for m in messages)
    history = await (await client.get(f"/history/{body['prompt_id']}")).json()
    entry = history[body["prompt_id"]]
    assert entry["status"]["status_str"] == "success"
    shown = entry["outputs"]["out"]
    assert str(0.5 + (LENGTH - 1)) in str(shown), shown


async def test_a_cycle_in_a_long_chain_is_named(client):
    prompt = chain(2_000)
    prompt["0"] = {"class_type": "core.add", "inputs": {"a": ["1999", 0], "b": 1.0}}
    response = await client.post("/prompt", json={"prompt": prompt})
    body = await response.json()
    assert response.status == 400
    assert body["node_errors"], body  # ComfyUI answers a cycle with empty node_errors
    named = {node for node, error in body["node_errors"].items()
             if any(e["type"] == "dependency_cycle" for e in error["errors"])}  # fmt: skip
    assert {"0", "1", "1999"} <= named
