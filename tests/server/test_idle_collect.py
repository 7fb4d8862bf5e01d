"""The server runs the garbage collector rarely during jobs and fully once it goes idle."""

from __future__ import annotations

import asyncio

import pytest
from serverkit import chain, single

from graphflow.server import dispatcher as dispatcher_module

pytestmark = pytest.mark.asyncio


async def _collections_after(calls: list, seconds: float) -> int:
    await asyncio.sleep(seconds)
    return len(calls)


async def test_a_full_collection_follows_the_last_job_once_the_server_is_idle(
    api, control, monkeypatch
):
    calls: list[int] = []
    monkeypatch.setattr(dispatcher_module.gc, "collect", lambda *args: calls.append(1) or 0)
    api.state.dispatcher.idle_collect_seconds = 0.2

    running = await api.submit(single("srv.wait", {"value": 1.0}))
    await asyncio.to_thread(control.started.wait, 10)
    assert await _collections_after(calls, 0.5) == 0  # never while a job runs
    queued = await api.submit(chain(2, start=3.0))
    control.release.set()
    assert (await api.wait_finished(running))["status"] == "done"
    assert (await api.wait_finished(queued))["status"] == "done"
    for _ in range(100):  # about idle_collect_seconds after the queued job ended
        if calls:
            break
        await asyncio.sleep(0.05)
    assert calls == [1]
    assert await _collections_after(calls, 0.5) == 1  # once, not on a timer


async def test_idle_collection_can_be_turned_off(api, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(dispatcher_module.gc, "collect", lambda *args: calls.append(1) or 0)
    api.state.dispatcher.idle_collect_seconds = None
    job = await api.submit(chain(2, start=5.0))
    assert (await api.wait_finished(job))["status"] == "done"
    assert await _collections_after(calls, 0.3) == 0
