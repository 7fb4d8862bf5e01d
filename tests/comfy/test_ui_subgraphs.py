"""ComfyUI UI-format subgraphs (``definitions.subgraphs``, COMFY_COMPAT.md §4.2/§4.3 step 1):
a hand-written frontend-1.27-style document with a subgraph instance imports with
``"55:52"`` ids and runs."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from PIL import Image as PILImage

from gf_comfy.ui_format import ui_to_api
from gf_comfy.ui_subgraphs import Flattener
from graphflow.cli import main
from graphflow.errors import ErrorCode, ValidationFailed
from graphflow.formats import read_workflow
from graphflow.graph import validate

INVERT_SCALE = "0f6c2a4e-8d1b-4c3a-9e5f-7a2b1c0d9e8f"
TWICE = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
GREEN = 0x00FF00


def link(link_id, origin, origin_slot, target, target_slot, type_name):
    """A link object as subgraph definitions (schema 1) write them."""
    return {
        "id": link_id,
        "origin_id": origin,
        "origin_slot": origin_slot,
        "target_id": target,
        "target_slot": target_slot,
        "type": type_name,
    }


def invert_and_scale() -> dict:
    """Subgraph: image → ImageInvert (52) → ImageScaleBy (53, scale_by from input 'scale')."""
    return {
        "id": INVERT_SCALE,
        "version": 1,
        "state": {"lastGroupId": 0, "lastNodeId": 53, "lastLinkId": 13, "lastRerouteId": 0},
        "revision": 0,
        "config": {},
        "name": "Invert and scale",
        "inputNode": {"id": -10, "bounding": [0, 0, 120, 80]},
        "outputNode": {"id": -20, "bounding": [600, 0, 120, 60]},
        "inputs": [
            {"id": "in-image", "name": "image", "type": "IMAGE", "linkIds": [10]},
            {"id": "in-scale", "name": "scale", "type": "FLOAT", "linkIds": [12]},
        ],
        "outputs": [{"id": "out-image", "name": "IMAGE", "type": "IMAGE", "linkIds": [13]}],
        "widgets": [],
        "nodes": [
            {
                "id": 52,
                "type": "ImageInvert",
                "pos": [200, 0],
                "size": [140, 30],
                "flags": {},
                "order": 0,
                "mode": 0,
                "inputs": [{"name": "image", "type": "IMAGE", "link": 10}],
                "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [11], "slot_index": 0}],
                "properties": {"Node name for S&R": "ImageInvert"},
                "widgets_values": [],
            },
            {
                "id": 53,
                "type": "ImageScaleBy",
                "pos": [400, 0],
                "size": [200, 80],
                "flags": {},
                "order": 1,
                "mode": 0,
                "inputs": [
                    {"name": "image", "type": "IMAGE", "link": 11},
                    {
                        "name": "scale_by",
                        "type": "FLOAT",
                        "widget": {"name": "scale_by"},
                        "link": 12,
                    },
                ],
                "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [13], "slot_index": 0}],
                "properties": {"Node name for S&R": "ImageScaleBy"},
                "widgets_values": ["nearest-exact", 1.0],
            },
        ],
        "groups": [],
        "links": [
            link(10, -10, 0, 52, 0, "IMAGE"),
            link(11, 52, 0, 53, 0, "IMAGE"),
            link(12, -10, 1, 53, 1, "FLOAT"),
            link(13, 53, 0, -20, 0, "IMAGE"),
        ],
        "extra": {},
    }


def instance(node_id, type_name, image_link, output_links, scale=2.0, mode=0) -> dict:
    """A subgraph instance node: the subgraph's uuid as type, 'scale' a promoted widget."""
    return {
        "id": node_id,
        "type": type_name,
        "pos": [300, 0],
        "size": [220, 80],
        "flags": {},
        "order": 1,
        "mode": mode,
        "inputs": [
            {"name": "image", "type": "IMAGE", "link": image_link},
            {"name": "scale", "type": "FLOAT", "widget": {"name": "scale"}, "link": None},
        ],
        "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": output_links, "slot_index": 0}],
        "properties": {},
        "widgets_values": [scale],
    }


def document(middle: dict, definitions: list[dict]) -> dict:
    """EmptyImage (1, 8×4 green) → ``middle`` (id 55 or 60) → SaveImage (9)."""
    middle_id = middle["id"]
    return {
        "id": "6d0f8c3e-2b7a-4f1e-9c5d-3a8b7e6f1d2c",
        "revision": 0,
        "last_node_id": 60,
        "last_link_id": 2,
        "nodes": [
            {
                "id": 1,
                "type": "EmptyImage",
                "pos": [0, 0],
                "size": [240, 130],
                "flags": {},
                "order": 0,
                "mode": 0,
                "inputs": [],
                "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1], "slot_index": 0}],
                "properties": {"Node name for S&R": "EmptyImage"},
                "widgets_values": [8, 4, 1, GREEN],
            },
            middle,
            {
                "id": 9,
                "type": "SaveImage",
                "pos": [700, 0],
                "size": [270, 270],
                "flags": {},
                "order": 2,
                "mode": 0,
                "inputs": [{"name": "images", "type": "IMAGE", "link": 2}],
                "outputs": [],
                "properties": {"Node name for S&R": "SaveImage"},
                "widgets_values": ["subgraph"],
            },
        ],
        "links": [[1, 1, 0, middle_id, 0, "IMAGE"], [2, middle_id, 0, 9, 0, "IMAGE"]],
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}, "frontendVersion": "1.27.10"},
        "definitions": {"subgraphs": definitions},
        "version": 0.4,
    }


def twice() -> dict:
    """Subgraph holding an Invert-and-scale instance (70) with scale 3."""
    outer = copy.deepcopy(invert_and_scale())
    outer.update(id=TWICE, name="Wrapped")
    outer["inputs"] = [outer["inputs"][0]]
    outer["inputs"][0]["linkIds"] = [20]
    outer["nodes"] = [instance(70, INVERT_SCALE, 20, [21], scale=3.0)]
    outer["links"] = [link(20, -10, 0, 70, 0, "IMAGE"), link(21, 70, 0, -20, 0, "IMAGE")]
    return outer


def test_an_instance_expands_into_its_inner_nodes_with_comfy_ids(registry):
    doc = document(instance(55, INVERT_SCALE, 1, [2]), [invert_and_scale()])
    prompt = ui_to_api(doc, registry)
    assert list(prompt) == ["1", "55:52", "55:53", "9"]  # inner nodes where the instance was
    assert prompt["55:52"]["inputs"] == {"image": ["1", 0]}
    assert prompt["55:53"]["inputs"] == {
        "upscale_method": "nearest-exact",
        "scale_by": 2.0,  # the instance's promoted widget, not the inner 1.0
        "image": ["55:52", 0],
    }
    assert prompt["9"]["inputs"]["images"] == ["55:53", 0]


def test_the_imported_workflow_validates_and_runs(tmp_path, capsys):
    path = tmp_path / "subgraph_ui.json"
    path.write_text(json.dumps(document(instance(55, INVERT_SCALE, 1, [2]), [invert_and_scale()])))
    code = main(["run", str(path), "--output", str(tmp_path / "out"), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert err.startswith("read as ComfyUI UI format (3 nodes → 4)")
    (png,) = sorted((tmp_path / "out").rglob("*.png"))
    with PILImage.open(png) as image:
        assert image.size == (16, 8)  # 8×4 scaled by 2
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels == [255, 0, 255]).all()  # green inverted


def test_nested_instances_get_nested_ids(registry):
    doc = document(instance(60, TWICE, 1, [2]), [invert_and_scale(), twice()])
    doc["nodes"][1]["inputs"].pop()  # the Wrapped subgraph has no scale input
    doc["nodes"][1]["widgets_values"] = []
    workflow, label = read_workflow(doc, registry)
    assert label == "ComfyUI UI format (3 nodes → 4)"
    assert set(workflow.nodes) == {"1", "60:70:52", "60:70:53", "9"}
    assert workflow.nodes["60:70:53"].inputs["scale_by"] == 3.0
    assert workflow.nodes["9"].inputs["images"].link == ("60:70:53", "image")
    assert validate(workflow, registry)[1] == []


def test_subgraphs_that_contain_each_other_are_a_cycle_error_not_a_hang(registry):
    looping = invert_and_scale()
    looping["nodes"] = [instance(52, INVERT_SCALE, 10, [11]), instance(53, INVERT_SCALE, 11, [13])]
    doc = document(instance(55, INVERT_SCALE, 1, [2]), [looping])
    with pytest.raises(ValidationFailed) as caught:
        ui_to_api(doc, registry)
    errors = caught.value.errors
    assert {e.code for e in errors} == {ErrorCode.CYCLE}
    assert {e.node for e in errors} == {"55:52", "55:53"}
    assert "Invert and scale → Invert and scale" in errors[0].message
    flattener = Flattener(doc, [])
    flattener.run(doc)
    assert flattener.count == 5  # two instances per level once meant 2^32 nodes


def test_an_instance_of_a_missing_definition_is_a_clear_error(registry):
    doc = document(instance(55, INVERT_SCALE, 1, [2]), [])
    with pytest.raises(ValidationFailed) as caught:
        ui_to_api(doc, registry)
    (error,) = caught.value.errors
    assert error.code is ErrorCode.UNKNOWN_NODE_TYPE and error.node == "55"
    assert "definitions.subgraphs has no such subgraph" in error.message


def test_a_bypassed_instance_passes_its_image_through(registry):
    doc = document(instance(55, INVERT_SCALE, 1, [2], mode=4), [invert_and_scale()])
    prompt = ui_to_api(doc, registry)
    assert list(prompt) == ["1", "9"]
    assert prompt["9"]["inputs"]["images"] == ["1", 0]
