"""Subgraphs: a workflow used as one node, flattened before validation (graphflow.subgraphs)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from graphflow import Executor, Float, String, load_plugins, node
from graphflow.cache import OutputCache
from graphflow.errors import ErrorCode, ValidationFailed
from graphflow.graph import validate
from graphflow.runtime.catalog import ModelCatalog
from graphflow.subgraphs import SEPARATOR, flat_document
from graphflow.types import Choice
from graphflow.workflow import (
    dumps_workflow,
    load_workflow,
    loads_workflow,
    workflow_from_dict,
    workflow_json_schema,
)
from support import link

WIDGETS = ModelCatalog("widgets", (".safetensors",))
PLUS = {
    "title": "Plus",
    "inputs": [{"name": "a", "type": "FLOAT"}, {"name": "b", "type": "FLOAT", "default": 5}],
    "outputs": [{"name": "sum", "from": ["3", "float"]}],
    "nodes": {"3": {"type": "t.add", "inputs": {"a": link("$in", "a"), "b": link("$in", "b")}}},
}


def doc(nodes: dict, subgraphs: dict | None = None) -> dict:
    data = {"format": "graphflow/1", "nodes": nodes}
    if subgraphs is not None:
        data["subgraphs"] = subgraphs
    return data


def plus_document(x: float = 1, y: float = 100) -> dict:
    """x → subgraph 12 (x + 5) → out; and an unrelated y → out2."""
    return doc(
        {
            "x": {"type": "t.value", "inputs": {"value": x}},
            "y": {"type": "t.value", "inputs": {"value": y}},
            "12": {"type": "subgraph", "subgraph": "plus", "inputs": {"a": link("x", "float")}},
            "out": {"type": "t.out", "inputs": {"value": link("12", "sum")}},
            "out2": {"type": "t.out", "inputs": {"value": link("y", "float")}},
        },
        {"plus": PLUS},
    )


def errors_of(document: dict, registry) -> list:
    validated, errors = validate(workflow_from_dict(document), registry)
    assert validated is None
    return errors


def test_a_subgraph_node_becomes_its_inner_nodes_with_path_ids(pack):
    workflow = workflow_from_dict(plus_document())
    validated, errors = validate(workflow, pack.registry)
    assert errors == []
    assert list(validated.workflow.nodes) == ["x", "y", "12:3", "out", "out2"]
    inner = validated.workflow.nodes["12:3"].inputs
    assert inner["a"].link == ("x", "float") and inner["b"] == 5  # the declared default
    assert validated.workflow.nodes["out"].inputs["value"].link == ("12:3", "float")
    assert validated.document is workflow
    result = pack.executor().run(workflow)
    assert result.ui["out"] == {"value": [6.0]}
    assert "12:3" in result.executed


def test_subgraphs_nest_two_deep(pack):
    twice = {
        "inputs": [{"name": "v", "type": "FLOAT"}],
        "outputs": [
            {"name": "result", "from": ["second", "sum"]},
            {"name": "same", "from": ["$in", "v"]},
        ],
        "nodes": {
            "first": {"type": "subgraph", "subgraph": "plus", "inputs": {"a": link("$in", "v")}},
            "second": {
                "type": "subgraph",
                "subgraph": "plus",
                "inputs": {"a": link("first", "sum"), "b": 10},
            },
        },
    }
    document = doc(
        {
            "x": {"type": "t.value", "inputs": {"value": 2}},
            "20": {"type": "subgraph", "subgraph": "twice", "inputs": {"v": link("x", "float")}},
            "out": {"type": "t.out", "inputs": {"value": link("20", "result")}},
            "echo": {"type": "t.out", "inputs": {"value": link("20", "same")}},
        },
        {"plus": PLUS, "twice": twice},
    )
    validated, errors = validate(workflow_from_dict(document), pack.registry)
    assert errors == []
    assert set(validated.workflow.nodes) == {"x", "20:first:3", "20:second:3", "out", "echo"}
    second = validated.workflow.nodes["20:second:3"].inputs
    assert second["a"].link == ("20:first:3", "float") and second["b"] == 10
    assert validated.workflow.nodes["echo"].inputs["value"].link == ("x", "float")
    result = pack.executor().run(validated)
    assert result.ui["out"] == {"value": [17.0]}  # (2 + 5) + 10
    assert result.ui["echo"] == {"value": [2.0]}


def test_an_unrelated_outer_change_does_not_rerun_the_inner_node(pack):
    executor = pack.executor()
    first = executor.run(workflow_from_dict(plus_document(y=100)))
    assert "12:3" in first.executed
    second = executor.run(workflow_from_dict(plus_document(y=7)))
    assert second.ui["out2"] == {"value": [7.0]}
    assert "12:3" not in second.executed
    assert pack.calls["t.add"] == 1
    third = executor.run(workflow_from_dict(plus_document(x=3, y=7)))
    assert "12:3" in third.executed and third.ui["out"] == {"value": [8.0]}
    assert pack.calls["t.add"] == 2


def test_the_inner_node_caches_like_the_same_node_outside_a_subgraph(pack):
    executor = pack.executor()
    executor.run(workflow_from_dict(plus_document()))
    plain = doc(
        {
            "x": {"type": "t.value", "inputs": {"value": 1}},
            "sum": {"type": "t.add", "inputs": {"a": link("x", "float"), "b": 5}},
            "out": {"type": "t.out", "inputs": {"value": link("sum", "float")}},
        }
    )
    result = executor.run(workflow_from_dict(plain))
    assert "sum" not in result.executed and pack.calls["t.add"] == 1


def test_inputs_are_type_checked_at_the_boundary(pack):
    @node("t.text")
    def text() -> String:
        """Some text."""
        return "x"

    pack.registry.register(text, plugin="tests")
    wrong = {
        "inputs": [{"name": "a", "type": "FLOAT"}, {"name": "s", "type": "STRING", "default": ""}],
        "outputs": [{"name": "sum", "from": ["3", "float"], "type": "STRING"}],
        "nodes": {"3": {"type": "t.add", "inputs": {"a": link("$in", "a"), "b": link("$in", "s")}}},
    }
    document = doc(
        {
            "t": {"type": "t.text"},
            "1": {"type": "subgraph", "subgraph": "s", "inputs": {"a": link("t", "string")}},
            "2": {"type": "subgraph", "subgraph": "s", "inputs": {"a": "five", "zz": 1}},
            "3": {"type": "subgraph", "subgraph": "s"},
            "out": {"type": "t.out", "inputs": {"value": link("1", "sum")}},
        },
        {"s": wrong},
    )
    found = {(e.code, e.node, e.input) for e in errors_of(document, pack.registry)}
    assert (ErrorCode.TYPE_MISMATCH, "1", "a") in found  # STRING link into a FLOAT input
    assert (ErrorCode.INVALID_LITERAL, "2", "a") in found  # "five" for a FLOAT
    assert (ErrorCode.UNKNOWN_INPUT, "2", "zz") in found
    assert (ErrorCode.MISSING_INPUT, "3", "a") in found  # no default: required
    assert (ErrorCode.TYPE_MISMATCH, "1:3", "b") in found  # STRING input read as FLOAT
    assert (ErrorCode.TYPE_MISMATCH, "1", None) in found  # FLOAT output declared STRING
    # the missing input is reported once, on the subgraph node, not again inside it
    assert not any(code is ErrorCode.MISSING_INPUT and n == "3:3" for code, n, _ in found)


def test_inner_errors_name_the_path_through_the_nesting(pack):
    broken = {
        "inputs": [],
        "outputs": [],
        "nodes": {
            "3": {"type": "t.steps", "inputs": {"value": 1, "steps": 0}},
            "4": {"type": "t.add"},
            "o": {"type": "t.out", "inputs": {"value": link("3", "float")}},
        },
    }
    outer = {"inputs": [], "outputs": [], "nodes": {"12": {"type": "subgraph", "subgraph": "b"}}}
    document = doc(
        {"12": {"type": "subgraph", "subgraph": "b"}, "20": {"type": "subgraph", "subgraph": "o"}},
        {"b": broken, "o": outer},
    )
    errors = {(e.node, e.input): e for e in errors_of(document, pack.registry)}
    steps = errors[("12:3", "steps")]
    assert steps.code is ErrorCode.OUT_OF_RANGE and steps.path == ("12", "3")
    assert "[outer node 12 › inner node 3, input 'steps']" in str(steps)
    assert steps.to_dict()["path"] == ["12", "3"]
    deep = errors[("20:12:4", "a")]
    assert deep.code is ErrorCode.MISSING_INPUT
    assert str(deep).startswith(
        "missing_input: [outer node 20 › inner node 12 › inner node 4, input 'a']"
    )
    assert "path" not in errors_of(doc({"a": {"type": "t.add"}}), pack.registry)[0].to_dict()


def test_a_missing_subgraph_file_is_a_clear_error(pack, tmp_path):
    path = tmp_path / "main.json"
    path.write_text(json.dumps(doc({"s": {"type": "subgraph", "file": "lib/nope.json"}})))
    with pytest.raises(ValidationFailed) as caught:
        pack.executor().validate(load_workflow(path))
    (error,) = caught.value.errors
    assert error.code is ErrorCode.UNKNOWN_NODE_TYPE and error.node == "s"
    assert "cannot read subgraph file 'lib/nope.json'" in error.message
    assert "not found" in error.message and str(tmp_path / "lib" / "nope.json") in error.message


def test_subgraph_files_resolve_relative_to_the_file_that_names_them(pack, tmp_path):
    (tmp_path / "lib").mkdir()
    inner = doc({}, {"plus": PLUS})
    (tmp_path / "lib" / "plus.json").write_text(json.dumps(inner))
    wrapper = {
        "inputs": [{"name": "a", "type": "FLOAT"}],
        "outputs": [{"name": "sum", "from": ["p", "sum"]}],
        "nodes": {
            "p": {"type": "subgraph", "file": "plus.json", "inputs": {"a": link("$in", "a")}}
        },
    }
    (tmp_path / "lib" / "wrap.json").write_text(json.dumps(doc({}, {"wrap": wrapper, "x": PLUS})))
    main = doc(
        {
            "x": {"type": "t.value", "inputs": {"value": 4}},
            "w": {
                "type": "subgraph",
                "file": "lib/wrap.json",
                "subgraph": "wrap",
                "inputs": {"a": link("x", "float")},
            },
            "out": {"type": "t.out", "inputs": {"value": link("w", "sum")}},
        }
    )
    (tmp_path / "main.json").write_text(json.dumps(main))
    result = pack.executor().run(load_workflow(tmp_path / "main.json"))
    assert result.ok and result.ui["out"] == {"value": [9.0]}
    assert "w:p:3" in result.executed
    ambiguous = doc({"w": {"type": "subgraph", "file": "lib/wrap.json"}})
    workflow = workflow_from_dict(ambiguous)
    workflow.base_dir = tmp_path
    (error,) = validate(workflow, pack.registry)[1]
    assert "needs 'subgraph' (which of wrap, x" in error.message


def test_subgraphs_that_refer_to_each_other_in_a_cycle_are_an_error(pack):
    def calling(other: str) -> dict:
        return {
            "inputs": [],
            "outputs": [],
            "nodes": {"n": {"type": "subgraph", "subgraph": other}},
        }

    document = doc(
        {
            "s": {"type": "subgraph", "subgraph": "a"},
            "o": {"type": "t.out", "inputs": {"value": 1}},
        },
        {"a": calling("b"), "b": calling("a"), "self": calling("self")},
    )
    (error,) = errors_of(document, pack.registry)
    assert error.code is ErrorCode.CYCLE and error.node == "s:n:n"
    assert "subgraphs refer to each other in a cycle: a → b → a" in error.message
    assert error.path == ("s", "n", "n")


def test_a_file_that_uses_itself_is_a_cycle(pack, tmp_path):
    me = {"inputs": [], "outputs": [], "nodes": {"n": {"type": "subgraph", "file": "self.json"}}}
    (tmp_path / "self.json").write_text(json.dumps(doc({}, {"me": me})))
    workflow = workflow_from_dict(doc({"s": {"type": "subgraph", "file": "self.json"}}))
    workflow.base_dir = tmp_path
    (error,) = validate(workflow, pack.registry)[1]
    assert error.code is ErrorCode.CYCLE and "me → me" in error.message


def test_unknown_subgraphs_and_broken_definitions_are_reported(pack):
    bad = {
        "inputs": [{"name": "a", "type": "NOPE"}],
        "outputs": [{"name": "o", "from": ["ghost", "float"]}, {"name": "o", "from": ["k", "x"]}],
        "nodes": {"k": {"type": "t.value"}, "a:b": {"type": "t.value"}},
    }
    document = doc(
        {
            "u": {"type": "subgraph", "subgraph": "plsu"},
            "b": {"type": "subgraph", "subgraph": "bad"},
            "n": {"type": "t.value", "subgraph": "plus"},
            "out": {"type": "t.out", "inputs": {"value": link("b", "o")}},
        },
        {"plus": PLUS, "bad": bad},
    )
    messages: dict[tuple, str] = {}
    for error in errors_of(document, pack.registry):
        key = (error.code, error.node)
        messages[key] = messages.get(key, "") + error.message + "\n"
    assert "did you mean plus?" in messages[(ErrorCode.UNKNOWN_NODE_TYPE, "u")]
    assert "declares the output 'o' twice" in messages[(ErrorCode.INVALID_INPUT, "b")]
    assert "input 'a' has the unknown type 'NOPE'" in messages[(ErrorCode.INVALID_INPUT, "b")]
    assert "comes from node 'ghost'" in messages[(ErrorCode.LINK_MISSING_NODE, "b")]
    assert "may not contain ':'" in messages[(ErrorCode.INVALID_INPUT, "b:a:b")]
    assert "only nodes of type 'subgraph'" in messages[(ErrorCode.INVALID_INPUT, "n")]


def test_an_inner_id_that_collides_with_an_outer_one_is_an_error(pack):
    document = doc(
        {
            "x": {"type": "t.value"},
            "12": {"type": "subgraph", "subgraph": "plus", "inputs": {"a": link("x", "float")}},
            "12:3": {"type": "t.out", "inputs": {"value": link("12", "sum")}},
        },
        {"plus": PLUS},
    )
    messages = [e.message for e in errors_of(document, pack.registry)]
    assert any("'12:3' is also a node of the workflow" in m for m in messages)


def test_a_document_with_subgraphs_saves_canonically_and_fits_the_schema():
    text = dumps_workflow(workflow_from_dict(plus_document()))
    assert dumps_workflow(loads_workflow(text)) == text
    data = json.loads(text)
    assert list(data) == ["format", "nodes", "subgraphs"]
    assert data["subgraphs"]["plus"]["inputs"][1] == {"name": "b", "type": "FLOAT", "default": 5}
    assert "default" not in data["subgraphs"]["plus"]["inputs"][0]
    jsonschema.validate(data, workflow_json_schema())


def test_documents_are_equal_wherever_they_were_read_from(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps(plus_document()))
    loaded = load_workflow(path)
    assert loaded.base_dir == tmp_path.resolve()
    assert loaded == workflow_from_dict(plus_document())


def test_an_empty_model_folder_choice_names_the_folder(pack, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_MODELS", str(tmp_path / "models"))

    @node("t.widget_loader")
    def widget_loader(name: Choice(WIDGETS.names)) -> Float:
        """Loads a widget model."""
        return 0.0

    pack.registry.register(widget_loader, plugin="tests")
    document = doc({"w": {"type": "t.widget_loader", "inputs": {"name": "a.safetensors"}}})
    errors = errors_of(document, pack.registry)
    choice = next(e for e in errors if e.code is ErrorCode.NOT_IN_CHOICES)
    assert f"(no choices available: put files in {tmp_path / 'models' / 'widgets'})" in (
        choice.message
    )


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "workflows").glob("subgraph_*.json"))


@pytest.fixture(scope="module")
def installed():
    """Every installed pack's nodes."""
    return load_plugins().registry


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_subgraph_workflows_validate(path, installed):
    validated, errors = validate(load_workflow(path), installed)
    assert errors == []
    assert any(SEPARATOR in node_id for node_id in validated.order)


def test_the_shipped_megapixels_subgraphs_compute(installed):
    executor = Executor(installed, cache=OutputCache())
    result = executor.run(load_workflow(SHIPPED[0].parent / "subgraph_math.json"))
    assert result.ui["show_mp"]["text"] == ["megapixels: 2.07"]
    assert "size:area:product" in result.executed
    from_file = executor.run(load_workflow(SHIPPED[0].parent / "subgraph_from_file.json"))
    assert from_file.ui["show"]["text"] == ["megapixels: 12.0"]


def test_exporters_get_a_flat_document(pack):
    flat = flat_document(plus_document(), pack.registry)
    assert list(flat["nodes"]) == ["x", "y", "12:3", "out", "out2"]
    assert "subgraphs" not in flat
    assert flat["nodes"]["out"]["inputs"]["value"] == {"link": ["12:3", "float"]}
    plain = doc({"x": {"type": "t.value"}})
    assert flat_document(plain, pack.registry) is plain
    with pytest.raises(ValidationFailed, match="no subgraph 'nope'"):
        flat_document(doc({"s": {"type": "subgraph", "subgraph": "nope"}}), pack.registry)


def _register_document_probe(pack) -> list:
    """A t.probe output node that records the document ``ctx.workflow`` gives it."""
    from graphflow import NodeContext

    seen: list = []

    @node("t.probe", output=True)
    def probe(value: Float = 0.0, ctx: NodeContext = None) -> None:
        """Record the running document (what saved images embed)."""
        seen.append(ctx.workflow)

    pack.registry.register(probe, plugin="tests")
    return seen


def test_saved_images_get_the_document_as_written_with_its_subgraphs(pack):
    seen = _register_document_probe(pack)
    document = plus_document()
    document["nodes"]["probe"] = {"type": "t.probe", "inputs": {"value": link("12", "sum")}}
    assert pack.executor().run(workflow_from_dict(document)).ok
    (embedded,) = seen
    assert embedded["subgraphs"]["plus"]["title"] == "Plus"
    assert "12" in embedded["nodes"] and "12:3" not in embedded["nodes"]


def test_a_document_whose_subgraphs_come_from_files_is_embedded_flattened(pack, tmp_path):
    seen = _register_document_probe(pack)
    (tmp_path / "lib.json").write_text(json.dumps(doc({}, {"plus": PLUS})))
    document = plus_document()
    del document["subgraphs"]
    document["nodes"]["12"]["file"] = "lib.json"
    document["nodes"]["probe"] = {"type": "t.probe", "inputs": {"value": link("12", "sum")}}
    (tmp_path / "main.json").write_text(json.dumps(document))
    assert pack.executor().run(load_workflow(tmp_path / "main.json")).ok
    (embedded,) = seen
    assert "12:3" in embedded["nodes"] and "subgraphs" not in embedded
