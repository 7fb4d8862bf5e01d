"""The editor's "Collapse to subgraph" keeps a workflow's meaning: the engine runs the collapsed
document to the same outputs as the original.

The collapsing is the editor's own code (web/src/graph/collapse.ts), run by Vitest on the
cases written here (web/tests/collapseForEngine.test.ts); each case's original and collapsed
documents then run on fresh executors, so no result comes from the other's cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from graphflow import Executor, load_plugins
from graphflow.graph import validate
from graphflow.workflow import workflow_from_dict

pytestmark = [pytest.mark.web, pytest.mark.slow]

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def link(node: str, output: str) -> dict:
    return {"link": [node, output]}


MATH = {
    "format": "graphflow/1",
    "nodes": {
        "width": {"type": "core.int", "inputs": {"value": 1920}},
        "height": {"type": "core.int", "inputs": {"value": 1080}},
        "product": {
            "type": "core.multiply",
            "inputs": {"a": link("width", "int"), "b": link("height", "int")},
        },
        "scaled": {"type": "core.divide", "inputs": {"a": link("product", "float"), "b": 1e6}},
        "whole": {"type": "core.round", "inputs": {"value": link("scaled", "float")}},
        "show_mp": {"type": "core.show", "inputs": {"value": link("whole", "int"), "label": "mp"}},
        "show_px": {"type": "core.show", "inputs": {"value": link("product", "float")}},
    },
}


def film_look() -> dict:
    """workflows/subgraph_film_look.json on a 64-pixel photo (fast on a CPU)."""
    document = json.loads((WORKFLOWS / "subgraph_film_look.json").read_text())
    document["nodes"]["photo"]["inputs"]["size"] = 64
    return document


# name → (document, selection to collapse, nodes whose outputs are compared)
CASES = {
    # the middle of a chain: two inputs from outside, two outputs used outside
    "math": (MATH, ["product", "scaled"], ["show_mp", "show_px"]),
    # two subgraph nodes collapsed into a new subgraph that nests them; one input (the photo)
    "film_look": (film_look(), ["light", "heavy"], ["both"]),
    # a chain with a literal-only node and a multi-use photo input, output node outside
    "grain_and_batch": (film_look(), ["heavy", "both"], ["grid"]),
}


@pytest.fixture(scope="module")
def registry():
    return load_plugins().registry


@pytest.fixture
def collapsed(web_npm, web_run, registry, tmp_path, monkeypatch) -> dict[str, dict]:
    """Each case's document as the editor's collapse leaves it."""
    cases = [
        {"name": name, "document": document, "select": select}
        for name, (document, select, _) in CASES.items()
    ]
    cases_file = tmp_path / "cases.json"
    cases_file.write_text(json.dumps({"catalog": registry.to_dict(), "cases": cases}))
    monkeypatch.setenv("GRAPHFLOW_COLLAPSE_CASES", str(cases_file))
    command = [web_npm, "exec", "--", "vitest", "run", "tests/collapseForEngine.test.ts"]
    web_run([*command, "--reporter=dot"], timeout=300)
    return {name: json.loads((tmp_path / f"{name}.collapsed.json").read_text()) for name in CASES}


def outputs_of(document: dict, registry, nodes: list[str]) -> tuple[dict, dict]:
    result = Executor(registry).run(workflow_from_dict(document), outputs=nodes)
    assert result.status == "finished", result.error
    return result.outputs, result.ui


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def check_case(name: str, document: dict, registry) -> None:
    original, select, compared = CASES[name]
    # The selection really became one subgraph node with a definition of its nodes.
    assert not set(select) & set(document["nodes"]), name
    new_ids = set(document["subgraphs"]) - set(original.get("subgraphs", {}))
    assert len(new_ids) == 1, name
    (new_id,) = new_ids
    users = [e for e in document["nodes"].values() if e.get("subgraph") == new_id]
    assert len(users) == 1, name
    assert set(document["subgraphs"][new_id]["nodes"]) == set(select), name

    _, errors = validate(workflow_from_dict(document), registry)
    assert errors == [], (name, [str(error) for error in errors])
    expected = outputs_of(original, registry, compared)
    assert same(outputs_of(document, registry, compared), expected), name


def test_collapsed_selections_run_to_the_same_outputs(collapsed, registry):
    """One Vitest run collapses every case; each then runs as the original did."""
    for name, document in collapsed.items():
        check_case(name, document, registry)
