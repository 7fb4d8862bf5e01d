"""Ray backend fixtures: one local Ray cluster per test module (2 CPUs, loopback only, no
dashboard, a small object store), servers whose jobs run on Ray worker actors, and the test
node pack in ``plugins/`` that both the server and the actors load as a plugin folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from serverkit import Api

from graphflow import load_plugins
from graphflow.server import ServerConfig, create_app

PLUGIN_DIR = Path(__file__).parent / "plugins"


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster for the module, stopped at its end."""
    ray = pytest.importorskip("ray")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 << 20,
        configure_logging=False,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_registry():
    """Installed packs plus the Ray test nodes (loaded from the plugin folder)."""
    loaded = load_plugins([PLUGIN_DIR])
    assert "raytest.sleep" in loaded.registry, loaded.problems
    return loaded.registry


@pytest_asyncio.fixture
async def make_ray_api(ray_cluster, ray_registry, tmp_path):
    """Start servers with ``--backend ray`` (``await make_ray_api(workers=2)``)."""
    clients: list[TestClient] = []

    async def start(**config: Any) -> Api:
        config.setdefault("data_dir", tmp_path / "data")
        config.setdefault("workers", 2)
        config.setdefault("gpus_per_worker", 0)
        server = ServerConfig(backend="ray", plugin_dirs=[str(PLUGIN_DIR)], **config)
        app = create_app(server, registry=ray_registry)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return Api(client, app)

    yield start
    for client in clients:
        await client.close()
