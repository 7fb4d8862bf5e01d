"""POST /api/prompt, the queue order, events over the websocket, and the history."""

from __future__ import annotations

import json

import pytest
from serverkit import chain, link, single

from graphflow import validate
from graphflow.workflow import workflow_from_dict

pytestmark = pytest.mark.asyncio


async def test_three_queued_jobs_stream_their_events_in_order_and_land_in_history(api):
    feed = await api.connect("c1")
    jobs = [await api.submit(chain(n, start=10.0 * n), client_id="c1") for n in (3, 4, 5)]

    per_job: dict[str, list[str]] = {job: [] for job in jobs}
    finished_order = []
    while len(finished_order) < 3:
        message = await feed.next()
        if message["type"] == "status":
            continue
        job_id = message["data"]["job_id"]
        per_job[job_id].append(message["type"])
        if message["type"] == "job_done":
            finished_order.append(job_id)

    assert finished_order == jobs
    for job_id, n in zip(jobs, (3, 4, 5), strict=True):
        nodes = n + 1
        assert per_job[job_id] == (
            ["run_started"] + ["node_started", "node_finished"] * nodes + ["run_finished"]
        ) + ["job_done"]
    history = await (await api.client.get("/api/history")).json()
    assert history["total"] == 3
    assert [j["job_id"] for j in history["jobs"]] == list(reversed(jobs))
    first = await api.job(jobs[0])
    assert first["status"] == "done"
    assert first["outputs"] == {"out": {"text": ["32.0"]}}
    assert first["executed"] == 4 and first["cached"] == 0
    assert first["error"] is None
    timings = first["timings"]
    assert timings["created_at"] <= timings["started_at"] <= timings["finished_at"]
    assert set(timings["nodes"]) == {"n0", "n1", "n2", "out"}
    assert first["workflow"] == chain(3, start=30.0)


async def test_events_carry_the_job_id_and_the_executor_fields(api):
    feed = await api.connect("c1")
    job_id = await api.submit(chain(2), client_id="c1")
    messages = [m for m in await feed.until_done(job_id) if m["type"] != "status"]
    started = messages[0]
    assert started["type"] == "run_started"
    assert started["data"]["job_id"] == job_id and started["data"]["run_id"] == job_id
    assert started["data"]["planned"] == ["n0", "n1", "out"]
    finished = [m for m in messages if m["type"] == "node_finished"]
    assert finished[-1]["data"]["node"] == "out"
    assert finished[-1]["data"]["ui"] == {"text": ["2.0"]}
    assert messages[-1] == {
        "type": "job_done",
        "data": {"job_id": job_id, "status": "done", "error": None},
    }


async def test_identical_rerun_is_served_from_the_cache(api):
    feed = await api.connect("c1")
    first = await api.submit(chain(50), client_id="c1")
    await feed.until_done(first)
    second = await api.submit(chain(50), client_id="c1")
    kinds = [m["type"] for m in await feed.until_done(second) if m["type"] != "status"]
    assert kinds == ["run_started", "node_cached", "run_finished", "job_done"]
    record = await api.job(second)
    assert record["executed"] == 0 and record["cached"] == 1
    assert record["outputs"] == {"out": {"text": ["50.0"]}}


async def test_position_counts_the_pending_jobs_ahead(api, control):
    blocker = await api.submit(single("srv.wait"))
    await api.wait_running(blocker)
    responses = []
    for _ in range(2):
        response = await api.client.post("/api/prompt", json={"workflow": chain(2)})
        responses.append(await response.json())
    assert [r["position"] for r in responses] == [0, 1]
    control.release.set()
    for r in responses:
        assert (await api.wait_finished(r["job_id"]))["status"] == "done"


async def test_higher_priority_runs_before_earlier_jobs(api, control):
    blocker = await api.submit(single("srv.wait"))
    await api.wait_running(blocker)
    low = await api.submit(chain(2, start=1.0))
    high = await api.submit(chain(2, start=2.0), priority=5)
    queue = await (await api.client.get("/api/queue")).json()
    assert [j["job_id"] for j in queue["pending"]] == [high, low]
    assert [j["job_id"] for j in queue["running"]] == [blocker]
    control.release.set()
    low_record = await api.wait_finished(low)
    high_record = await api.wait_finished(high)
    assert high_record["timings"]["started_at"] < low_record["timings"]["started_at"]


async def test_validation_errors_are_returned_all_at_once_with_the_cli_codes(api):
    workflow = {
        "format": "graphflow/1",
        "nodes": {
            "a": {"type": "core.nosuch", "inputs": {}},
            "b": {"type": "core.add", "inputs": {"a": link("ghost", "float"), "zz": 1}},
            "c": {"type": "core.round", "inputs": {"mode": "sideways"}},
            "d": {"type": "core.length", "inputs": {"text": link("c", "int")}},
            "out": {"type": "core.show", "inputs": {}},
        },
    }
    response = await api.client.post("/api/prompt", json={"workflow": workflow})
    body = await response.json()
    assert response.status == 400
    assert body["error"]["code"] == "validation_failed"
    _, expected = validate(workflow_from_dict(workflow), api.state.registry)
    assert body["error"]["errors"] == [e.to_dict() for e in expected]
    assert {e["code"] for e in body["error"]["errors"]} >= {
        "unknown_node_type",
        "link_missing_node",
        "unknown_input",
        "not_in_choices",
        "type_mismatch",
        "missing_input",
    }
    assert (await (await api.client.get("/api/queue")).json())["pending"] == []


async def test_a_malformed_document_is_reported_as_invalid_document(api):
    response = await api.client.post(
        "/api/prompt", json={"workflow": {"format": "graphflow/1", "nodes": {"a": 5}}}
    )
    body = await response.json()
    assert response.status == 400
    assert body["error"]["code"] == "validation_failed"
    assert [e["code"] for e in body["error"]["errors"]] == ["invalid_document"]


async def test_unknown_requested_outputs_are_reported_with_the_other_errors(api):
    workflow = chain(2)
    workflow["nodes"]["bad"] = {"type": "core.nosuch"}
    response = await api.client.post(
        "/api/prompt", json={"workflow": workflow, "outputs": ["out", "nowhere"]}
    )
    body = await response.json()
    assert response.status == 400
    codes = sorted(e["code"] for e in body["error"]["errors"])
    assert codes == ["unknown_node_type", "unknown_output"]


async def test_requested_outputs_run_only_what_they_need(api):
    workflow = chain(3)
    workflow["nodes"]["other"] = {"type": "core.show", "inputs": {"value": "side branch"}}
    job_id = await api.submit(workflow, outputs=["other"])
    record = await api.wait_finished(job_id)
    assert record["status"] == "done"
    assert record["outputs"] == {"other": {"text": ["side branch"]}}
    assert record["requested_outputs"] == ["other"]
    assert record["executed"] == 1


MALFORMED = [
    pytest.param(b"{", "application/json", "invalid_json", id="truncated-json"),
    pytest.param(b"", "application/json", "empty_body", id="empty-body"),
    pytest.param(b"null", "application/json", "invalid_request", id="null"),
    pytest.param(b"[]", "application/json", "invalid_request", id="array"),
    pytest.param(b'"text"', "application/json", "invalid_request", id="string"),
    pytest.param(b"\xff\xfe\x00", "application/json", "invalid_json", id="not-utf8"),
    pytest.param(b"[" * 200_000, "application/json", "invalid_json", id="deep-nesting"),
    pytest.param(b'{"workflow": 5}', "application/json", "invalid_request", id="workflow-number"),
    pytest.param(b'{"workflow": NaN}', "application/json", "invalid_request", id="nan"),
    pytest.param(b"{}", "application/json", "invalid_request", id="no-workflow"),
    pytest.param(
        b'{"workflow": {}, "extra": 1}', "application/json", "invalid_request", id="unknown-key"
    ),
    pytest.param(
        b'{"workflow": {}, "priority": "high"}', "application/json", "invalid_request", id="prio"
    ),
    pytest.param(
        b'{"workflow": {}, "priority": true}', "application/json", "invalid_request", id="bool"
    ),
    pytest.param(
        b'{"workflow": {}, "client_id": "a b"}', "application/json", "invalid_request", id="cid"
    ),
    pytest.param(
        b'{"workflow": {}, "outputs": []}', "application/json", "invalid_request", id="outputs"
    ),
    pytest.param(b'{"workflow": {}}', "text/plain", "wrong_content_type", id="text-plain"),
    pytest.param(
        b'{"workflow": {}}',
        "application/x-www-form-urlencoded",
        "wrong_content_type",
        id="form",
    ),
    pytest.param(b'{"workflow": {}}', "application/json", "validation_failed", id="no-format"),
    pytest.param(
        json.dumps(
            {"workflow": {"format": "graphflow/9", "nodes": {}}},
        ).encode(),
        "application/json",
        "validation_failed",
        id="unknown-format",
    ),
    pytest.param(
        b'{"workflow": {"format": "graphflow/1", "nodes": {"s": {"type": "core.show",'
        b' "inputs": {"value": ' + b"[" * 900 + b"]" * 900 + b"}}}}}",
        "application/json",
        None,
        id="deep-literal",
    ),
]


@pytest.mark.parametrize(("body", "content_type", "code"), MALFORMED)
async def test_malformed_prompt_requests_are_4xx_never_500(api, body, content_type, code):
    response = await api.client.post(
        "/api/prompt", data=body, headers={"Content-Type": content_type}
    )
    payload = await response.json()
    if code is None:  # accepted or refused, but never a server error
        assert response.status in (200, 400), payload
        if response.status == 200:
            record = await api.wait_finished(payload["job_id"])
            assert record["status"] in ("done", "failed")
        return
    assert 400 <= response.status < 500, payload
    assert payload["error"]["code"] == code
    assert payload["error"]["message"]


async def test_oversized_body_is_refused_with_413(make_api):
    api = await make_api(max_body_bytes=2000)
    response = await api.client.post("/api/prompt", json={"workflow": chain(60)})
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "body_too_large"


async def test_oversized_chunked_body_is_refused_with_413(make_api):
    api = await make_api(max_body_bytes=2000)

    async def chunks():
        for _ in range(10):
            yield b" " * 500

    response = await api.client.post(
        "/api/prompt", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status == 413


async def test_workflow_over_the_node_cap_is_refused(make_api):
    api = await make_api(max_nodes=10)
    response = await api.client.post("/api/prompt", json={"workflow": chain(11)})
    body = await response.json()
    assert response.status == 413
    assert body["error"]["code"] == "workflow_too_large"


async def test_history_pages_with_limit_and_offset(api):
    jobs = [await api.submit(chain(2, start=float(i))) for i in range(5)]
    for job in jobs:
        await api.wait_finished(job)
    page = await (await api.client.get("/api/history?limit=2&offset=1")).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [j["job_id"] for j in page["jobs"]] == [jobs[3], jobs[2]]
    assert "workflow" not in page["jobs"][0]


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "offset=-1", "limit=5000"])
async def test_bad_history_parameters_are_400(api, query):
    response = await api.client.get(f"/api/history?{query}")
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_parameter"


async def test_deleting_a_finished_job_removes_it_from_history(api):
    job_id = await api.submit(chain(2))
    await api.wait_finished(job_id)
    response = await api.client.delete(f"/api/history/{job_id}")
    assert response.status == 200
    assert (await api.client.get(f"/api/history/{job_id}")).status == 404
    assert (await (await api.client.get("/api/history")).json())["total"] == 0


async def test_deleting_an_unfinished_job_is_refused(api, control):
    job_id = await api.submit(single("srv.wait"))
    await api.wait_running(job_id)
    response = await api.client.delete(f"/api/history/{job_id}")
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "job_not_finished"


async def test_unknown_job_is_a_structured_404(api):
    response = await api.client.get("/api/history/nope")
    assert response.status == 404
    assert (await response.json())["error"] == {
        "code": "job_not_found",
        "message": "no job 'nope'",
    }


async def test_a_large_invalid_workflow_is_refused_with_all_its_errors_too(api):
    workflow = chain(2000)  # over 64 KiB: parsed and validated off the event loop
    workflow["nodes"]["n7"]["type"] = "core.nosuch"
    workflow["nodes"]["n9"]["inputs"]["zz"] = 1
    response = await api.client.post("/api/prompt", json={"workflow": workflow})
    body = await response.json()
    assert response.status == 400
    assert sorted(e["code"] for e in body["error"]["errors"]) == [
        "unknown_input",
        "unknown_node_type",
    ]


async def test_a_large_malformed_body_is_400(api):
    response = await api.client.post(
        "/api/prompt",
        data=b'{"workflow": [' + b"1," * 50_000,
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"


async def test_the_posted_workflow_text_is_stored_and_returned_as_it_was_sent(api):
    document = chain(2, start=1.5)
    document["nodes"]["n0"]["title"] = "caf\u00e9 \u2603"
    posted = json.dumps({"client_id": "c1", "workflow": document}, indent=2, ensure_ascii=False)
    response = await api.client.post(
        "/api/prompt", data=posted.encode(), headers={"Content-Type": "application/json"}
    )
    job_id = (await response.json())["job_id"]
    record = await api.wait_finished(job_id)
    assert record["status"] == "done"
    assert record["workflow"] == document
    member = json.dumps(document, indent=2, ensure_ascii=False).replace("\n", "\n  ")
    assert member in posted
    assert api.state.queue.workflow_text(job_id) == member  # stored without re-encoding
