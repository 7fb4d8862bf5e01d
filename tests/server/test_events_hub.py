"""The websocket hub on its own: a slow client is cut off, previews are dropped first."""

from __future__ import annotations

import asyncio

import pytest

from graphflow.server.events_ws import PREVIEW_BACKLOG, Connection, EventHub

pytestmark = pytest.mark.asyncio


class StuckSocket:
    """A websocket whose peer never reads: every send waits forever."""

    def __init__(self):
        self.closed_with = None
        self.never = asyncio.Event()

    async def send_str(self, text):
        await self.never.wait()

    async def send_bytes(self, data):
        await self.never.wait()

    async def close(self, code, message):
        self.closed_with = code


async def test_a_client_too_far_behind_is_disconnected_and_its_backlog_dropped():
    ws = StuckSocket()
    conn = Connection(ws, "slow", max_backlog=100)
    conn.task = asyncio.ensure_future(conn.write_forever())
    for i in range(101):
        conn.send(f"message {i}")
    await asyncio.sleep(0)
    assert conn.closed and not conn.outbox
    await conn.closing
    assert ws.closed_with == 1013
    conn.task.cancel()


async def test_previews_are_skipped_for_a_client_that_is_behind():
    hub = EventHub()
    conn = Connection(StuckSocket(), "c", max_backlog=1000)
    hub._clients["c"] = {conn}
    for _ in range(PREVIEW_BACKLOG):
        conn.send("event")
    hub.send_preview("c", b"frame")
    assert b"frame" not in conn.outbox
    conn.outbox.clear()
    hub.send_preview("c", b"frame")
    assert list(conn.outbox) == [b"frame"]


async def test_status_broadcasts_are_coalesced_per_loop_iteration():
    hub = EventHub(status=lambda: {"pending": 0, "running": 0})
    conn = Connection(StuckSocket(), "c", max_backlog=1000)
    hub._clients["c"] = {conn}
    for _ in range(50):
        hub.broadcast_status()
    await asyncio.sleep(0)
    assert len(conn.outbox) == 1
