"""Workflow documents: round trips, schema, migrations, readable format errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import jsonschema
import pngfuzz
import pytest

from graphflow import WorkflowFormatError, dumps_workflow, load_workflow, loads_workflow
from graphflow.pngmeta import PNG_SIGNATURE, WORKFLOW_KEY
from graphflow.workflow import (
    Link,
    migrate,
    save_workflow,
    workflow_from_dict,
    workflow_json_schema,
)

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


# -- malformed documents: each a WorkflowFormatError, never another exception -----------------


@pytest.mark.parametrize("fmt", [[], ["graphflow/1"], {}, {"v": 1}, 1, 1.5, None, True])
def test_format_that_is_not_a_string_is_a_format_error(fmt):
    with pytest.raises(WorkflowFormatError, match='"format" must be a string'):
        loads_workflow(json.dumps({"format": fmt, "nodes": {}}))


def test_migrate_refuses_a_format_that_is_not_a_string():
    with pytest.raises(WorkflowFormatError, match="got list"):
        migrate({"format": ["graphflow/0"], "nodes": {}})


def test_a_huge_format_value_is_cut_short_in_the_message():
    with pytest.raises(WorkflowFormatError) as caught:
        loads_workflow(json.dumps({"format": "x" * 100_000, "nodes": {}}))
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    "doc",
    [
        {"nodes": [{"type": "core.int"}]},  # no id
        {"nodes": [{"id": 1}]},  # no type
        {"nodes": [7]},
        {"nodes": {"1": {"type": "core.int"}}},  # graphflow/1 nodes under format 0
        {"nodes": [{"id": 1, "type": "core.int", "values": [1]}]},
        {"nodes": [{"id": [1], "type": "core.int"}]},
        {"nodes": [], "links": [[1, "int"]]},
        {"nodes": [], "links": 3},
        {"nodes": [], "links": [[1, ["int"], 2, "value"]]},
    ],
)
def test_malformed_prototype_document_is_a_format_error(doc):
    with pytest.raises(WorkflowFormatError, match="not a valid graphflow/0 document"):
        loads_workflow(json.dumps({"format": "graphflow/0", **doc}))


def test_bytes_that_are_not_utf8_are_a_format_error():
    with pytest.raises(WorkflowFormatError, match=r"not UTF-8 text \(bad byte at 0\)"):
        loads_workflow(b'\xff{"format": "graphflow/1", "nodes": {}}')


def test_utf16_bytes_are_still_read():
    text = json.dumps({"format": "graphflow/1", "nodes": {"a": {"type": "core.int"}}})
    assert list(loads_workflow(text.encode("utf-16")).nodes) == ["a"]


def test_json_nested_too_deeply_is_a_format_error():
    with pytest.raises(WorkflowFormatError, match="nested too deeply"):
        loads_workflow("[" * 100_000 + "]" * 100_000)


def test_document_nested_too_deeply_for_migration_is_a_format_error():
    value: object = 1
    for _ in range(5_000):
        value = [value]
    doc = {
        "format": "graphflow/0",
        "nodes": [{"id": 1, "type": "core.show", "values": {"v": value}}],
    }
    with pytest.raises(WorkflowFormatError, match="nested too deeply"):
        workflow_from_dict(doc)


def test_integer_with_too_many_digits_is_a_format_error():
    with pytest.raises(WorkflowFormatError, match="invalid JSON: Exceeds the limit"):
        loads_workflow(
            '{"format": "graphflow/1", "nodes": {}, "editor": {"n": ' + "9" * 5000 + "}}"
        )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (r'{"format": "graphflow/1", "nodes": {"a": {"type": "core.show", '
         r'"inputs": {"label": "x\ud800"}}}}', "nodes.a.inputs.label"),
        (r'{"format": "graphflow/1", "nodes": {}, "editor": {"\udc00": 1}}', "a key of editor"),
    ],
)  # fmt: skip
def test_lone_surrogate_is_a_format_error_that_says_where(text, where):
    # a workflow is UTF-8 text: a lone surrogate could never be saved
    with pytest.raises(WorkflowFormatError, match=f"text at {where} is not valid Unicode"):
        loads_workflow(text)


def test_lone_surrogate_in_parsed_data_is_a_format_error():
    doc = {"format": "graphflow/1", "nodes": {"\ud800": {"type": "core.int"}}}
    with pytest.raises(WorkflowFormatError, match="not valid Unicode"):
        workflow_from_dict(doc)


def test_escaped_surrogate_pair_is_an_ordinary_character():
    node = r'{"type": "core.string", "title": "\ud83d\udca5"}'
    text = '{"format": "graphflow/1", "nodes": {"a": ' + node + "}}"
    assert loads_workflow(text).nodes["a"].title == "\U0001f4a5"


def test_set_input_refuses_text_that_is_not_unicode():
    workflow = loads_workflow('{"format": "graphflow/1", "nodes": {"a": {"type": "core.show"}}}')
    with pytest.raises(WorkflowFormatError, match=r"a\.label is not valid Unicode"):
        workflow.set_input("a", "label", ["ok", "\udcff"])


# -- workflows in PNG files: a damaged chunk is a format error, never another workflow ---------

PNG_WORKFLOW = '{"format": "graphflow/1", "nodes": {"a": {"type": "core.int"}}}'


def _text_chunk_body(png: bytes) -> tuple[int, int]:
    start = len(PNG_SIGNATURE) + 25  # after the signature and IHDR
    (length,) = struct.unpack(">I", png[start : start + 4])
    return start, start + 12 + length


@pytest.mark.parametrize("kind", [b"tEXt", b"zTXt", b"iTXt"])
def test_png_workflow_is_read_from_each_text_chunk_kind(tmp_path, kind):
    path = tmp_path / "w.png"
    path.write_bytes(pngfuzz.png_with_text(kind, WORKFLOW_KEY, PNG_WORKFLOW))
    assert list(load_workflow(path).nodes) == ["a"]


def test_png_text_chunk_with_a_bad_checksum_is_a_format_error(tmp_path):
    png = bytearray(pngfuzz.png_with_text(b"tEXt", WORKFLOW_KEY, PNG_WORKFLOW))
    png[png.find(b"graphflow/1") + 10] = ord("2")  # one changed byte: the CRC catches it
    (tmp_path / "w.png").write_bytes(png)
    with pytest.raises(WorkflowFormatError, match="checksum does not match"):
        load_workflow(tmp_path / "w.png")


@pytest.mark.parametrize("kind", [b"zTXt", b"iTXt"])
def test_png_compressed_text_cut_short_is_a_format_error(tmp_path, kind):
    png = pngfuzz.png_with_text(kind, WORKFLOW_KEY, PNG_WORKFLOW)
    start, end = _text_chunk_body(png)
    body = png[start + 8 : end - 4]
    cut = png[:start] + pngfuzz.png_chunk(kind, body[:-6]) + png[end:]  # CRC made to match
    (tmp_path / "w.png").write_bytes(cut)
    with pytest.raises(WorkflowFormatError, match="compressed text ends early"):
        load_workflow(tmp_path / "w.png")


def test_png_itxt_header_cut_short_is_a_format_error(tmp_path):
    png = pngfuzz.png_with_text(b"iTXt", WORKFLOW_KEY, PNG_WORKFLOW)
    start, end = _text_chunk_body(png)
    short = pngfuzz.png_chunk(b"iTXt", WORKFLOW_KEY.encode() + b"\0\1")
    (tmp_path / "w.png").write_bytes(png[:start] + short + png[end:])
    with pytest.raises(WorkflowFormatError, match="header is cut short"):
        load_workflow(tmp_path / "w.png")
