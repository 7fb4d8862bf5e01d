"""Cancelling pending jobs, interrupting the running one, clearing the queue."""

from __future__ import annotations

import pytest
from serverkit import chain, single

pytestmark = pytest.mark.asyncio


async def test_cancelled_pending_job_never_runs(api, control):
    blocker = await api.submit(single("srv.wait"))
    await api.wait_running(blocker)
    victim = await api.submit(single("srv.echo", {"text": "never"}, output="string"))
    response = await api.client.delete(f"/api/queue/{victim}")
    assert response.status == 200
    assert await response.json() == {"job_id": victim, "status": "cancelled"}
    control.release.set()
    assert (await api.wait_finished(blocker))["status"] == "done"
    record = await api.job(victim)
    assert record["status"] == "cancelled"
    assert record["error"]["code"] == "cancelled"
    assert "srv.echo" not in control.calls


async def test_cancelling_the_running_job_is_refused_with_a_hint(api, control):
    job_id = await api.submit(single("srv.wait"))
    await api.wait_running(job_id)
    response = await api.client.delete(f"/api/queue/{job_id}")
    body = await response.json()
    assert response.status == 409
    assert body["error"]["code"] == "job_not_pending"
    assert "/api/interrupt" in body["error"]["message"]


async def test_cancelling_an_unknown_job_is_404(api):
    response = await api.client.delete("/api/queue/nope")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "job_not_found"


async def test_interrupt_stops_the_running_job_and_the_next_job_runs(api):
    feed = await api.connect("c1")
    slow = await api.submit(single("srv.wait", {"limit": 30.0}), client_id="c1")
    following = await api.submit(chain(3), client_id="c1")
    await feed.until("progress")
    response = await api.client.post("/api/interrupt", json={"job_id": slow})
    assert response.status == 200
    assert await response.json() == {"interrupted": [slow]}
    messages = await feed.until_done(slow)
    assert "run_interrupted" in [m["type"] for m in messages]
    assert messages[-1]["data"]["status"] == "cancelled"
    record = await api.job(slow)
    assert record["status"] == "cancelled"
    assert record["error"]["code"] == "interrupted"
    assert record["timings"]["total_seconds"] < 10
    assert (await api.wait_finished(following))["status"] == "done"


async def test_interrupt_without_a_job_id_stops_whatever_runs(api):
    job_id = await api.submit(single("srv.wait", {"limit": 30.0}))
    await api.wait_running(job_id)
    response = await api.client.post("/api/interrupt")
    assert await response.json() == {"interrupted": [job_id]}
    assert (await api.wait_finished(job_id))["status"] == "cancelled"


async def test_interrupt_with_nothing_running_interrupts_nothing(api):
    response = await api.client.post("/api/interrupt", json={})
    assert response.status == 200
    assert await response.json() == {"interrupted": []}


async def test_interrupting_a_pending_job_is_409(api, control):
    blocker = await api.submit(single("srv.wait"))
    await api.wait_running(blocker)
    pending = await api.submit(chain(2))
    response = await api.client.post("/api/interrupt", json={"job_id": pending})
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "job_not_running"


async def test_an_interrupt_does_not_leak_into_the_next_job(api):
    slow = await api.submit(single("srv.wait", {"limit": 30.0}))
    await api.wait_running(slow)
    await api.client.post("/api/interrupt", json={"job_id": slow})
    next_job = await api.submit(chain(20, start=7.0))
    assert (await api.wait_finished(slow))["status"] == "cancelled"
    assert (await api.wait_finished(next_job))["status"] == "done"


async def test_clearing_the_queue_cancels_every_pending_job_but_not_the_running_one(api, control):
    blocker = await api.submit(single("srv.wait"))
    await api.wait_running(blocker)
    pending = [await api.submit(chain(2, start=float(i))) for i in range(3)]
    response = await api.client.post("/api/queue/clear")
    assert sorted((await response.json())["cancelled"]) == sorted(pending)
    queue = await (await api.client.get("/api/queue")).json()
    assert queue["pending"] == [] and [j["job_id"] for j in queue["running"]] == [blocker]
    control.release.set()
    assert (await api.wait_finished(blocker))["status"] == "done"
    for job_id in pending:
        assert (await api.job(job_id))["status"] == "cancelled"


async def test_everyone_sees_queue_status_changes(api, control):
    watcher = await api.connect("someone-else")
    await api.submit(single("srv.wait"))
    status = await watcher.until("status")
    assert set(status["data"]["queue"]) == {"pending", "running"}
