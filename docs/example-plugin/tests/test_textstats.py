"""The example plugin loads from a plugin folder and its nodes run in a workflow."""

from pathlib import Path

from graphflow import Executor, load_plugins, loads_workflow

PLUGIN_FOLDER = Path(__file__).resolve().parents[1] / "src"

WORKFLOW = """
{
  "format": "graphflow/1",
  "nodes": {
    "text": {"type": "core.string", "inputs": {"value": "the cat and the hat and the bat"}},
    "count": {"type": "textstats.count_words", "inputs": {"text": {"link": ["text", "string"]}}},
    "top": {"type": "textstats.top_words",
            "inputs": {"counts": {"link": ["count", "word_counts"]}, "n": 2}},
    "show": {"type": "textstats.report", "inputs": {"summary": {"link": ["top", "string"]}}}
  }
}
"""


def test_plugin_registers_its_type_and_nodes():
    loaded = load_plugins([PLUGIN_FOLDER])
    assert loaded.problems == []
    info = next(p for p in loaded.plugins if p.name == "graphflow_textstats")
    assert info.types == ["WORD_COUNTS"]
    assert info.nodes == ["textstats.count_words", "textstats.top_words", "textstats.report"]


def test_top_words_workflow_runs():
    registry = load_plugins([PLUGIN_FOLDER]).registry
    result = Executor(registry).run(loads_workflow(WORKFLOW))
    assert result.ok
    assert result.ui["show"] == {"text": ["Top words:\nthe ×3\nand ×2"]}


def test_blank_title_is_rejected_by_the_node_check():
    from graphflow import validate

    registry = load_plugins([PLUGIN_FOLDER]).registry
    workflow = loads_workflow(WORKFLOW)
    workflow.set_input("show", "title", "  ")
    _, errors = validate(workflow, registry)
    assert [(e.code.value, e.input) for e in errors] == [("invalid_input", "title")]
