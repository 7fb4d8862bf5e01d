"""Real responses match the schemas of docs/openapi.json."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from serverkit import chain, single

pytestmark = pytest.mark.asyncio

SPEC = json.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_text())


def check(payload: object, schema_name: str) -> None:
    """Validate ``payload`` against a component schema (refs resolve inside the document)."""
    root = {"components": SPEC["components"], "$ref": f"#/components/schemas/{schema_name}"}
    jsonschema.Draft202012Validator(root).validate(payload)


async def test_responses_of_a_job_match_their_schemas(api):
    response = await api.client.post("/api/prompt", json={"workflow": chain(3)})
    accepted = await response.json()
    check(accepted, "PromptAccepted")
    record = await api.wait_finished(accepted["job_id"])
    check(record, "JobRecord")
    check(await (await api.client.get("/api/history")).json(), "HistoryPage")
    check(await (await api.client.get("/api/queue")).json(), "QueueListing")


async def test_a_failed_job_record_matches_its_schema(api):
    record = await api.wait_finished(await api.submit(single("srv.raise")))
    check(record, "JobRecord")


async def test_errors_match_their_schemas(api):
    invalid = await api.client.post(
        "/api/prompt", json={"workflow": {"format": "graphflow/1", "nodes": {}}}
    )
    check(await invalid.json(), "ValidationFailed")
    missing = await api.client.get("/api/history/nope")
    check(await missing.json(), "Error")


async def test_catalog_and_system_match_their_schemas(api):
    check(await (await api.client.get("/api/nodes")).json(), "NodeCatalog")
    check(await (await api.client.get("/api/nodes/core.add")).json(), "NodeSpec")
    check(await (await api.client.get("/api/system")).json(), "System")
    check(await (await api.client.get("/api/workflows")).json(), "WorkflowList")


async def test_websocket_messages_match_their_schemas(api):
    feed = await api.connect("c")
    job_id = await api.submit(chain(2), client_id="c")
    for message in await feed.until_done(job_id):
        name = {"status": "WsStatus", "job_done": "WsJobDone"}.get(message["type"], "WsRunEvent")
        check(message, name)


async def test_workflow_import_answers_match_their_schemas(api):
    comfy = {"1": {"class_type": "EmptyImage", "inputs": {"width": 0}}}
    check(
        await (await api.client.post("/api/workflow/import", json=comfy)).json(), "WorkflowImport"
    )
    unknown = {"1": {"class_type": "NoSuchComfyClass", "inputs": {}}}
    refused = await api.client.post("/api/workflow/import", json=unknown)
    check(await refused.json(), "ImportFailed")
    check(await (await api.client.post("/api/prompt", json={"workflow": chain(2)})).json(),
          "PromptAccepted")  # fmt: skip
