"""The ComfyUI routes under graphflow's security (origin, token, containment, limits), and
the file, catalogue and system routes."""

from __future__ import annotations

import io
import json
import os

import pytest
from aiohttp import FormData, WSServerHandshakeError
from PIL import Image

from graphflow.server.app import PLUGIN_ROUTES

pytestmark = pytest.mark.asyncio

TOKEN = "a-long-enough-test-token"


def comfy_routes(client) -> list[tuple[str, str]]:
    routes = [(m, p) for (m, p), plugin in client.app[PLUGIN_ROUTES].items() if plugin == "comfy"]
    return [(m, p.replace("{prompt_id}", "x").replace("{class_type}", "X").replace(
        "{folder}", "loras")) for m, p in routes]  # fmt: skip


async def test_the_comfyui_routes_are_all_installed(client):
    paths = {p for _, p in comfy_routes(client)}
    for path in ("/prompt", "/queue", "/history", "/history/x", "/view", "/upload/image",
                 "/upload/mask", "/object_info", "/object_info/X", "/interrupt",
                 "/system_stats", "/embeddings", "/models", "/models/loras", "/features",
                 "/free"):  # fmt: skip
        assert path in paths


async def test_comfyui_routes_are_under_api_too_where_graphflow_has_none(client):
    paths = {(m, p) for m, p in comfy_routes(client)}
    for path in ("/api/object_info", "/api/object_info/X", "/api/system_stats",
                 "/api/embeddings", "/api/models", "/api/models/loras", "/api/features",
                 "/api/upload/mask"):  # fmt: skip
        assert any(p == path for _, p in paths), path
    for method, path in (("POST", "/api/prompt"), ("GET", "/api/queue"),
                         ("GET", "/api/history"), ("GET", "/api/view"),
                         ("POST", "/api/free"), ("POST", "/api/interrupt"),
                         ("POST", "/api/upload/image")):  # fmt: skip
        assert (method, path) not in paths  # graphflow's own API keeps these
    plain = await (await client.get("/object_info/X")).json()
    aliased = await client.get("/api/object_info/X")
    assert aliased.status == 200 and await aliased.json() == plain
    stats = await client.get("/api/system_stats")
    assert "comfyui_version" in (await stats.json())["system"]
    socket = await client.ws_connect("/api/ws?clientId=late-api")
    first = await socket.receive_json(timeout=5)
    assert first["type"] == "status" and first["data"]["sid"] == "late-api"
    await socket.close()


async def test_every_comfyui_route_refuses_a_foreign_origin(client):
    for method, path in comfy_routes(client):
        response = await client.request(method, path, headers={"Origin": "http://evil.example"})
        assert response.status == 403, (method, path)
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/ws?clientId=x", headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403


async def test_every_comfyui_route_needs_the_token_when_one_is_set(make_client):
    client = await make_client(auth_token=TOKEN)
    for method, path in comfy_routes(client):
        response = await client.request(method, path)
        assert response.status == 401, (method, path)
    ok = await client.get("/system_stats", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status == 200
    with pytest.raises(WSServerHandshakeError):
        await client.ws_connect("/ws?clientId=x")
    ws = await client.ws_connect(f"/ws?clientId=x&token={TOKEN}")
    assert (await ws.receive_json())["data"]["sid"] == "x"
    await ws.close()


async def test_a_body_over_the_limit_is_refused(make_client):
    client = await make_client(max_body_bytes=1000)
    response = await client.post("/prompt", data=b"{" + b" " * 2000 + b"}")
    assert response.status == 413
    assert set(await response.json()) == {"error", "node_errors"}


def png(color=(255, 0, 0, 255), size=(4, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_view_codes_and_containment(client, tmp_path):
    output = tmp_path / "data" / "output"
    (output / "sub").mkdir(parents=True, exist_ok=True)
    (output / "sub" / "a.png").write_bytes(png())
    (output / "page.html").write_text("<script>alert(1)</script>")
    secret = tmp_path / "secret.png"
    secret.write_bytes(png())
    os.symlink(secret, output / "link.png")
    os.symlink(tmp_path, output / "outside")

    async def status(**params):
        return (await client.get("/view", params=params)).status

    assert await status(filename="a.png", subfolder="sub") == 200
    assert await status(filename="a.png [output]", subfolder="sub", type="input") == 200
    assert await status(filename="link.png") == 403
    assert await status(filename="secret.png", subfolder="outside") == 403
    assert await status(filename="../secret.png") == 400
    assert await status(filename="/etc/passwd") == 400
    assert await status(filename="a.png", subfolder="../..") == 403
    assert await status(filename="a.png", type="models") == 400
    assert await status(filename="missing.png") == 404
    assert await status() == 404
    html = await client.get("/view", params={"filename": "page.html"})
    assert html.content_type == "application/octet-stream"
    assert 'filename="page.html"' in html.headers["Content-Disposition"]
    alpha = await client.get(
        "/view", params={"filename": "a.png", "subfolder": "sub", "channel": "a"}
    )
    assert Image.open(io.BytesIO(await alpha.read())).mode == "L"
    jpeg = await client.get("/view", params={"filename": "a.png", "subfolder": "sub",
                                             "preview": "jpeg;80", "channel": "rgb"})  # fmt: skip
    assert jpeg.content_type == "image/jpeg"


async def upload(client, data: bytes, name="photo.png", route="/upload/image", **fields):
    form = FormData()
    form.add_field("image", data, filename=name, content_type="image/png")
    for key, value in fields.items():
        form.add_field(key, value)
    response = await client.post(route, data=form)
    return response.status, await response.json()


async def test_uploads_dedupe_as_comfyui_does(client, tmp_path):
    status, body = await upload(client, png(), subfolder="mine")
    assert status == 200 and body == {"name": "photo.png", "subfolder": "mine", "type": "input"}
    assert (await upload(client, png(), subfolder="mine"))[1]["name"] == "photo.png"
    other = png((0, 255, 0, 255))
    assert (await upload(client, other, subfolder="mine"))[1]["name"] == "photo (1).png"
    assert (await upload(client, other, subfolder="mine", overwrite="true"))[1][
        "name"
    ] == "photo.png"
    assert (await upload(client, b"not an image"))[0] == 400
    assert (await upload(client, png(), subfolder="../../x"))[0] == 400
    response = await client.post("/upload/image", data=FormData({"type": "input"}))
    assert response.status == 400


async def test_upload_mask_puts_the_alpha_on_the_original(client, tmp_path):
    await upload(client, png((10, 20, 30, 255)), name="base.png")
    mask = png((0, 0, 0, 0))
    ref = json.dumps({"filename": "base.png", "subfolder": "", "type": "input"})
    status, body = await upload(client, mask, name="base-mask.png", route="/upload/mask",
                                original_ref=ref)  # fmt: skip
    assert status == 200, body
    stored = Image.open(tmp_path / "data" / "input" / body["name"])
    assert stored.getpixel((0, 0)) == (10, 20, 30, 0)
    bad = json.dumps({"filename": "../x.png", "type": "input"})
    assert (await upload(client, mask, route="/upload/mask", original_ref=bad))[0] == 400


async def test_catalogue_and_system_routes(client):
    info = await (await client.get("/object_info")).json()
    assert "GFTestSeed" in info
    one = await (await client.get("/object_info/GFTestSeed")).json()
    assert list(one) == ["GFTestSeed"] and one["GFTestSeed"]["name"] == "GFTestSeed"
    order = one["GFTestSeed"]["input_order"]
    assert order.get("required", []) + order.get("optional", []) == ["seed", "scale"]
    assert await (await client.get("/object_info/NoSuchClass")).json() == {}
    stats = await (await client.get("/system_stats")).json()
    for key in ("os", "ram_total", "ram_free", "comfyui_version", "python_version",
                "pytorch_version", "embedded_python", "argv"):  # fmt: skip
        assert key in stats["system"]
    assert stats["devices"] and {"name", "type", "vram_total"} <= set(stats["devices"][0])
    folders = await (await client.get("/models")).json()
    assert "checkpoints" in folders and "loras" in folders
    checkpoints = await (await client.get("/models/checkpoints")).json()
    assert "graphflow-tiny" in checkpoints  # what CheckpointLoaderSimple's ckpt_name offers
    assert (await client.get("/models/nope")).status == 404
    assert isinstance(await (await client.get("/embeddings")).json(), list)
    features = await (await client.get("/features")).json()
    assert features["supports_preview_metadata"] is True
    assert (await client.post("/free", json={"unload_models": True})).status == 200
    assert (await client.post("/interrupt")).status == 200


async def test_graphflows_own_websocket_is_unchanged(client):
    ws = await client.ws_connect("/ws?client_id=mine")
    first = await ws.receive_json()
    assert first["type"] == "status" and first["data"]["client_id"] == "mine"
    await ws.close()
    bare = await client.ws_connect("/ws")
    assert "client_id" in (await bare.receive_json())["data"]
    await bare.close()
