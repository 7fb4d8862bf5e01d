"""Uploads, /api/view, and the editor's saved workflows."""

from __future__ import annotations

import io

import aiohttp
import pytest
from serverkit import chain

pytestmark = pytest.mark.asyncio


def png(color=(10, 20, 30), size=(8, 8)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def form(data: bytes, filename: str = "cat.png", **fields: str) -> aiohttp.FormData:
    result = aiohttp.FormData()
    result.add_field("image", data, filename=filename, content_type="application/octet-stream")
    for key, value in fields.items():
        result.add_field(key, value)
    return result


async def test_an_uploaded_image_is_stored_and_can_be_viewed(api):
    data = png()
    response = await api.client.post("/api/upload/image", data=form(data))
    body = await response.json()
    assert response.status == 200
    assert body == {
        "name": "cat.png",
        "subfolder": "",
        "type": "input",
        "format": "png",
        "width": 8,
        "height": 8,
    }
    view = await api.client.get("/api/view", params={"filename": "cat.png", "type": "input"})
    assert view.status == 200
    assert view.headers["Content-Type"] == "image/png"
    assert await view.read() == data


async def test_the_stored_extension_follows_the_detected_format(api):
    response = await api.client.post("/api/upload/image", data=form(jpeg(), filename="a.png"))
    assert (await response.json())["name"] == "a.jpg"


async def test_uploading_the_same_bytes_twice_reuses_the_name(api):
    first = await (await api.client.post("/api/upload/image", data=form(png()))).json()
    second = await (await api.client.post("/api/upload/image", data=form(png()))).json()
    assert first["name"] == second["name"] == "cat.png"
    assert len(list(api.state.folders["input"].iterdir())) == 1


async def test_a_different_image_with_the_same_name_gets_a_new_name(api):
    await api.client.post("/api/upload/image", data=form(png((1, 2, 3))))
    second = await (await api.client.post("/api/upload/image", data=form(png((4, 5, 6))))).json()
    assert second["name"] == "cat_1.png"


async def test_overwrite_replaces_the_file(api):
    await api.client.post("/api/upload/image", data=form(png((1, 2, 3))))
    new = png((4, 5, 6))
    body = await (
        await api.client.post("/api/upload/image", data=form(new, overwrite="true"))
    ).json()
    assert body["name"] == "cat.png"
    assert (api.state.folders["input"] / "cat.png").read_bytes() == new


async def test_uploads_go_into_a_subfolder_and_temp_when_asked(api):
    body = await (
        await api.client.post(
            "/api/upload/image", data=form(png(), subfolder="masks/a", type="temp")
        )
    ).json()
    assert body["subfolder"] == "masks/a" and body["type"] == "temp"
    assert (api.state.folders["temp"] / "masks" / "a" / "cat.png").is_file()


async def test_an_upload_without_an_image_field_is_400(api):
    data = aiohttp.FormData(default_to_multipart=True)
    data.add_field("type", "input")
    response = await api.client.post("/api/upload/image", data=data)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_upload"


async def test_view_of_a_missing_file_is_404(api):
    response = await api.client.get("/api/view", params={"filename": "nope.png"})
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "file_not_found"


async def test_view_needs_a_filename(api):
    response = await api.client.get("/api/view")
    assert response.status == 400


async def test_saved_workflows_can_be_put_listed_read_and_deleted(api):
    document = chain(2)
    created = await api.client.put("/api/workflows/my flow", json=document)
    assert created.status == 201
    assert await created.json() == {"name": "my flow", "created": True}
    replaced = await api.client.put("/api/workflows/my flow.json", json=document)
    assert replaced.status == 200
    listing = await (await api.client.get("/api/workflows")).json()
    assert [w["name"] for w in listing["workflows"]] == ["my flow"]
    read = await api.client.get("/api/workflows/my flow")
    assert read.status == 200
    assert await read.json() == document
    deleted = await api.client.delete("/api/workflows/my flow")
    assert deleted.status == 200
    assert (await api.client.get("/api/workflows/my flow")).status == 404
    assert (await api.client.delete("/api/workflows/my flow")).status == 404


async def test_a_saved_workflow_need_not_be_valid_as_a_graph(api):
    work_in_progress = {"format": "graphflow/1", "nodes": {"a": {"type": "core.add"}}}
    response = await api.client.put("/api/workflows/wip", json=work_in_progress)
    assert response.status == 201


async def test_saving_something_that_is_not_a_workflow_document_is_400(api):
    response = await api.client.put("/api/workflows/bad", json={"nodes": []})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_document"
    assert not (api.state.folders["workflows"] / "bad.json").exists()


async def test_saving_a_workflow_over_the_node_cap_is_413(make_api):
    api = await make_api(max_nodes=5)
    response = await api.client.put("/api/workflows/big", json=chain(10))
    assert response.status == 413


async def test_an_uploaded_image_runs_through_the_image_pack_and_its_output_is_viewable(
    make_api, data_dir, monkeypatch, registry
):
    if "image.load" not in registry or "image.save" not in registry:
        pytest.skip("the image pack is not installed")
    monkeypatch.delenv("GRAPHFLOW_INPUT_DIR", raising=False)  # the server's settings suffice
    api = await make_api()
    upload = await (await api.client.post("/api/upload/image", data=form(png(size=(16, 8))))).json()
    workflow = {
        "format": "graphflow/1",
        "nodes": {
            "load": {"type": "image.load", "inputs": {"image": upload["name"]}},
            "save": {
                "type": "image.save",
                "inputs": {"images": {"link": ["load", "image"]}, "filename_prefix": "api/test"},
            },
        },
    }
    record = await api.wait_finished(await api.submit(workflow), timeout=60)
    assert record["status"] == "done", record["error"]
    (saved,) = record["outputs"]["save"]["images"]
    view = await api.client.get(
        "/api/view",
        params={"filename": saved["filename"], "subfolder": saved["subfolder"], "type": "output"},
    )
    assert view.status == 200
    from PIL import Image

    assert Image.open(io.BytesIO(await view.read())).size == (16, 8)
