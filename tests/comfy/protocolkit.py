"""Helpers of the ComfyUI protocol tests: small ComfyUI-named test class types, a server
fixture, and a ComfyUI-style websocket client that records every frame."""

from __future__ import annotations

import asyncio
import json
import struct
import threading
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from gf_comfy import names
from gf_comfy.names import ComfyInput, comfy_node
from graphflow import Float, Image, Int, NodeContext, String, hookimpl, load_plugins
from graphflow.server import ServerConfig, create_app

SEED_MAX = 2**64 - 1
GATE = threading.Event()


def declare_test_nodes() -> list:
    """Declare the test class types (removed again by :func:`forget_test_nodes`, so they
    never show up in other tests' catalogues)."""

    @comfy_node("GFTestSeed", display_name="Test Seed", category="tests",
                inputs={"seed": ComfyInput(control_after_generate=True)})  # fmt: skip
    def seed_node(seed: Int(min=0, max=SEED_MAX) = 0, scale: Float(min=0.0, max=10.0) = 1.0) -> Int:
        """Return the seed unchanged (an INT up to 2^64 − 1)."""
        return seed

    @comfy_node("GFTestShowInt", display_name="Test Show Int", category="tests", output=True)
    def show_int(value: Int(min=0, max=SEED_MAX)) -> None:
        """An output node showing an integer exactly (as text)."""
        return {"text": [str(value)]}

    @comfy_node("GFTestImage", display_name="Test Image", category="tests")
    def make_image(width: Int(min=1, max=64) = 8, steps: Int(min=0, max=20) = 0,
                   ctx: NodeContext = None) -> Image:  # fmt: skip
        """A grey image, reporting ``steps`` progress steps (each with a preview)."""
        import torch

        image = torch.full((1, width, width, 3), 0.5)
        for step in range(steps):
            ctx.progress(step + 1, steps)
            ctx.preview(image)
        return image

    @comfy_node("GFTestSave", display_name="Test Save", category="tests", output=True,
                idempotent=False)  # fmt: skip
    def save(images: Image, filename_prefix: String = "test", ctx: NodeContext = None) -> None:
        """Save the first image as PNG in output/ and show it as ComfyUI does."""
        import numpy as np
        from PIL import Image as PILImage

        array = (images[0].numpy() * 255).astype(np.uint8)
        name = f"{filename_prefix}_00001_.png"
        PILImage.fromarray(array).save(ctx.output_dir / name)
        return {"images": [{"filename": name, "subfolder": "", "type": "output"}]}

    @comfy_node("GFTestGate", display_name="Test Gate", category="tests", idempotent=False)
    def gate(value: Int = 0, ctx: NodeContext = None) -> Int:
        """Wait (reporting progress) until the test opens :data:`GATE` or interrupts."""
        step = 0
        while not GATE.wait(0.01):
            step += 1
            ctx.progress(step, 0)
        return value

    @comfy_node("GFTestFail", display_name="Test Fail", category="tests")
    def fail(value: Int = 0) -> Int:
        """Always raise."""
        raise ValueError(f"failing on purpose at {value}")

    return [seed_node, show_int, make_image, save, gate, fail]


TEST_CLASSES = ("GFTestSeed", "GFTestShowInt", "GFTestImage", "GFTestSave", "GFTestGate",
                "GFTestFail")  # fmt: skip


def forget_test_nodes() -> None:
    """Remove the test class types from gf_comfy's tables."""
    for class_type in TEST_CLASSES:
        entry = names.CLASSES.pop(class_type, None)
        if entry is not None:
            names.BY_NODE_ID.pop(entry.spec.id, None)


class ComfyTestNodes:
    """The test class types as a plugin."""

    def __init__(self, specs: list):
        self.specs = specs

    @hookimpl
    def graphflow_nodes(self) -> list:
        """The test nodes."""
        return self.specs


@pytest.fixture(scope="module")
def comfy_registry():
    """Every installed pack (gf_comfy with its protocol) plus the test class types."""
    loaded = load_plugins(modules=[("comfytests", ComfyTestNodes(declare_test_nodes()))])
    assert "comfy.gf_test_seed" in loaded.registry
    yield loaded.registry
    forget_test_nodes()


@pytest_asyncio.fixture
async def make_client(comfy_registry, tmp_path):
    """Start servers (``await make_client(**config)``); closed at the end of the test."""
    clients: list[TestClient] = []
    GATE.clear()

    async def start(**config: Any) -> TestClient:
        config.setdefault("data_dir", tmp_path / "data")
        app = create_app(ServerConfig(**config), registry=comfy_registry)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    GATE.set()
    for client in clients:
        await client.close()


@pytest_asyncio.fixture
async def client(make_client) -> TestClient:
    """One running server."""
    return await make_client()


def seed_prompt(seed: int = 7, **extra: Any) -> dict:
    """``GFTestSeed → GFTestShowInt`` in API format."""
    return {
        "3": {"class_type": "GFTestSeed", "inputs": {"seed": seed, **extra}},
        "9": {"class_type": "GFTestShowInt", "inputs": {"value": ["3", 0]}},
    }


def image_prompt(steps: int = 0, prefix: str = "test") -> dict:
    """``GFTestImage → GFTestSave`` in API format."""
    return {
        "1": {"class_type": "GFTestImage", "inputs": {"width": 8, "steps": steps}},
        "2": {
            "class_type": "GFTestSave",
            "inputs": {"images": ["1", 0], "filename_prefix": prefix},
        },
    }


class ComfyWs:
    """A ComfyUI-style websocket client recording every JSON message and binary frame."""

    def __init__(self, ws: Any):
        self.ws = ws
        self.messages: list[dict] = []
        self.frames: list[bytes] = []

    @classmethod
    async def open(cls, client: TestClient, client_id: str, **kwargs: Any) -> ComfyWs:
        """Connect ``/ws?clientId=``."""
        return cls(await client.ws_connect(f"/ws?clientId={client_id}", **kwargs))

    async def next(self, timeout: float = 10.0) -> dict:
        """The next JSON message (binary frames are kept in ``frames``)."""
        while True:
            message = await asyncio.wait_for(self.ws.receive(), timeout)
            if message.type == WSMsgType.BINARY:
                self.frames.append(message.data)
                continue
            if message.type != WSMsgType.TEXT:
                raise AssertionError(f"websocket ended: {message.type}")
            data = json.loads(message.data)
            self.messages.append(data)
            return data

    async def until_done(self, prompt_id: str, timeout: float = 15.0) -> list[dict]:
        """Messages up to ``executing`` with ``node: null`` for this prompt (the end)."""
        start = len(self.messages)
        while True:
            message = await self.next(timeout)
            data = message["data"]
            if (
                message["type"] == "executing"
                and data.get("node") is None
                and data.get("prompt_id") == prompt_id
            ):
                return self.messages[start:]


def kinds(messages: list[dict], prompt_id: str | None = None) -> list[str]:
    """Message types, leaving out ``status`` (sent on every queue change)."""
    return [
        m["type"]
        for m in messages
        if m["type"] != "status" and (prompt_id is None or m["data"].get("prompt_id") == prompt_id)
    ]


def frame_type(frame: bytes) -> int:
    """The 4-byte big-endian event type of a binary frame."""
    return struct.unpack(">I", frame[:4])[0]


class ServerThread:
    """A server on 127.0.0.1 (a free port) in its own thread and event loop, for clients
    that block (urllib)."""

    def __init__(self, app: Any):
        import threading

        from aiohttp import web

        self.app = app
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None)
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            self.port = self.runner.addresses[0][1]
            started.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.runner.cleanup())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(30), "the server did not start"

    def stop(self) -> None:
        """Stop the loop and wait for the cleanup."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
