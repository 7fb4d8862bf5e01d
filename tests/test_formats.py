"""graphflow.formats: importers and exporters registered by plugins, one reader for all."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from graphflow import Executor, Int, NodeContext, Registry, hookimpl, load_plugins, node
from graphflow.errors import ValidationFailed, WorkflowFormatError
from graphflow.formats import (
    WorkflowExporter,
    WorkflowImporter,
    export_workflow,
    png_chunks_for,
    read_workflow,
    read_workflow_file,
)
from graphflow.pngmeta import WORKFLOW_KEY
from graphflow.workflow import workflow_from_dict


@node("toy.number", category="testing")
def number(value: Int = 1) -> Int:
    """A number."""
    return value


@node("toy.chunks", category="testing", output=True)
def chunks(value: Int = 0, ctx: NodeContext = None) -> None:
    """Show the PNG chunks the exporters would add to a saved image."""
    return {"chunks": [ctx.workflow_png_chunks()]}


def toy_to_graphflow(doc, registry, *, png_texts=None):
    """A toy format: ``{"toy": {id: value}}`` → one toy.number per entry."""
    if not all(isinstance(v, int) for v in doc["toy"].values()):
        raise ValidationFailed([])
    nodes = {k: {"type": "toy.number", "inputs": {"value": v}} for k, v in doc["toy"].items()}
    return {"format": "graphflow/1", "nodes": nodes, "editor": {"png": dict(png_texts or {})}}


TOY_IN = WorkflowImporter(
    name="toy",
    label="Toy format",
    detect=lambda doc: isinstance(doc, dict) and isinstance(doc.get("toy"), dict),
    to_graphflow=toy_to_graphflow,
    png_keys=("toy",),
    count_nodes=lambda doc: len(doc["toy"]) + 1,
)


def toy_from_graphflow(doc, registry):
    return {"toy": {k: e["inputs"].get("value", 0) for k, e in doc["nodes"].items()}}


def broken_from_graphflow(doc, registry):
    raise AttributeError("a plugin bug")


TOY_OUT = WorkflowExporter("toy", "Toy format", toy_from_graphflow, png_key="toy")
BROKEN_OUT = WorkflowExporter("broken", "Broken format", broken_from_graphflow, png_key="broken")


@pytest.fixture
def registry():
    registry = Registry()
    registry.register_all([number, chunks], plugin="tests")
    registry.add_importer(TOY_IN, plugin="tests")
    registry.add_exporter(TOY_OUT, plugin="tests")
    return registry


def png_with(texts: dict[str, str]) -> bytes:
    info = PngInfo()
    for key, text in texts.items():
        info.add_text(key, text)
    out = io.BytesIO()
    PILImage.new("RGB", (2, 2)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


GRAPHFLOW_DOC = {"format": "graphflow/1", "nodes": {"n": {"type": "toy.number", "inputs": {}}}}


def test_an_importer_reads_a_document_given_as_data_text_or_bytes(registry):
    doc = {"toy": {"a": 1, "b": 2}}
    for source in (doc, json.dumps(doc), json.dumps(doc).encode()):
        workflow, label = read_workflow(source, registry)
        assert workflow.nodes["b"].inputs == {"value": 2}
        assert label == "Toy format (3 nodes → 2)"


def test_graphflow_documents_are_read_as_before(registry):
    workflow, label = read_workflow(GRAPHFLOW_DOC, registry)
    assert label == "graphflow/1" and list(workflow.nodes) == ["n"]


def test_a_document_no_importer_knows_names_the_known_formats(registry):
    with pytest.raises(WorkflowFormatError, match=r"none of the formats .*graphflow/1, Toy"):
        read_workflow({"nodes": {}}, registry)


def test_without_a_registry_the_no_format_error_points_at_importers():
    with pytest.raises(WorkflowFormatError, match=r'no "format" field .*importer plugins'):
        workflow_from_dict({"toy": {"a": 1}})


def test_workflow_from_dict_with_a_registry_tries_the_importers(registry):
    assert workflow_from_dict({"toy": {"a": 5}}, registry).nodes["a"].inputs == {"value": 5}


def test_importer_problems_come_out_as_validation_failures(registry):
    with pytest.raises(ValidationFailed):
        read_workflow({"toy": {"a": "x"}}, registry)


def test_png_graphflow_chunk_wins_over_an_importer_chunk(registry):
    data = png_with({WORKFLOW_KEY: json.dumps(GRAPHFLOW_DOC), "toy": '{"toy": {"z": 1}}'})
    workflow, label = read_workflow(data, registry)
    assert list(workflow.nodes) == ["n"]
    assert label == "graphflow/1 (from the PNG's graphflow_workflow chunk)"


def test_png_importer_chunk_is_read_with_all_chunks_passed_on(registry):
    data = png_with({"toy": '{"toy": {"z": 1}}', "note": "hello"})
    workflow, label = read_workflow(data, registry)
    assert list(workflow.nodes) == ["z"]
    assert label == "Toy format (from the PNG's 'toy' chunk) (2 nodes → 1)"
    assert workflow.editor["png"]["note"] == "hello"


def test_png_with_no_readable_chunk_lists_its_chunks(registry, tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(png_with({"toy": "not json", "Software": "x"}))
    with pytest.raises(WorkflowFormatError) as caught:
        read_workflow_file(path, registry)
    assert str(caught.value) == (
        f"{path}: this PNG holds no graphflow workflow, nor one graphflow can import "
        "(text chunks: 'toy', 'Software')"
    )


def test_export_to_graphflow_an_exporter_or_an_unknown_name(registry):
    workflow = workflow_from_dict({"toy": {"a": 3}}, registry)
    assert json.loads(export_workflow(workflow, "toy", registry)) == {"toy": {"a": 3}}
    assert json.loads(export_workflow(workflow, "graphflow", registry))["format"] == "graphflow/1"
    with pytest.raises(WorkflowFormatError, match="known: graphflow, toy"):
        export_workflow(workflow, "nope", registry)


def test_png_chunks_skip_an_exporter_that_cannot_express_the_workflow(registry):
    registry.add_exporter(BROKEN_OUT, plugin="tests")
    assert png_chunks_for(GRAPHFLOW_DOC, registry) == {"toy": '{"toy": {"n": 0}}'}


def test_running_nodes_get_the_exporters_png_chunks(registry):
    workflow = workflow_from_dict(
        {"format": "graphflow/1", "nodes": {"c": {"type": "toy.chunks", "inputs": {"value": 4}}}}
    )
    result = Executor(registry).run(workflow)
    assert result.ui["c"]["chunks"] == [{"toy": '{"toy": {"c": 4}}'}]


class ToyFormats:
    """A plugin object implementing the two format hooks."""

    @hookimpl
    def graphflow_workflow_importers(self):
        return [TOY_IN]

    @hookimpl
    def graphflow_workflow_exporters(self):
        return [TOY_OUT]


def test_plugins_register_importers_and_exporters_through_hooks():
    loaded = load_plugins(use_entry_points=False, modules=[("toyfmt", ToyFormats())])
    assert loaded.problems == []
    assert loaded.registry.importers == [TOY_IN] and loaded.registry.exporters == [TOY_OUT]


def test_a_second_importer_of_the_same_name_is_a_plugin_problem():
    loaded = load_plugins(
        use_entry_points=False, modules=[("one", ToyFormats()), ("two", ToyFormats())]
    )
    assert loaded.registry.importers == [TOY_IN]
    assert [p.stage for p in loaded.problems] == [
        "register workflow importers",
        "register workflow exporters",
    ]
