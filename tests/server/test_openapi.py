"""docs/openapi.json is a valid OpenAPI 3.1 document that lists exactly the app's routes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphflow.server import ServerConfig, create_app
from graphflow.server.app import PLUGIN_ROUTES

SPEC_PATH = Path(__file__).parents[2] / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def spec() -> dict:
    """The OpenAPI document."""
    return json.loads(SPEC_PATH.read_text())


def test_the_openapi_document_is_valid_openapi_3_1(spec):
    validator = pytest.importorskip("openapi_spec_validator")
    assert spec["openapi"].startswith("3.1")
    validator.validate(spec)


def test_every_route_of_the_app_is_documented_and_nothing_else(spec, registry, tmp_path):
    """graphflow's own routes; those plugins add (graphflow_server_routes, e.g. gf_comfy's
    ComfyUI dialect) are documented by their plugin (docs/comfyui.md), not here."""
    app = create_app(ServerConfig(data_dir=tmp_path), registry=registry)
    plugin_routes = app[PLUGIN_ROUTES]
    served = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        path = route.resource.canonical if route.resource is not None else ""
        if (route.method, path) in plugin_routes:
            continue
        served.add((route.method.lower(), path))
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert served == documented
