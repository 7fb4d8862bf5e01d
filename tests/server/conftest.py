"""Server test fixtures: a registry (core pack + server test nodes), apps on temp data
folders and an HTTP client (helpers live in serverkit.py beside this file).

The registry is built once per session (plugin discovery is the slow part); the test nodes
read a ``Control`` that is reset for every test.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # so tests can `import serverkit` (the root conftest shadows
# the name `conftest`)

from serverkit import CONTROL, Api, Control, ServerTestNodes  # noqa: E402

from graphflow import load_plugins  # noqa: E402
from graphflow.server import ServerConfig, create_app  # noqa: E402


@pytest.fixture(scope="session")
def registry():
    """The core node pack (and whatever else is installed) plus the server test nodes."""
    loaded = load_plugins(modules=[("servertests", ServerTestNodes())])
    assert "core.add" in loaded.registry and "srv.wait" in loaded.registry
    return loaded.registry


@pytest.fixture(autouse=True)
def control() -> Control:
    """Fresh switches for the test nodes; releases any node still waiting afterwards."""
    CONTROL.release.clear()
    CONTROL.started.clear()
    CONTROL.calls.clear()
    yield CONTROL
    CONTROL.release.set()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh data folder."""
    return tmp_path / "data"


@pytest_asyncio.fixture
async def make_api(registry, data_dir):
    """Start apps (``await make_api(**config)``); all are closed at the end of the test."""
    clients: list[TestClient] = []

    async def start(registry_override: Any = None, **config: Any) -> Api:
        config.setdefault("data_dir", data_dir)
        app = create_app(ServerConfig(**config), registry=registry_override or registry)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return Api(client, app)

    yield start
    for client in clients:
        await client.close()  # idempotent: tests may have closed (restarted) some already


@pytest_asyncio.fixture
async def api(make_api) -> Api:
    """A running server on a fresh data folder."""
    return await make_api()
