"""Nodes, system information, freeing memory, static files and error shapes."""

from __future__ import annotations

import pytest
from serverkit import chain

pytestmark = pytest.mark.asyncio


async def test_nodes_lists_every_registered_spec_and_type(api):
    body = await (await api.client.get("/api/nodes")).json()
    assert body == api.state.registry.to_dict()
    assert body["nodes"]["core.add"]["plugin"] == "core"
    assert body["nodes"]["srv.wait"]["plugin"] == "servertests"


async def test_one_node_spec_by_id(api):
    body = await (await api.client.get("/api/nodes/core.add")).json()
    assert body["id"] == "core.add"
    assert body["plugin"] == "core"
    assert [i["name"] for i in body["inputs"]] == ["a", "b"]


async def test_an_unknown_node_is_a_structured_404(api):
    response = await api.client.get("/api/nodes/core.nope")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "node_not_found"


async def test_system_reports_versions_memory_cache_and_queue(api):
    job_id = await api.submit(chain(3))
    await api.wait_finished(job_id)
    body = await (await api.client.get("/api/system")).json()
    assert body["versions"]["graphflow"]
    assert body["memory"]["process_rss_bytes"] > 0
    cache = body["runner"]["workers"][0]["cache"]
    assert cache["entries"] == 4 and cache["bytes"] > 0
    assert body["queue"]["done"] == 1
    assert body["nodes"] == len(api.state.registry)
    assert body["plugin_problems"] == []


async def test_system_does_not_import_torch_unless_asked(api):
    import sys

    body = await (await api.client.get("/api/system")).json()
    if "torch" not in sys.modules:
        assert body["device"]["torch_loaded"] is False


async def test_system_with_devices_reports_the_default_device(api):
    body = await (await api.client.get("/api/system?devices=1")).json()
    assert body["device"]["torch_loaded"] is True
    assert body["device"]["default"] in ("cpu", "cuda", "mps")
    assert body["device"]["devices"][0] == {"name": "cpu", "type": "cpu"}


async def test_free_drops_the_output_cache(api):
    await api.wait_finished(await api.submit(chain(5)))
    response = await api.client.post("/api/free", json={"models": False})
    body = await response.json()
    assert response.status == 200
    assert body["freed"]["cache_entries_dropped"] == 6
    assert body["runner"]["workers"][0]["cache"]["entries"] == 0
    rerun = await api.wait_finished(await api.submit(chain(5)))
    assert rerun["executed"] == 6


async def test_free_with_no_body_frees_everything(api):
    body = await (await api.client.post("/api/free")).json()
    assert "cache_entries_dropped" in body["freed"] and "models_unloaded" in body["freed"]


async def test_free_rejects_non_boolean_options(api):
    response = await api.client.post("/api/free", json={"cache": "yes"})
    assert response.status == 400


async def test_without_a_built_editor_the_root_says_so(make_api):
    api = await make_api(web_root=None)
    api.state.web_root = None
    response = await api.client.get("/")
    assert response.status == 200
    assert "editor is not built" in await response.text()


async def test_a_built_editor_is_served_at_the_root(make_api, tmp_path):
    web_root = tmp_path / "dist"
    (web_root / "assets").mkdir(parents=True)
    (web_root / "index.html").write_text("<h1>editor</h1>")
    (web_root / "assets" / "app.js").write_text("console.log(1)")
    api = await make_api(web_root=web_root)
    index = await api.client.get("/")
    assert await index.text() == "<h1>editor</h1>"
    script = await api.client.get("/assets/app.js")
    assert script.status == 200
    assert script.headers["Content-Type"] == "text/javascript"
    assert (await api.client.get("/assets/missing.js")).status == 404


async def test_unknown_api_routes_are_json_404(api):
    response = await api.client.post("/api/nowhere", json={})
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_a_wrong_method_is_json_405_with_allow(api):
    response = await api.client.put("/api/prompt", json={})
    assert response.status == 405
    assert (await response.json())["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


async def test_system_default_device_is_the_servers_device_setting(make_api):
    from graphflow.settings import Settings

    api = await make_api(settings=Settings(device="cpu:server-setting"))
    body = await (await api.client.get("/api/system?devices=1")).json()
    assert body["device"]["default"] == "cpu:server-setting"
