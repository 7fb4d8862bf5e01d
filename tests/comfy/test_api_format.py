"""ComfyUI API prompts ⇄ graphflow/1: ids kept, links by output index, ComfyUI's coercion."""

from __future__ import annotations

import json

import pytest

from gf_comfy.api_format import api_to_graphflow, graphflow_to_api, is_api_prompt
from graphflow import Int, Outputs, node
from graphflow.errors import ValidationFailed
from graphflow.workflow import workflow_from_dict
from tests.comfy.formats_support import format_classes


@node("test.double", category="testing")
def double(value: Int = 1) -> Outputs(doubled=Int):
    """Twice the value (a graphflow-native node used as a class type)."""
    return value * 2


@pytest.fixture
def registry():
    with format_classes() as registry:
        registry.register(double, plugin="tests")
        yield registry


def prompt():
    return {
        "load.1": {"class_type": "TLoad", "inputs": {"image": "a.png", "upload": "image"}},
        "55:52": {
            "class_type": "TSampler",
            "inputs": {
                "image": ["load.1", 0],
                "seed": 2**64 - 1,
                "steps": 8.7,
                "cfg": 8,
                "sampler_name": "heun",
                "denoise": "0.5",
            },
            "_meta": {"title": "KSampler (main)"},
        },
        "9": {"class_type": "TSave", "inputs": {"images": ["55:52", 0], "filename_prefix": 7}},
    }


def test_prompt_maps_one_to_one_with_ids_kept_and_links_named(registry):
    doc = api_to_graphflow(prompt(), registry)
    assert list(doc["nodes"]) == ["load.1", "55:52", "9"]
    assert doc["nodes"]["55:52"] == {
        "type": "comfy.t_sampler",
        "inputs": {
            "image": {"link": ["load.1", "image"]},
            "seed": 2**64 - 1,
            "steps": 8,
            "cfg": 8.0,
            "sampler_name": "heun",
            "denoise": 0.5,
        },
        "title": "KSampler (main)",
    }
    assert doc["nodes"]["9"]["inputs"] == {
        "images": {"link": ["55:52", "image"]},
        "filename_prefix": "7",
    }
    workflow = workflow_from_dict(doc)  # a valid graphflow/1 document
    assert workflow.nodes["55:52"].inputs["seed"] == 2**64 - 1


def test_coercion_types_are_comfyuis(registry):
    inputs = api_to_graphflow(prompt(), registry)["nodes"]["55:52"]["inputs"]
    assert type(inputs["steps"]) is int and type(inputs["cfg"]) is float
    assert type(inputs["seed"]) is int


def test_inputs_the_class_type_lacks_are_dropped(registry):
    assert api_to_graphflow(prompt(), registry)["nodes"]["load.1"]["inputs"] == {"image": "a.png"}


def test_values_that_do_not_convert_are_left_for_validation(registry):
    data = prompt()
    data["55:52"]["inputs"]["steps"] = "many"
    doc = api_to_graphflow(data, registry)
    assert doc["nodes"]["55:52"]["inputs"]["steps"] == "many"


def test_wrapped_list_values_are_unwrapped(registry):
    data = {"1": {"class_type": "TText", "inputs": {"text": {"__value__": ["a", "b"]}}}}
    assert api_to_graphflow(data, registry)["nodes"]["1"]["inputs"]["text"] == ["a", "b"]


def test_a_graphflow_node_id_works_as_a_class_type(registry):
    data = {
        "a": {"class_type": "test.double", "inputs": {"value": "4"}},
        "b": {"class_type": "TNumber", "inputs": {"value": ["a", 0]}},
    }
    doc = api_to_graphflow(data, registry)
    assert doc["nodes"]["a"] == {"type": "test.double", "inputs": {"value": 4}}
    assert doc["nodes"]["b"]["inputs"] == {"value": {"link": ["a", "doubled"]}}


def test_every_missing_class_type_is_listed_once_with_its_node_ids(registry):
    data = prompt()
    data["5"] = {"class_type": "FaceDetailer", "inputs": {"image": ["55:52", 0]}}
    data["7"] = {"class_type": "FaceDetailer", "inputs": {}}
    data["8"] = {"class_type": "UltimateSDUpscale", "inputs": {}}
    with pytest.raises(ValidationFailed) as caught:
        api_to_graphflow(data, registry)
    (error,) = caught.value.errors
    assert error.code == "unknown_node_type"
    assert "2 ComfyUI class types graphflow does not have" in error.message
    assert "FaceDetailer (nodes 5, 7); UltimateSDUpscale (node 8)" in error.message


def test_other_problems_are_all_listed(registry):
    data = prompt()
    data["9"]["inputs"]["images"] = ["404", 0]
    data["55:52"]["inputs"]["image"] = ["load.1", 5]
    data["x"] = {"inputs": {}}
    data["y"] = "not a node"
    with pytest.raises(ValidationFailed) as caught:
        api_to_graphflow(data, registry)
    found = sorted((e.code.value, e.node) for e in caught.value.errors)
    assert found == [
        ("invalid_document", "y"),
        ("link_missing_node", "9"),
        ("link_missing_output", "55:52"),
        ("unknown_node_type", "x"),
    ]


def test_a_refused_link_does_not_hide_the_other_problems(registry):
    data = prompt()
    data["9"]["inputs"]["images"] = ["404", 0]
    data["55:52"]["inputs"]["sampler_name"] = "eulerr"
    with pytest.raises(ValidationFailed) as caught:
        api_to_graphflow(data, registry)
    found = sorted((e.code.value, e.node, e.input) for e in caught.value.errors)
    assert found == [
        ("link_missing_node", "9", "images"),  # not restated as a missing input
        ("not_in_choices", "55:52", "sampler_name"),
    ]
    data["55:52"]["inputs"] = "not an object"  # its inputs' absence is not restated
    with pytest.raises(ValidationFailed) as caught:
        api_to_graphflow(data, registry)
    found = sorted((e.code.value, e.node, e.input) for e in caught.value.errors)
    assert found == [
        ("invalid_document", "55:52", None),
        ("link_missing_node", "9", "images"),
    ]


def test_a_misspelt_class_type_gets_the_closest_known_one(registry):
    data = prompt()
    data["55:52"]["class_type"] = "TSamplr"
    data["9"]["class_type"] = "Nothing Like It"
    with pytest.raises(ValidationFailed) as caught:
        api_to_graphflow(data, registry)
    (error,) = caught.value.errors
    assert "TSamplr (node 55:52; did you mean TSampler?)" in error.message
    assert "Nothing Like It (node 9)" in error.message


def test_detection(registry):
    assert is_api_prompt(prompt())
    assert is_api_prompt({"prompt": prompt(), "client_id": "abc"})  # a saved POST body
    assert not is_api_prompt({"format": "graphflow/1", "nodes": {}})
    assert not is_api_prompt({"nodes": [], "links": []})
    assert not is_api_prompt({})


def test_png_chunks_become_extra_pnginfo(registry):
    texts = {"prompt": json.dumps(prompt()), "workflow": '{"nodes": []}', "parameters": "x y"}
    comfy = api_to_graphflow(prompt(), registry, png_texts=texts)["editor"]["comfy"]
    assert comfy["prompt"] == prompt()
    assert comfy["workflow"] == {"nodes": []}
    assert comfy["extra_pnginfo"] == {"workflow": {"nodes": []}}


def test_export_gives_class_types_and_output_indices_back(registry):
    doc = api_to_graphflow(prompt(), registry)
    exported = graphflow_to_api(doc, registry)
    assert exported["55:52"] == {
        "inputs": {
            "image": ["load.1", 0],
            "seed": 2**64 - 1,
            "steps": 8,
            "cfg": 8.0,
            "sampler_name": "heun",
            "denoise": 0.5,
        },
        "class_type": "TSampler",
        "_meta": {"title": "KSampler (main)"},
    }
    assert exported["load.1"]["_meta"] == {"title": "Test Load"}
    again = api_to_graphflow(exported, registry)
    assert again["nodes"] == doc["nodes"]


def test_export_of_graphflow_native_nodes_uses_their_ids_and_wraps_lists(registry):
    doc = {
        "format": "graphflow/1",
        "nodes": {
            "a": {"type": "test.double", "inputs": {"value": 3}},
            "t": {"type": "comfy.t_text", "inputs": {"text": ["x", "y"]}},
        },
    }
    exported = graphflow_to_api(doc, registry)
    assert exported["a"] == {
        "inputs": {"value": 3},
        "class_type": "test.double",
        "_meta": {"title": "Double"},
    }
    assert exported["t"]["inputs"] == {"text": {"__value__": ["x", "y"]}}
