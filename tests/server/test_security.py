"""Security: paths never escape their folders, foreign origins and hosts are refused, tokens
are required off loopback, uploads are bounded and must be images."""

from __future__ import annotations

import io
import os

import aiohttp
import pytest
from aiohttp import WSServerHandshakeError
from serverkit import chain
from yarl import URL

pytestmark = pytest.mark.asyncio

TOKEN = "correct-horse-battery-staple"


@pytest.fixture
def secret(tmp_path):
    """A file outside every served folder."""
    path = tmp_path / "secret.txt"
    path.write_text("TOP SECRET")
    return path


@pytest.fixture
def served(data_dir, secret):
    """An output folder with a file, a symlink out, and a symlinked folder out."""
    output = data_dir / "output"
    output.mkdir(parents=True, exist_ok=True)
    (output / "ok.txt").write_text("fine")
    (output / "sub").mkdir()
    (output / "sub" / "deep.txt").write_text("deep")
    os.symlink(secret, output / "link.txt")
    os.symlink(secret.parent, output / "escape")
    return output


async def test_view_serves_a_file_inside_its_folder(api, served):
    response = await api.client.get(
        "/api/view", params={"filename": "deep.txt", "subfolder": "sub"}
    )
    assert response.status == 200
    assert await response.text() == "deep"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]


TRAVERSALS = [
    pytest.param("filename=../secret.txt", id="dotdot-filename"),
    pytest.param("filename=..%2Fsecret.txt", id="encoded-slash"),
    pytest.param("filename=%2e%2e%2fsecret.txt", id="encoded-dots"),
    pytest.param("filename=secret.txt&subfolder=..", id="dotdot-subfolder"),
    pytest.param("filename=secret.txt&subfolder=%2e%2e", id="encoded-dotdot-subfolder"),
    pytest.param("filename=secret.txt&subfolder=sub/../..", id="dotdot-inside-subfolder"),
    pytest.param("filename=secret.txt&subfolder=sub%2F..%2F..", id="encoded-nested"),
    pytest.param("filename={secret}", id="absolute-filename"),
    pytest.param("filename=secret.txt&subfolder={folder}", id="absolute-subfolder"),
    pytest.param("filename=..%5Csecret.txt", id="backslash"),
    pytest.param("filename=secret.txt%00.png", id="nul-byte"),
    pytest.param("filename=link.txt", id="symlink-file-out"),
    pytest.param("filename=secret.txt&subfolder=escape", id="symlink-folder-out"),
    pytest.param("filename=C:secret.txt", id="drive"),
    pytest.param("filename=secret.txt&type=../..", id="bad-type"),
]


@pytest.mark.parametrize("query", TRAVERSALS)
async def test_view_refuses_paths_outside_its_folders(api, served, secret, query):
    query = query.format(secret=secret, folder=secret.parent)
    response = await api.client.get(URL(f"/api/view?{query}", encoded=True))
    assert response.status in (400, 403, 404)
    body = await response.json()
    assert body["error"]["code"] in (
        "invalid_path",
        "forbidden_path",
        "file_not_found",
        "invalid_parameter",
    )
    assert "TOP SECRET" not in await response.text()


async def test_a_symlink_out_of_the_folder_is_403(api, served):
    response = await api.client.get("/api/view", params={"filename": "link.txt"})
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden_path"


async def test_url_path_traversal_on_static_routes_is_refused(make_api, tmp_path, secret):
    web_root = tmp_path / "web"
    web_root.mkdir()
    (web_root / "index.html").write_text("<h1>editor</h1>")
    api = await make_api(web_root=web_root)
    for path in (
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
    ):
        response = await api.client.get(URL(path, encoded=True))
        assert response.status in (400, 403, 404), path
        assert "TOP SECRET" not in await response.text()


async def test_cross_origin_post_is_refused_and_queues_nothing(api):
    response = await api.client.post(
        "/api/prompt",
        json={"workflow": chain(2)},
        headers={"Origin": "http://evil.example"},
    )
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden_origin"
    assert (await (await api.client.get("/api/queue")).json())["pending"] == []
    assert api.state.queue.counts()["done"] == 0


async def test_cross_origin_simple_form_post_is_refused(api):
    response = await api.client.post(
        "/api/interrupt",
        data="x=1",
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
    )
    assert response.status == 403


@pytest.mark.parametrize("origin", ["null", "http://127.0.0.1:1", "http://localhost.evil.example"])
async def test_other_origins_are_refused_even_on_get(api, origin):
    response = await api.client.get("/api/queue", headers={"Origin": origin})
    assert response.status == 403


async def test_same_origin_requests_are_accepted(api):
    origin = f"http://127.0.0.1:{api.client.port}"
    response = await api.client.post(
        "/api/prompt", json={"workflow": chain(2)}, headers={"Origin": origin}
    )
    assert response.status == 200


async def test_dns_rebinding_host_is_refused(api):
    response = await api.client.get("/api/nodes", headers={"Host": "evil.example:8188"})
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden_host"


@pytest.mark.parametrize("host", ["localhost:8188", "127.0.0.1", "[::1]:8188", "192.168.1.5:8188"])
async def test_ip_and_localhost_hosts_are_accepted(api, host):
    response = await api.client.get("/api/queue", headers={"Host": host})
    assert response.status == 200


async def test_cross_site_subresource_without_origin_is_refused(api):
    headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    response = await api.client.get("/api/view?filename=x.png", headers=headers)
    assert response.status == 403


async def test_a_cross_site_navigation_to_the_editor_is_allowed(api):
    headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert (await api.client.get("/", headers=headers)).status == 200


async def test_websocket_from_a_foreign_origin_is_refused(api):
    with pytest.raises(WSServerHandshakeError) as caught:
        await api.client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
    assert caught.value.status == 403


async def test_an_allowed_origin_gets_cors_answers(make_api):
    api = await make_api(allow_origins=["http://localhost:5173"])
    origin = {"Origin": "http://localhost:5173"}
    preflight = await api.client.options(
        "/api/prompt", headers={**origin, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    response = await api.client.post("/api/prompt", json={"workflow": chain(2)}, headers=origin)
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    rebound = await api.client.get("/api/queue", headers={"Host": "localhost:5173"})
    assert rebound.status == 200


async def test_with_a_token_every_route_needs_it(make_api):
    api = await make_api(host="0.0.0.0", auth_token=TOKEN)
    for method, path in [("GET", "/"), ("GET", "/api/nodes"), ("POST", "/api/prompt")]:
        response = await api.client.request(method, path)
        assert response.status == 401, path
        assert (await response.json())["error"]["code"] == "unauthorized"
    wrong = await api.client.get("/api/nodes", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    right = await api.client.get("/api/nodes", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status == 200
    assert (await api.client.get(f"/api/queue?token={TOKEN}")).status == 200
    with pytest.raises(WSServerHandshakeError):
        await api.client.ws_connect("/ws")
    ws = await api.client.ws_connect(f"/ws?token={TOKEN}")
    assert (await ws.receive_json())["type"] == "status"
    await ws.close()


def _png(size=(8, 8)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _form(data: bytes, filename: str = "cat.png", **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("image", data, filename=filename, content_type="image/png")
    for key, value in fields.items():
        form.add_field(key, value)
    return form


async def test_oversized_upload_is_refused_with_413(make_api):
    api = await make_api(max_upload_bytes=1000)
    response = await api.client.post("/api/upload/image", data=_form(b"\x89PNG" + bytes(5000)))
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "upload_too_large"
    assert list((api.state.folders["input"]).iterdir()) == []


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"<svg onload=alert(1)>", id="svg"),
        pytest.param(b"not an image at all", id="text"),
        pytest.param(b"", id="empty"),
        pytest.param(None, id="truncated-png"),
    ],
)
async def test_an_upload_that_is_not_a_decodable_image_is_refused(api, data):
    if data is None:
        data = _png((64, 64))[:-40]
    response = await api.client.post("/api/upload/image", data=_form(data))
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_image"
    assert list(api.state.folders["input"].iterdir()) == []


async def test_an_image_with_too_many_pixels_is_refused(make_api):
    api = await make_api(max_upload_pixels=1000)
    response = await api.client.post("/api/upload/image", data=_form(_png((100, 100))))
    assert response.status == 400
    assert "pixel" in (await response.json())["error"]["message"]


async def test_upload_names_are_sanitised_into_the_folder(api):
    response = await api.client.post(
        "/api/upload/image", data=_form(_png(), filename="../../etc/evil name;$(x).jpg")
    )
    body = await response.json()
    assert response.status == 200
    assert body["name"] == "evil name_(x).png"  # extension from the detected format
    assert (api.state.folders["input"] / body["name"]).is_file()


@pytest.mark.parametrize("subfolder", ["..", "../x", "/tmp", "a/../../x", ".hidden"])
async def test_upload_subfolders_cannot_escape(api, subfolder):
    response = await api.client.post("/api/upload/image", data=_form(_png(), subfolder=subfolder))
    assert response.status in (400, 403)


async def test_upload_type_output_is_refused(api):
    response = await api.client.post("/api/upload/image", data=_form(_png(), type="output"))
    assert response.status == 400


async def test_upload_needs_multipart(api):
    response = await api.client.post("/api/upload/image", data=_png())
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "wrong_content_type"


async def test_a_malformed_multipart_body_is_400(api):
    response = await api.client.post(
        "/api/upload/image",
        data=b"--xyz\r\ngarbage without headers",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status == 400


@pytest.mark.parametrize("name", ["..", "../evil", "a%2F..%2F..%2Fevil", ".hidden", "x" * 200])
async def test_workflow_names_cannot_escape_their_folder(api, name):
    response = await api.client.put(
        URL(f"/api/workflows/{name}", encoded=True), json={"format": "graphflow/1", "nodes": {}}
    )
    assert response.status in (400, 403, 404, 405)
    assert not any(p.name == "evil.json" for p in api.state.folders["workflows"].parent.rglob("*"))


async def test_every_response_carries_the_security_headers(api):
    response = await api.client.get("/api/queue")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cross-Origin-Resource-Policy"] == "same-origin"
