"""Helpers of the server tests: test nodes, workflow builders, an API client wrapper and a
websocket feed reader (imported by the tests as ``serverkit``)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from graphflow import Any as AnyType
from graphflow import Choice, Float, Int, NodeContext, String, hookimpl, node
from graphflow.server.events_ws import parse_preview_frame


class Control:
    """Switches the server test nodes read (reset for every test)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls: list[str] = []


CONTROL = Control()


def _recurse(depth: int) -> int:
    return _recurse(depth + 1) + 1


@node("srv.wait", idempotent=False, category="tests")
def wait(value: Float = 0.0, limit: Float = 20.0, ctx: NodeContext = None) -> Float:
    """Report progress every 10 ms until released, interrupted, or ``limit`` seconds pass."""
    CONTROL.calls.append("srv.wait")
    CONTROL.started.set()
    deadline = time.monotonic() + limit
    step = 0
    while not CONTROL.release.is_set() and time.monotonic() < deadline:
        step += 1
        ctx.progress(step, 0)
        CONTROL.release.wait(0.01)
    return value


FAILURES = ["value_error", "recursion", "memory", "system_exit", "keyboard_interrupt"]


@node("srv.raise", category="tests")
def raise_error(kind: Choice(FAILURES) = "value_error", value: Float = 0.0) -> Float:
    """Fail in the way named by ``kind`` (really: deep recursion, a huge allocation...)."""
    CONTROL.calls.append(f"srv.raise:{kind}")
    if kind == "recursion":
        _recurse(0)
    if kind == "memory":
        bytearray(1 << 60)  # a real MemoryError: no machine can hand out an exabyte
    if kind == "system_exit":
        sys.exit(3)
    if kind == "keyboard_interrupt":
        raise KeyboardInterrupt
    raise ValueError(f"boom at {value}")


@node("srv.preview", idempotent=False, category="tests")
def preview(
    kind: Choice(["numpy", "pil", "torch", "broken"]) = "numpy",
    size: Int(min=1, max=2048) = 64,
    ctx: NodeContext = None,
) -> Float:
    """Send one preview image of the given kind and size."""
    import numpy as np

    if kind == "numpy":
        image: Any = np.linspace(0, 1, size * size * 3, dtype=np.float32).reshape(1, size, size, 3)
    elif kind == "pil":
        from PIL import Image

        image = Image.new("RGBA", (size, size), (255, 0, 0, 128))
    elif kind == "torch":
        import torch

        image = torch.rand(3, size, size)
    else:
        image = object()
    ctx.preview(image)
    return 1.0


@node("srv.echo", category="tests")
def echo(text: String = "", value: AnyType = None) -> String:
    """Return the text (a cheap, cacheable node)."""
    CONTROL.calls.append("srv.echo")
    return text


@node("srv.record", output=True, category="tests")
def record(value: AnyType, kind: Choice(["as_is", "object", "non_finite"]) = "as_is") -> None:
    """An output node whose ui holds raw values (even ones JSON cannot hold)."""
    if kind == "object":
        return {"value": [object()]}
    if kind == "non_finite":
        return {"value": [float("inf"), float("nan")], "nested": {"x": [float("-inf")]}}
    return {"value": [value]}


class ServerTestNodes:
    """The server test node pack, registered like any plugin."""

    @hookimpl
    def graphflow_nodes(self) -> list:
        """The test nodes."""
        return [wait, raise_error, preview, echo, record]


def link(node_id: str, output: str) -> dict:
    """A link literal."""
    return {"link": [node_id, output]}


def chain(n: int, start: float = 1.0) -> dict:
    """A workflow: a float then ``n - 1`` ``core.add`` nodes, shown at the end."""
    nodes: dict[str, Any] = {"n0": {"type": "core.float", "inputs": {"value": start}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "core.add", "inputs": {"a": link(f"n{i - 1}", "float"), "b": 1}}
    nodes["out"] = {"type": "core.show", "inputs": {"value": link(f"n{n - 1}", "float")}}
    return {"format": "graphflow/1", "nodes": nodes}


def single(node_type: str, inputs: dict | None = None, output: str = "float") -> dict:
    """A workflow of one node shown by ``core.show``."""
    return {
        "format": "graphflow/1",
        "nodes": {
            "n": {"type": node_type, "inputs": inputs or {}},
            "out": {"type": "core.show", "inputs": {"value": link("n", output)}},
        },
    }


class Api:
    """A test client with helpers for the graphflow API."""

    def __init__(self, client: TestClient, app: Any):
        self.client = client
        self.app = app

    @property
    def state(self):
        """The app's ServerState."""
        from graphflow.server.state import STATE

        return self.app[STATE]

    async def submit(self, workflow: dict, **fields: Any) -> str:
        """POST a workflow; returns the job id (fails the test on a non-200)."""
        response = await self.client.post("/api/prompt", json={"workflow": workflow, **fields})
        body = await response.json()
        assert response.status == 200, body
        return body["job_id"]

    async def job(self, job_id: str) -> dict:
        """GET /api/history/{job_id}."""
        response = await self.client.get(f"/api/history/{job_id}")
        assert response.status == 200
        return await response.json()

    async def wait_finished(self, job_id: str, timeout: float = 15.0) -> dict:
        """Poll the history until the job is finished; returns its record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = await self.job(job_id)
            if record["status"] in ("done", "failed", "cancelled"):
                return record
            await asyncio.sleep(0.01)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s: {record}")

    async def wait_running(self, job_id: str, timeout: float = 10.0) -> None:
        """Poll until the job is running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (await self.job(job_id))["status"] == "running":
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"job {job_id} never started")

    async def connect(self, client_id: str | None = "tester", **kwargs: Any) -> Feed:
        """Open /ws and read its first status message."""
        url = "/ws" if client_id is None else f"/ws?client_id={client_id}"
        ws = await self.client.ws_connect(url, **kwargs)
        feed = Feed(ws)
        first = await feed.next()
        assert first["type"] == "status"
        feed.client_id = first["data"]["client_id"]
        return feed


class Feed:
    """A websocket connection that reads JSON messages and preview frames."""

    def __init__(self, ws: Any):
        self.ws = ws
        self.client_id = ""
        self.previews: list[tuple[dict, bytes]] = []

    async def next(self, timeout: float = 10.0) -> dict:
        """The next JSON message (binary preview frames are collected on the side)."""
        while True:
            message = await asyncio.wait_for(self.ws.receive(), timeout)
            if message.type == WSMsgType.BINARY:
                self.previews.append(parse_preview_frame(message.data))
                continue
            if message.type != WSMsgType.TEXT:
                raise AssertionError(f"websocket ended: {message.type} {message.extra}")
            return message.json()

    async def until_done(self, job_id: str, timeout: float = 15.0) -> list[dict]:
        """Every message up to and including this job's ``job_done``."""
        messages = []
        while True:
            message = await self.next(timeout)
            messages.append(message)
            if message["type"] == "job_done" and message["data"]["job_id"] == job_id:
                return messages

    async def until(self, kind: str, timeout: float = 10.0) -> dict:
        """The next message of one type."""
        while True:
            message = await self.next(timeout)
            if message["type"] == kind:
                return message
