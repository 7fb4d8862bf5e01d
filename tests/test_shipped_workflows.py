"""Every workflow shipped in workflows/ validates against the installed node packs, so a new
user's first `graphflow run` of any of them fails only for weights they must bring."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphflow import load_plugins, load_workflow, validate
from graphflow.errors import ErrorCode

WORKFLOWS = sorted((Path(__file__).parents[1] / "workflows").glob("*.json"))
NEEDS_USER_WEIGHTS = {"controlnet_canny.json"}  # an SD 1.5 checkpoint and a ControlNet


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_a_shipped_workflow_validates(path, registry):
    _, errors = validate(load_workflow(path), registry)
    if path.name in NEEDS_USER_WEIGHTS:
        assert errors, "it needs user weights, so without them validation must say so"
        assert {e.code for e in errors} == {ErrorCode.NOT_IN_CHOICES}
    else:
        assert errors == []
