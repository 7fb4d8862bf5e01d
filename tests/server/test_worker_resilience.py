"""No single job can stop the worker: whatever it raises fails that job alone."""

from __future__ import annotations

import pytest
from serverkit import chain, single

from graphflow.server.queue_base import Job
from graphflow.server.queue_sqlite import SQLiteJobQueue

pytestmark = pytest.mark.asyncio

RAISED = [
    ("value_error", "node_failed", "ValueError"),
    ("recursion", "node_failed", "RecursionError"),
    ("memory", "node_failed", "MemoryError"),
    ("system_exit", "worker_error", "SystemExit"),
    ("keyboard_interrupt", "worker_error", "KeyboardInterrupt"),
]


@pytest.mark.parametrize(("kind", "code", "exception_type"), RAISED)
async def test_a_job_whose_node_raises_fails_alone_and_the_next_job_runs(
    api, kind, code, exception_type
):
    failing = await api.submit(single("srv.raise", {"kind": kind}))
    following = await api.submit(chain(3, start=float(len(kind))))
    failed = await api.wait_finished(failing)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == code
    assert failed["error"]["exception_type"] == exception_type
    assert failed["error"]["traceback"]
    done = await api.wait_finished(following)
    assert done["status"] == "done"
    assert done["outputs"] == {"out": {"text": [f"{len(kind) + 2.0}"]}}


async def test_a_failed_node_is_named_in_the_error_and_the_done_event(api):
    feed = await api.connect("c1")
    job_id = await api.submit(single("srv.raise", {"value": 4.0}), client_id="c1")
    messages = await feed.until_done(job_id)
    failed = next(m for m in messages if m["type"] == "run_failed")
    assert failed["data"]["node"] == "n" and failed["data"]["exception_type"] == "ValueError"
    done = messages[-1]["data"]
    assert done["status"] == "failed"
    assert done["error"]["node"] == "n"
    assert done["error"]["message"] == "node 'n' failed: ValueError: boom at 4.0"
    assert "traceback" not in done["error"]  # the details are in the history record


async def test_a_two_thousand_node_chain_runs_through_the_server(api):
    job_id = await api.submit(chain(2000))
    record = await api.wait_finished(job_id, timeout=30)
    assert record["status"] == "done"
    assert record["outputs"] == {"out": {"text": ["2000.0"]}}
    assert record["executed"] == 2001


@pytest.mark.parametrize(
    ("kind", "stored"),
    [
        ("object", {"value": ["<object object at"]}),
        ("non_finite", {"value": ["inf", "nan"], "nested": {"x": ["-inf"]}}),
    ],
)
async def test_ui_values_json_cannot_hold_are_stored_as_text(api, kind, stored):
    workflow = {
        "format": "graphflow/1",
        "nodes": {"out": {"type": "srv.record", "inputs": {"value": 1, "kind": kind}}},
    }
    record = await api.wait_finished(await api.submit(workflow))
    assert record["status"] == "done"
    ui = record["outputs"]["out"]
    if kind == "object":
        assert ui["value"][0].startswith(stored["value"][0])
    else:
        assert ui == stored


async def test_a_pending_job_that_no_longer_validates_fails_with_its_errors(make_api, data_dir):
    queue = SQLiteJobQueue(data_dir / "graphflow.db")
    stale = {"format": "graphflow/1", "nodes": {"x": {"type": "gone.plugin", "inputs": {}}}}
    queue.put(Job(id="stale", workflow=stale))
    queue.close()
    api = await make_api()
    record = await api.wait_finished("stale")
    assert record["status"] == "failed"
    assert record["error"]["code"] == "validation_failed"
    assert [e["code"] for e in record["error"]["errors"]] == ["unknown_node_type"]


async def test_a_job_whose_stored_workflow_is_unreadable_fails_alone(make_api, data_dir):
    queue = SQLiteJobQueue(data_dir / "graphflow.db")
    queue.put(Job(id="garbled", workflow={}), "{not json")
    queue.put(Job(id="fine", workflow=chain(2)))
    queue.close()
    api = await make_api()
    garbled = await api.wait_finished("garbled")
    assert garbled["status"] == "failed"
    assert garbled["error"]["code"] == "invalid_document"
    assert garbled["workflow"] == {"unreadable": "{not json"}  # still a JSON answer
    assert (await api.wait_finished("fine"))["status"] == "done"


async def test_a_job_whose_validated_graph_was_not_kept_is_read_back_and_runs(api, control):
    api.state.dispatcher.max_prepared = 0  # as if many big jobs were waiting
    blocker = await api.submit(single("srv.wait"))
    await api.wait_running(blocker)
    job_id = await api.submit(chain(5))
    control.release.set()
    record = await api.wait_finished(job_id)
    assert record["status"] == "done"
    assert record["outputs"] == {"out": {"text": ["5.0"]}}


async def test_a_job_the_runner_refuses_fails_and_the_queue_moves_on(api, monkeypatch):
    runner = api.state.runner
    original = runner.submit
    refused = []

    def submit_once_refusing(job, prepared=None):
        if not refused:
            refused.append(job.id)
            raise RuntimeError("no worker available")
        original(job, prepared)

    monkeypatch.setattr(runner, "submit", submit_once_refusing)
    first = await api.submit(chain(2))
    second = await api.submit(chain(3))
    failed = await api.wait_finished(first)
    assert failed["status"] == "failed" and failed["error"]["code"] == "worker_error"
    assert (await api.wait_finished(second))["status"] == "done"
