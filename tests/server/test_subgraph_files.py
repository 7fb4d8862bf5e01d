"""Subgraph ``file`` references in posted documents resolve in the server's workflows
folder only, and a queued job keeps what was validated even when that file changes."""

from __future__ import annotations

import json

import pytest
from serverkit import link

pytestmark = pytest.mark.asyncio

LIBRARY = {
    "format": "graphflow/1",
    "nodes": {},
    "subgraphs": {
        "plus": {
            "inputs": [{"name": "a", "type": "FLOAT"}],
            "outputs": [{"name": "sum", "from": ["add", "float"]}],
            "nodes": {"add": {"type": "core.add", "inputs": {"a": link("$in", "a"), "b": 5}}},
        }
    },
}


def uses(file: str) -> dict:
    """x = 2 → the subgraph 'plus' of ``file`` → shown."""
    return {
        "format": "graphflow/1",
        "nodes": {
            "x": {"type": "core.float", "inputs": {"value": 2.0}},
            "12": {
                "type": "subgraph",
                "file": file,
                "subgraph": "plus",
                "inputs": {"a": link("x", "float")},
            },
            "out": {"type": "core.show", "inputs": {"value": link("12", "sum")}},
        },
    }


@pytest.fixture
def workflows(data_dir):
    folder = data_dir / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lib.json").write_text(json.dumps(LIBRARY))
    return folder


async def test_a_file_in_the_workflows_folder_is_found_and_runs(api, workflows):
    job_id = await api.submit(uses("lib.json"))
    record = await api.wait_finished(job_id)
    assert record["status"] == "done", record
    assert record["outputs"] == {"out": {"text": ["7.0"]}}


async def test_files_outside_the_workflows_folder_are_refused(api, workflows, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(LIBRARY))
    for reference in ("../../outside.json", str(outside)):
        response = await api.client.post("/api/prompt", json={"workflow": uses(reference)})
        body = await response.json()
        assert response.status == 400, body
        (error,) = body["error"]["errors"]
        assert error["node"] == "12"
        assert "outside the workflows folder" in error["message"]


async def test_the_import_route_does_not_read_outside_files_either(api, workflows, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps(LIBRARY))
    response = await api.client.post("/api/workflow/import", json=uses(str(outside)))
    body = await response.json()
    assert response.status == 200, body
    assert any("outside the workflows folder" in p["message"] for p in body["problems"])


async def test_a_queued_job_stores_the_flattened_document(api, workflows):
    job_id = await api.submit(uses("lib.json"))
    record = await api.wait_finished(job_id)
    assert record["status"] == "done"
    stored = api.state.queue.workflow(job_id)
    assert "12:add" in stored["nodes"] and "12" not in stored["nodes"]
