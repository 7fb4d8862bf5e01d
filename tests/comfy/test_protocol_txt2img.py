"""The README's job as a ComfyUI client sends it (workflows/comfy/txt2img_api.json, fewer
steps to stay quick) on graphflow-tiny: POST /prompt → progress per step → executed →
/history → /view of a PNG that carries the prompt."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from protocolkit import ComfyWs, kinds

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]  # loads graphflow-tiny: ~10 s

WORKFLOW = Path(__file__).parents[2] / "workflows" / "comfy" / "txt2img_api.json"


async def test_the_readme_txt2img_prompt_runs_over_the_protocol(client):
    prompt = json.loads(WORKFLOW.read_text())
    if "KSampler" not in await (await client.get("/object_info/KSampler")).json():
        pytest.skip("the KSampler class type is not registered")
    prompt["3"]["inputs"]["steps"] = 2
    prompt["5"]["inputs"]["batch_size"] = 1
    ws = await ComfyWs.open(client, "tiny")
    response = await client.post("/prompt", json={"prompt": prompt, "client_id": "tiny"})
    answer = await response.json()
    assert response.status == 200 and answer["node_errors"] == {}, answer
    messages = await ws.until_done(answer["prompt_id"], timeout=120)
    seen = kinds(messages, answer["prompt_id"])
    assert "execution_error" not in seen, messages
    assert seen[-2:] == ["execution_success", "executing"]
    steps = [m["data"] for m in messages if m["type"] == "progress" and m["data"]["node"] == "3"]
    assert [(s["value"], s["max"]) for s in steps] == [(1, 2), (2, 2)]
    entry = (await (await client.get(f"/history/{answer['prompt_id']}")).json())[
        answer["prompt_id"]
    ]
    image = entry["outputs"]["9"]["images"][0]
    png = Image.open(io.BytesIO(await (await client.get("/view", params=image)).read()))
    assert json.loads(png.text["prompt"])["3"]["class_type"] == "KSampler"
