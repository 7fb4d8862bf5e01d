"""POST /api/workflow/import (the editor's import of foreign workflows and PNGs) and
POST /api/prompt reading ComfyUI documents through the server's registry."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from serverkit import chain

pytestmark = pytest.mark.asyncio

COMFY = Path(__file__).parents[2] / "workflows" / "comfy"
IMPORT = "/api/workflow/import"


def comfy_api() -> dict:
    return json.loads((COMFY / "txt2img_api.json").read_text())


def comfy_ui() -> dict:
    return json.loads((COMFY / "txt2img_ui.json").read_text())


def invert_prompt(width: int = 8) -> dict:
    """ComfyUI's EmptyImage → ImageInvert → SaveImage: runs without any model."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": 8, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": "inverted"},
        },
    }


def png_with(texts: dict[str, str]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, text in texts.items():
        info.add_text(key, text)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


async def post_png(api, data: bytes):
    return await api.client.post(IMPORT, data=data, headers={"Content-Type": "image/png"})


async def test_api_format_imports_with_the_same_node_ids_and_keeps_the_prompt(api):
    prompt = comfy_api()
    response = await api.client.post(IMPORT, json=prompt)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["format"] == "comfy-api"
    assert answer["label"] == f"ComfyUI API format ({len(prompt)} nodes)"
    workflow = answer["workflow"]
    assert workflow["format"] == "graphflow/1"
    assert set(workflow["nodes"]) == set(prompt)
    assert workflow["nodes"]["3"]["type"] == "comfy.k_sampler"
    assert workflow["nodes"]["3"]["inputs"]["model"] == {"link": ["4", "model"]}
    assert workflow["editor"]["comfy"]["prompt"] == prompt
    assert answer["problems"] == []


async def test_ui_format_imports_without_its_note_and_says_so(api):
    ui = comfy_ui()
    answer = await (await api.client.post(IMPORT, json=ui)).json()
    assert answer["format"] == "comfy-ui"
    kept = [n for n in ui["nodes"] if n["type"] != "Note"]
    assert answer["label"] == f"ComfyUI UI format ({len(ui['nodes'])} nodes → {len(kept)})"
    assert set(answer["workflow"]["nodes"]) == {str(n["id"]) for n in kept}
    assert answer["workflow"]["editor"]["comfy"]["workflow"] == ui
    assert answer["problems"] == []


async def test_comfyui_png_is_read_from_its_prompt_chunk_with_the_workflow_kept(api):
    prompt, ui = comfy_api(), comfy_ui()
    data = png_with({"prompt": json.dumps(prompt), "workflow": json.dumps(ui)})
    response = await post_png(api, data)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["format"] == "comfy-api"
    assert answer["label"].startswith("ComfyUI API format (from the PNG's 'prompt' chunk)")
    assert answer["workflow"]["editor"]["comfy"]["prompt"] == prompt
    assert answer["workflow"]["editor"]["comfy"]["workflow"] == ui


async def test_comfyui_png_with_only_a_workflow_chunk_imports_the_ui_format(api):
    answer = await (await post_png(api, png_with({"workflow": json.dumps(comfy_ui())}))).json()
    assert answer["format"] == "comfy-ui"


async def test_graphflow_documents_and_pngs_come_back_as_they_are(api):
    document = chain(2)
    answer = await (await api.client.post(IMPORT, json=document)).json()
    assert answer == {"workflow": document, "format": "graphflow/1", "label": "graphflow/1",
                      "problems": []}  # fmt: skip
    data = png_with({"graphflow_workflow": json.dumps(document), "prompt": "{}"})
    from_png = await (await post_png(api, data)).json()
    assert from_png["workflow"] == document and from_png["format"] == "graphflow/1"


async def test_every_unknown_class_type_is_listed_with_its_nodes_as_a_422(api):
    prompt = invert_prompt()
    prompt["4"] = {"class_type": "FancyUpscaler", "inputs": {"image": ["2", 0]}}
    prompt["5"] = {"class_type": "FancyUpscaler", "inputs": {"image": ["2", 0]}}
    prompt["6"] = {"class_type": "MagicMask", "inputs": {}}
    response = await api.client.post(IMPORT, json=prompt)
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "import_failed" and error["format"] == "comfy-api"
    assert error["message"] == "ComfyUI API format cannot be imported: 1 problem"
    [problem] = error["errors"]
    assert problem["code"] == "unknown_node_type"
    assert "FancyUpscaler (nodes 4, 5)" in problem["message"]
    assert "MagicMask (node 6)" in problem["message"]


async def test_an_unknown_ui_node_type_is_a_422_naming_it(api):
    ui = comfy_ui()
    ui["nodes"][0]["type"] = "SomeCustomPackLoader"
    response = await api.client.post(IMPORT, json=ui)
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["format"] == "comfy-ui"
    assert any("SomeCustomPackLoader" in problem["message"] for problem in error["errors"])


async def test_validation_problems_of_an_imported_workflow_come_with_the_workflow(api):
    """The editor loads work in progress: an out-of-range value is listed, not refused."""
    answer = await (await api.client.post(IMPORT, json=invert_prompt(width=0))).json()
    assert answer["format"] == "comfy-api"
    assert [(p["code"], p["node"], p["input"]) for p in answer["problems"]] == [
        ("out_of_range", "1", "width")
    ]


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"this is not json", "application/json", "invalid_json"),
        (b"[1, 2]", "application/json", "invalid_document"),
        (b'{"hello": "world"}', "application/json", "invalid_document"),
        (b"GIF89a....", "image/png", "invalid_document"),
        (b"{}", "text/plain", "wrong_content_type"),
        (b"", "application/json", "empty_body"),
    ],
)
async def test_what_is_no_workflow_is_a_400_with_a_reason(api, body, content_type, code):
    response = await api.client.post(IMPORT, data=body, headers={"Content-Type": content_type})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == code


async def test_a_document_in_no_known_format_names_the_formats_read(api):
    error = (await (await api.client.post(IMPORT, json={"hello": "world"})).json())["error"]
    assert "ComfyUI API format" in error["message"] and "graphflow/1" in error["message"]


async def test_a_png_without_a_workflow_lists_its_text_chunks(api):
    response = await post_png(api, png_with({"Software": "some camera"}))
    assert response.status == 400
    assert "'Software'" in (await response.json())["error"]["message"]


async def test_the_node_and_size_limits_apply(make_api):
    api = await make_api(max_nodes=2, max_body_bytes=4096)
    too_many = await api.client.post(IMPORT, json=invert_prompt())
    assert too_many.status == 413
    assert (await too_many.json())["error"]["code"] == "workflow_too_large"
    too_big = await api.client.post(IMPORT, json={"x": "y" * 5000})
    assert too_big.status == 413
    assert (await too_big.json())["error"]["code"] == "body_too_large"


async def test_a_foreign_origin_cannot_import(api):
    response = await api.client.post(
        IMPORT, json=invert_prompt(), headers={"Origin": "http://evil.example"}
    )
    assert response.status == 403


async def test_api_prompt_runs_a_comfyui_api_document_and_says_what_it_read(api):
    response = await api.client.post("/api/prompt", json={"workflow": invert_prompt()})
    assert response.status == 200, await response.text()
    accepted = await response.json()
    assert accepted["read_as"] == "ComfyUI API format (3 nodes)"
    record = await api.wait_finished(accepted["job_id"])
    assert record["status"] == "done", record.get("error")
    assert record["workflow"]["format"] == "graphflow/1"  # stored converted, as it ran
    assert record["workflow"]["nodes"]["2"]["type"] == "comfy.image_invert"
    [image] = record["outputs"]["3"]["images"]
    assert image["filename"].startswith("inverted")


async def test_api_prompt_says_graphflow_documents_are_read_as_graphflow(api):
    accepted = await (await api.client.post("/api/prompt", json={"workflow": chain(2)})).json()
    assert accepted["read_as"] == "graphflow/1"


async def test_api_prompt_lists_every_unknown_class_type_of_a_ui_document(api):
    ui = comfy_ui()
    ui["nodes"][0]["type"] = "SomeCustomPackLoader"
    response = await api.client.post("/api/prompt", json={"workflow": ui})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "validation_failed"
    assert any("SomeCustomPackLoader" in problem["message"] for problem in error["errors"])
