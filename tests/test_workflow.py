"""Workflow documents: round trips, schema, migrations, readable format errors."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from graphflow import WorkflowFormatError, dumps_workflow, load_workflow, loads_workflow
from graphflow.workflow import Link, migrate, save_workflow, workflow_json_schema

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "workflows").glob("*.json"))


def test_load_then_save_is_byte_stable():
    text = dumps_workflow(
        loads_workflow(
            json.dumps(
                {
                    "format": "graphflow/1",
                    "nodes": {
                        "z": {"type": "core.float", "inputs": {"value": 0.1}, "title": "Zé"},
                        "a": {"type": "core.show", "inputs": {"value": {"link": ["z", "float"]}}},
                        "n": {"type": "core.show", "inputs": {"value": None, "label": "x\ny"}},
                    },
                    "editor": {"positions": {"z": [1.5, -2]}, "groups": []},
                }
            )
        )
    )
    assert dumps_workflow(loads_workflow(text)) == text
    assert list(json.loads(text)["nodes"]) == ["z", "a", "n"]  # document order kept


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_workflows_are_in_canonical_form(path):
    assert dumps_workflow(load_workflow(path)) == path.read_text(encoding="utf-8")


def test_links_and_literals_are_told_apart():
    workflow = loads_workflow(
        '{"format": "graphflow/1", "nodes": {"a": {"type": "x.y", "inputs": '
        '{"l": {"link": ["b", "out"]}, "d": {"key": 1}, "s": "text"}}}}'
    )
    inputs = workflow.nodes["a"].inputs
    assert isinstance(inputs["l"], Link) and (inputs["l"].node, inputs["l"].output) == ("b", "out")
    assert inputs["d"] == {"key": 1} and inputs["s"] == "text"


def test_committed_schema_matches_the_model():
    committed = json.loads((ROOT / "docs" / "workflow.schema.json").read_text())
    assert committed == workflow_json_schema(), "run: graphflow schema > docs/workflow.schema.json"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_workflows_satisfy_the_schema(path):
    jsonschema.validate(json.loads(path.read_text()), workflow_json_schema())


def test_prototype_format_is_migrated():
    old = {
        "format": "graphflow/0",
        "nodes": [
            {"id": 1, "type": "core.int", "values": {"value": 3}, "pos": [10, 20]},
            {"id": 2, "type": "core.show", "values": {"label": "n"}, "title": "Show"},
        ],
        "links": [[1, "int", 2, "value"]],
    }
    new = migrate(old)
    assert new == {
        "format": "graphflow/1",
        "nodes": {
            "1": {"type": "core.int", "inputs": {"value": 3}},
            "2": {
                "type": "core.show",
                "inputs": {"label": "n", "value": {"link": ["1", "int"]}},
                "title": "Show",
            },
        },
        "editor": {"positions": {"1": [10, 20]}},
    }
    assert old["format"] == "graphflow/0"  # the input is not modified
    assert loads_workflow(json.dumps(old)).nodes["2"].inputs["value"] == Link(link=("1", "int"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "invalid JSON at line 1"),
        ("[1, 2]", "must be a JSON object"),
        ('{"nodes": {}}', 'no "format" field'),
        ('{"format": "graphflow/9", "nodes": {}}', "unknown workflow format 'graphflow/9'"),
        ('{"format": "graphflow/1", "nodes": {"a": {"inputs": {}}}}', "nodes.a.type"),
        ('{"format": "graphflow/1", "nodes": {"a": {"type": "x.y", "colour": 1}}}', "colour"),
    ],
)
def test_bad_documents_raise_one_readable_error(text, fragment):
    with pytest.raises(WorkflowFormatError) as caught:
        loads_workflow(text)
    assert fragment in str(caught.value)


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(WorkflowFormatError, match="not found"):
        load_workflow(tmp_path / "nope.json")


def test_save_writes_atomically_and_reloads(tmp_path):
    workflow = loads_workflow('{"format": "graphflow/1", "nodes": {"a": {"type": "core.int"}}}')
    target = tmp_path / "w.json"
    save_workflow(workflow, target)
    assert load_workflow(target) == workflow
    assert [p.name for p in tmp_path.iterdir()] == ["w.json"]
