"""ComfyUI's own class types through the protocol: an unmodified API prompt runs, its
SaveImage output is listed in the history and served by /view with the prompt and the
client's extra_pnginfo in the PNG, as ComfyUI writes them."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from protocolkit import ComfyWs

pytestmark = pytest.mark.asyncio

PROMPT = {
    "5": {
        "class_type": "EmptyImage",
        "inputs": {"width": 16, "height": 8, "batch_size": 1, "color": 0x204060},
        "_meta": {"title": "EmptyImage"},
    },
    "6": {"class_type": "ImageInvert", "inputs": {"image": ["5", 0]}},
    "9": {
        "class_type": "SaveImage",
        "inputs": {"images": ["6", 0], "filename_prefix": "proto/run"},
        "_meta": {"title": "Save Image"},
    },
}


async def test_an_api_prompt_of_comfyui_classes_runs_and_its_image_is_served(client):
    workflow = {"nodes": [], "links": [], "version": 0.4, "extra": {"note": "from the UI"}}
    body = {
        "prompt": PROMPT,
        "client_id": "real",
        "extra_data": {"extra_pnginfo": {"workflow": workflow}, "api_key_comfy_org": "secret"},
    }
    ws = await ComfyWs.open(client, "real")
    response = await client.post("/prompt", json=body)
    answer = await response.json()
    assert response.status == 200 and answer["node_errors"] == {}, answer
    messages = await ws.until_done(answer["prompt_id"])
    executed = [m["data"] for m in messages if m["type"] == "executed"]
    assert [e["node"] for e in executed] == ["9"]
    image = executed[0]["output"]["images"][0]
    assert image == {"filename": "run_00001_.png", "subfolder": "proto", "type": "output"}
    entry = (await (await client.get(f"/history/{answer['prompt_id']}")).json())[
        answer["prompt_id"]
    ]
    assert entry["outputs"]["9"]["images"] == [image]
    extra = entry["prompt"][3]
    assert "api_key_comfy_org" not in extra and extra["client_id"] == "real"
    view = await client.get("/view", params=image)
    assert view.status == 200
    png = Image.open(io.BytesIO(await view.read()))
    assert png.size == (16, 8)
    assert png.convert("RGB").getpixel((0, 0)) == (255 - 0x20, 255 - 0x40, 255 - 0x60)
    assert json.loads(png.text["prompt"]) == entry["prompt"][2]
    assert json.loads(png.text["workflow"]) == workflow
