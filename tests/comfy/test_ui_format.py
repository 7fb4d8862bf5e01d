"""UI format → API prompt (COMFY_COMPAT §4.3): one small hand-written workflow per rule."""

from __future__ import annotations

import contextlib
import json
import random

import pytest

from gf_comfy.ui_export import graphflow_to_ui
from gf_comfy.ui_format import is_ui_workflow, ui_to_api, ui_to_graphflow
from gf_comfy.workflow_formats import IMPORTERS
from graphflow.errors import GraphflowError, ValidationFailed
from graphflow.formats import read_workflow
from tests.comfy.formats_support import format_classes, ui_node, ui_workflow


@pytest.fixture
def registry():
    with format_classes() as registry:
        yield registry


class FixedRandom:
    """random.Random stand-in: always the same draw (index = ⌊r · n⌋)."""

    def __init__(self, value: float):
        self.value = value

    def random(self) -> float:
        return self.value


def load(node_id=1, widgets=("b.png", "image"), links=(1,)):
    return ui_node(
        node_id,
        "TLoad",
        list(widgets),
        outputs=[("IMAGE", "IMAGE", list(links)), ("MASK", "MASK", [])],
    )


def sampler(node_id=2, widgets=(123, "randomize", 30, 7.5, "heun", 0.8), image_link=1, **kw):
    inputs = [("image", "IMAGE", image_link), *kw.pop("inputs", ())]
    return ui_node(
        node_id,
        "TSampler",
        list(widgets) if widgets is not None else None,
        inputs=inputs,
        outputs=[("IMAGE", "IMAGE", [2])],
        **kw,
    )


def save(node_id=3, link=2):
    return ui_node(node_id, "TSave", ["out"], inputs=[("images", "IMAGE", link)])


CHAIN_LINKS = [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]]
SAMPLER_INPUTS = {"seed": 123, "steps": 30, "cfg": 7.5, "sampler_name": "heun", "denoise": 0.8}


def expected_chain(sampler_inputs=SAMPLER_INPUTS, load_inputs=None):
    return {
        "1": {
            "inputs": load_inputs or {"image": "b.png"},
            "class_type": "TLoad",
            "_meta": {"title": "Test Load"},
        },
        "2": {
            "inputs": {**sampler_inputs, "image": ["1", 0]},
            "class_type": "TSampler",
            "_meta": {"title": "Test Sampler"},
        },
        "3": {
            "inputs": {"filename_prefix": "out", "images": ["2", 0]},
            "class_type": "TSave",
            "_meta": {"title": "Test Save"},
        },
    }


def test_widgets_values_skip_the_hidden_control_and_upload_slots(registry):
    workflow = ui_workflow([load(), sampler(), save()], CHAIN_LINKS)
    assert is_ui_workflow(workflow)
    assert ui_to_api(workflow, registry) == expected_chain()


def test_old_files_true_in_the_control_slot_is_randomize_and_consumed(registry):
    workflow = ui_workflow(
        [load(), sampler(widgets=(123, True, 30, 7.5, "heun", 0.8)), save()], CHAIN_LINKS
    )
    assert ui_to_api(workflow, registry) == expected_chain()


def test_old_files_without_a_control_slot_keep_their_next_value(registry):
    workflow = ui_workflow(
        [load(), sampler(widgets=(123, 30, 7.5, "heun", 0.8)), save()], CHAIN_LINKS
    )
    assert ui_to_api(workflow, registry) == expected_chain()


def test_short_widgets_values_fall_back_to_defaults(registry):
    workflow = ui_workflow([load(), sampler(widgets=(123, "fixed", 30)), save()], CHAIN_LINKS)
    defaults = {"seed": 123, "steps": 30, "cfg": 8.0, "sampler_name": "euler", "denoise": 1.0}
    assert ui_to_api(workflow, registry) == expected_chain(defaults)


def test_missing_widgets_values_take_defaults_and_first_choice(registry):
    workflow = ui_workflow([load(widgets=()), sampler(widgets=None), save()], CHAIN_LINKS)
    workflow["nodes"][0].pop("widgets_values")
    defaults = {"seed": 0, "steps": 20, "cfg": 8.0, "sampler_name": "euler", "denoise": 1.0}
    assert ui_to_api(workflow, registry) == expected_chain(defaults, {"image": "a.png"})


def test_control_after_generate_flag_adds_a_slot_after_any_int(registry):
    number = ui_node(4, "TNumber", [5, "increment", 2.0], outputs=[("INT", "INT", [])])
    prompt = ui_to_api(ui_workflow([number], []), registry)
    assert prompt["4"]["inputs"] == {"value": 5, "scale": 2.0}


def test_named_widget_values_win_over_positions(registry):
    number = ui_node(4, "TNumber", [5, "fixed", 2.0], widgets_values_named={"value": 9})
    prompt = ui_to_api(ui_workflow([number], []), registry)
    assert prompt["4"]["inputs"] == {"value": 9, "scale": 1.5}


def test_converted_widget_with_a_link_takes_the_link_and_keeps_its_slot(registry):
    number = ui_node(4, "TNumber", [5, "fixed", 1.0], outputs=[("INT", "INT", [3])])
    linked = sampler(inputs=[("w:seed", "INT", 3)])
    links = [*CHAIN_LINKS, [3, 4, 0, 2, 1, "INT"]]
    prompt = ui_to_api(ui_workflow([load(), linked, save(), number], links), registry)
    assert prompt["2"]["inputs"] == {**SAMPLER_INPUTS, "seed": ["4", 0], "image": ["1", 0]}


def test_converted_widget_without_a_link_uses_the_widget_value(registry):
    unlinked = sampler(inputs=[("w:seed", "INT", None)])
    prompt = ui_to_api(ui_workflow([load(), unlinked, save()], CHAIN_LINKS), registry)
    assert prompt == expected_chain()


def test_primitive_node_writes_its_value_into_the_target_widget(registry):
    primitive = ui_node(5, "PrimitiveNode", [42, "fixed"], outputs=[("INT", "INT", [9])])
    target = sampler(inputs=[("w:steps", "INT", 9)])
    links = [*CHAIN_LINKS, [9, 5, 0, 2, 1, "INT"]]
    prompt = ui_to_api(ui_workflow([primitive, load(), target, save()], links), registry)
    assert prompt == expected_chain({**SAMPLER_INPUTS, "steps": 42})


def test_reroute_chains_are_followed_to_the_real_origin(registry):
    first = ui_node(6, "Reroute", None, inputs=[("", "*", 1)], outputs=[("", "IMAGE", [5])])
    second = ui_node(7, "Reroute", None, inputs=[("", "*", 5)], outputs=[("", "IMAGE", [6])])
    links = [
        [1, 1, 0, 6, 0, "IMAGE"],
        [5, 6, 0, 7, 0, "IMAGE"],
        [6, 7, 0, 2, 0, "IMAGE"],
        [2, 2, 0, 3, 0, "IMAGE"],
    ]
    nodes = [load(), first, second, sampler(image_link=6), save()]
    assert ui_to_api(ui_workflow(nodes, links), registry) == expected_chain()


def test_notes_and_groups_are_ignored(registry):
    notes = [ui_node(8, "Note", ["remember"]), ui_node(9, "MarkdownNote", ["# hi"])]
    group = {"id": 1, "title": "G", "bounding": [0, 0, 10, 10], "color": "#fff"}
    workflow = ui_workflow([load(), sampler(), save(), *notes], CHAIN_LINKS, groups=[group])
    assert ui_to_api(workflow, registry) == expected_chain()


def test_bypassed_node_passes_the_input_of_the_same_slot(registry):
    bypassed = sampler(mode=4)
    prompt = ui_to_api(ui_workflow([load(), bypassed, save()], CHAIN_LINKS), registry)
    assert "2" not in prompt
    assert prompt["3"]["inputs"]["images"] == ["1", 0]


def test_bypassed_node_passes_the_first_input_of_the_wanted_type(registry):
    # TMix's slot 0 is a MASK, its output an IMAGE: the IMAGE input (slot 1) is passed on.
    mix = ui_node(
        4,
        "TMix",
        [0.3],
        mode=4,
        inputs=[("mask", "MASK", 3), ("image", "IMAGE", 1)],
        outputs=[("IMAGE", "IMAGE", [2])],
    )
    source = ui_node(
        1, "TLoad", ["a.png", "image"], outputs=[("IMAGE", "IMAGE", [1]), ("MASK", "MASK", [3])]
    )
    links = [[1, 1, 0, 4, 1, "IMAGE"], [3, 1, 1, 4, 0, "MASK"], [2, 4, 0, 3, 0, "IMAGE"]]
    prompt = ui_to_api(ui_workflow([source, mix, save()], links), registry)
    assert set(prompt) == {"1", "3"}
    assert prompt["3"]["inputs"]["images"] == ["1", 0]


def test_bypass_without_a_matching_input_leaves_the_input_unset(registry):
    # TMask (IMAGE → MASK) bypassed: nothing of type MASK to pass on to TMix.mask.
    mask = ui_node(
        4, "TMask", None, mode=4, inputs=[("image", "IMAGE", 1)], outputs=[("MASK", "MASK", [3])]
    )
    mix = ui_node(
        5,
        "TMix",
        [0.3],
        inputs=[("mask", "MASK", 3), ("image", "IMAGE", 4)],
        outputs=[("IMAGE", "IMAGE", [])],
    )
    links = [[1, 1, 0, 4, 0, "IMAGE"], [3, 4, 0, 5, 0, "MASK"], [4, 1, 0, 5, 1, "IMAGE"]]
    prompt = ui_to_api(ui_workflow([load(links=(1, 4)), mask, mix], links), registry)
    assert prompt["5"]["inputs"] == {"amount": 0.3, "image": ["1", 0]}


def test_muted_node_is_deleted_with_the_inputs_it_fed(registry):
    text = ui_node(4, "TText", ["muted", ""], mode=2, outputs=[("STRING", "STRING", [7])])
    user = ui_node(5, "TText", ["kept", "widget value"], inputs=[("w:suffix", "STRING", 7)])
    links = [*CHAIN_LINKS, [7, 4, 0, 5, 0, "STRING"]]
    workflow = ui_workflow([load(), sampler(mode=2), save(), text, user], links)
    prompt = ui_to_api(workflow, registry)
    assert set(prompt) == {"1", "3", "5"}
    assert prompt["3"]["inputs"] == {"filename_prefix": "out"}  # required input now missing
    assert prompt["5"]["inputs"] == {"text": "kept"}  # linked optional widget removed too


def test_link_to_a_node_not_in_the_file_removes_the_input(registry):
    workflow = ui_workflow([load(), sampler(), save()], [*CHAIN_LINKS[:1], [2, 99, 0, 3, 0, "X"]])
    assert ui_to_api(workflow, registry)["3"]["inputs"] == {"filename_prefix": "out"}


def test_dynamic_prompt_comments_are_removed(registry):
    text = ui_node(4, "TText", ["a /* note */ {cat|cat} // tail\nb", ""])
    prompt = ui_to_api(ui_workflow([text], []), registry)
    assert prompt["4"]["inputs"]["text"] == "a  cat \nb"


def test_dynamic_prompt_chooses_one_option_per_group(registry):
    text = ui_node(4, "TText", ["a {red|green|blue} {big|small} car", "{not|dynamic}"])
    workflow = ui_workflow([text], [])
    assert ui_to_api(workflow, registry, FixedRandom(0.0))["4"]["inputs"] == {
        "text": "a red big car",
        "suffix": "{not|dynamic}",  # only widgets declared with dynamic prompts
    }
    assert ui_to_api(workflow, registry, FixedRandom(0.99))["4"]["inputs"]["text"] == (
        "a blue small car"
    )
    seen = {
        ui_to_api(workflow, registry, random.Random(s))["4"]["inputs"]["text"] for s in range(40)
    }
    assert seen <= {f"a {c} {s} car" for c in ("red", "green", "blue") for s in ("big", "small")}
    assert len(seen) > 1


def test_dynamic_prompt_http_urls_lose_everything_after_the_slashes(registry):
    text = ui_node(4, "TText", ["photo from http://example.com/cat.png, sharp", ""])
    prompt = ui_to_api(ui_workflow([text], []), registry)
    assert prompt["4"]["inputs"]["text"] == "photo from http:"


def test_primitive_value_into_a_dynamic_prompt_widget_is_expanded(registry):
    primitive = ui_node(5, "PrimitiveNode", ["{one}"], outputs=[("STRING", "STRING", [9])])
    text = ui_node(4, "TText", ["ignored", ""], inputs=[("w:text", "STRING", 9)])
    prompt = ui_to_api(ui_workflow([primitive, text], [[9, 5, 0, 4, 0, "STRING"]]), registry)
    assert prompt["4"]["inputs"]["text"] == "one"


def test_array_values_are_wrapped(registry):
    text = ui_node(4, "TText", ["x", ["a", "b"]])
    prompt = ui_to_api(ui_workflow([text], []), registry)
    assert prompt["4"]["inputs"]["suffix"] == {"__value__": ["a", "b"]}


def test_title_becomes_meta_title(registry):
    titled = sampler(title="Main sampler")
    prompt = ui_to_api(ui_workflow([load(), titled, save()], CHAIN_LINKS), registry)
    assert prompt["2"]["_meta"] == {"title": "Main sampler"}


SUBGRAPH = {
    "id": "5b1f-sample",
    "name": "Sample",
    "inputNode": {"id": -10},
    "outputNode": {"id": -20},
    "inputs": [
        {"id": "i0", "name": "image", "type": "IMAGE", "linkIds": [101]},
        {"id": "i1", "name": "steps", "type": "INT", "linkIds": [102]},
    ],
    "outputs": [{"id": "o0", "name": "IMAGE", "type": "IMAGE", "linkIds": [103]}],
    "widgets": [],
    "nodes": [
        ui_node(
            1,
            "TSampler",
            [5, "fixed", 10, 7.0, "euler", 1.0],
            inputs=[("image", "IMAGE", 101), ("w:steps", "INT", 102)],
            outputs=[("IMAGE", "IMAGE", [103])],
        )
    ],
    "links": [
        {
            "id": 101,
            "origin_id": -10,
            "origin_slot": 0,
            "target_id": 1,
            "target_slot": 0,
            "type": "IMAGE",
        },
        {
            "id": 102,
            "origin_id": -10,
            "origin_slot": 1,
            "target_id": 1,
            "target_slot": 1,
            "type": "INT",
        },
        {
            "id": 103,
            "origin_id": 1,
            "origin_slot": 0,
            "target_id": -20,
            "target_slot": 0,
            "type": "IMAGE",
        },
    ],
}
INNER_SAMPLER = {"seed": 5, "cfg": 7.0, "sampler_name": "euler", "denoise": 1.0}


def test_subgraph_instance_is_expanded_with_its_promoted_widget(registry):
    instance = ui_node(
        10,
        SUBGRAPH["id"],
        [25],
        inputs=[("image", "IMAGE", 1), ("w:steps", "INT", None)],
        outputs=[("IMAGE", "IMAGE", [2])],
    )
    links = [[1, 1, 0, 10, 0, "IMAGE"], [2, 10, 0, 3, 0, "IMAGE"]]
    workflow = ui_workflow([load(), instance, save()], links, definitions={"subgraphs": [SUBGRAPH]})
    prompt = ui_to_api(workflow, registry)
    assert set(prompt) == {"1", "10:1", "3"}
    assert prompt["10:1"]["inputs"] == {**INNER_SAMPLER, "steps": 25, "image": ["1", 0]}
    assert prompt["3"]["inputs"]["images"] == ["10:1", 0]


def test_nested_subgraphs_get_nested_ids(registry):
    outer = {
        "id": "77aa-outer",
        "name": "Outer",
        "inputNode": {"id": -10},
        "outputNode": {"id": -20},
        "inputs": [{"id": "j0", "name": "image", "type": "IMAGE", "linkIds": [201]}],
        "outputs": [{"id": "p0", "name": "IMAGE", "type": "IMAGE", "linkIds": [202]}],
        "nodes": [
            ui_node(
                4,
                SUBGRAPH["id"],
                [30],
                inputs=[("image", "IMAGE", 201), ("w:steps", "INT", None)],
                outputs=[("IMAGE", "IMAGE", [202])],
            )
        ],
        "links": [[201, -10, 0, 4, 0, "IMAGE"], [202, 4, 0, -20, 0, "IMAGE"]],
    }
    instance = ui_node(
        11, outer["id"], [], inputs=[("image", "IMAGE", 1)], outputs=[("IMAGE", "IMAGE", [2])]
    )
    links = [[1, 1, 0, 11, 0, "IMAGE"], [2, 11, 0, 3, 0, "IMAGE"]]
    workflow = ui_workflow(
        [load(), instance, save()], links, definitions={"subgraphs": [SUBGRAPH, outer]}
    )
    prompt = ui_to_api(workflow, registry)
    assert set(prompt) == {"1", "11:4:1", "3"}
    assert prompt["11:4:1"]["inputs"] == {**INNER_SAMPLER, "steps": 30, "image": ["1", 0]}
    assert prompt["3"]["inputs"]["images"] == ["11:4:1", 0]


def test_unknown_class_types_are_one_error_with_their_node_ids(registry):
    nodes = [
        load(),
        sampler(),
        save(),
        ui_node(20, "FancyUpscaler", [2]),
        ui_node(21, "FancyUpscaler", [4]),
        ui_node(22, "MagicPrompt", ["x"]),
    ]
    with pytest.raises(ValidationFailed) as caught:
        ui_to_graphflow(ui_workflow(nodes, CHAIN_LINKS), registry)
    (error,) = caught.value.errors
    assert error.code == "unknown_node_type"
    assert "FancyUpscaler (nodes 20, 21)" in error.message
    assert "MagicPrompt (node 22)" in error.message


def test_bypassed_unknown_node_is_not_reported(registry):
    nodes = [load(), sampler(), save(), ui_node(20, "FancyUpscaler", [2], mode=4)]
    assert set(ui_to_api(ui_workflow(nodes, CHAIN_LINKS), registry)) == {"1", "2", "3"}


def test_import_keeps_the_original_workflow_and_positions(registry):
    workflow = ui_workflow([load(), sampler(pos=[100, 200]), save()], CHAIN_LINKS)
    doc = ui_to_graphflow(workflow, registry)
    assert doc["nodes"]["2"] == {
        "type": "comfy.t_sampler",
        "inputs": {**SAMPLER_INPUTS, "image": {"link": ["1", "image"]}},
    }
    comfy = doc["editor"]["comfy"]
    assert comfy["workflow"] is workflow and comfy["extra_pnginfo"] == {"workflow": workflow}
    assert comfy["prompt"] == expected_chain()
    assert doc["editor"]["positions"]["2"] == [100, 200]


JUNK = [None, True, -1, 2.5, "x", [], {}, [1, 2], {"id": 1}, [[1, 2, 3, 4, 5, 6]]]


def _mutate(doc, rng: random.Random):
    """A copy of ``doc`` with one value somewhere replaced by junk."""
    doc = json.loads(json.dumps(doc))
    parent, key = None, None
    here = doc
    for _ in range(rng.randint(1, 6)):
        keys = list(here) if isinstance(here, dict) else list(range(len(here)))
        if not keys:
            break
        parent, key = here, rng.choice(keys)
        here = here[key]
        if not isinstance(here, (dict, list)):
            break
    if parent is not None:
        parent[key] = rng.choice(JUNK)
    return doc


def test_damaged_workflows_are_graphflow_errors_never_other_exceptions(registry):
    base = ui_workflow(
        [load(), sampler(inputs=[("w:seed", "INT", None)]), save()],
        CHAIN_LINKS,
        definitions={"subgraphs": [SUBGRAPH]},
    )
    rng = random.Random(7)
    for _ in range(400):
        doc = _mutate(base, rng)
        with contextlib.suppress(GraphflowError):  # the importer itself, no catch-all
            ui_to_graphflow(doc, registry)


def test_the_engine_reads_ui_workflows_through_the_registered_importer(registry):
    for importer in IMPORTERS:
        registry.add_importer(importer)
    workflow, label = read_workflow(ui_workflow([load(), sampler(), save()], CHAIN_LINKS), registry)
    assert label == "ComfyUI UI format (3 nodes)"
    assert workflow.nodes["2"].inputs["steps"] == 30


def test_ui_export_writes_hidden_slots_converted_widgets_and_numbers_other_ids(registry):
    doc = {
        "format": "graphflow/1",
        "nodes": {
            "loader": {"type": "comfy.t_load", "inputs": {"image": "b.png"}},
            "n": {"type": "comfy.t_number", "inputs": {"value": 9}},
            "7": {
                "type": "comfy.t_sampler",
                "inputs": {
                    "image": {"link": ["loader", "image"]},
                    "seed": {"link": ["n", "int"]},
                    "steps": 12,
                },
            },
        },
    }
    ui = graphflow_to_ui(doc, registry)
    by_id = {node["id"]: node for node in ui["nodes"]}
    assert set(by_id) == {7, 8, 9} and by_id[8]["title"] == "loader"
    assert by_id[8]["widgets_values"] == ["b.png", "image"]
    assert by_id[9]["widgets_values"] == [9, "fixed", 1.5]
    assert by_id[7]["widgets_values"] == [0, "fixed", 12, 8.0, "euler", 1.0]
    assert by_id[7]["inputs"] == [
        {"name": "image", "type": "IMAGE", "link": 1},
        {"name": "seed", "type": "INT", "link": 2, "widget": {"name": "seed"}},
    ]
    assert ui["links"] == [[1, 8, 0, 7, 0, "IMAGE"], [2, 9, 0, 7, 1, "INT"]]
    back = ui_to_api(ui, registry)
    assert back["7"]["inputs"] == {
        "seed": ["9", 0],
        "steps": 12,
        "cfg": 8.0,
        "sampler_name": "euler",
        "denoise": 1.0,
        "image": ["8", 0],
    }


def test_schema_1_links_as_objects_are_read(registry):
    links = [
        {
            "id": 1,
            "origin_id": 1,
            "origin_slot": 0,
            "target_id": 2,
            "target_slot": 0,
            "type": "IMAGE",
        },
        {
            "id": 2,
            "origin_id": 2,
            "origin_slot": 0,
            "target_id": 3,
            "target_slot": 0,
            "type": "IMAGE",
        },
    ]
    workflow = ui_workflow([load(), sampler(), save()], links, version=1)
    assert ui_to_api(workflow, registry) == expected_chain()


def test_2023_converted_widgets_with_config_are_read(registry):
    number = ui_node(4, "TNumber", [5, "fixed", 1.0], outputs=[("INT", "INT", [3])])
    linked = sampler(inputs=[("w:seed", "INT", 3)])
    linked["inputs"][1]["widget"]["config"] = ["INT", {"default": 0, "min": 0}]
    links = [*CHAIN_LINKS, [3, 4, 0, 2, 1, "INT"]]
    prompt = ui_to_api(ui_workflow([load(), linked, save(), number], links), registry)
    assert prompt["2"]["inputs"]["seed"] == ["4", 0]


def test_widgets_values_as_an_object_are_read_by_name(registry):
    number = ui_node(4, "TNumber", {"scale": 3.0, "value": 11})
    assert ui_to_api(ui_workflow([number], []), registry)["4"]["inputs"] == {
        "value": 11,
        "scale": 3.0,
    }


def test_newer_subgraph_instances_with_proxy_widgets_keep_the_inner_values(registry):
    instance = ui_node(
        10,
        SUBGRAPH["id"],
        [25],
        inputs=[("image", "IMAGE", 1), ("w:steps", "INT", None)],
        outputs=[("IMAGE", "IMAGE", [2])],
        properties={"proxyWidgets": [["1", "steps"]]},
    )
    links = [[1, 1, 0, 10, 0, "IMAGE"], [2, 10, 0, 3, 0, "IMAGE"]]
    workflow = ui_workflow([load(), instance, save()], links, definitions={"subgraphs": [SUBGRAPH]})
    assert ui_to_api(workflow, registry)["10:1"]["inputs"]["steps"] == 10


def test_legacy_group_nodes_are_a_clear_error(registry):
    group = ui_node(12, "workflow>Upscale stack", [1.5])
    workflow = ui_workflow(
        [load(), sampler(), save(), group], CHAIN_LINKS, extra={"groupNodes": {"Upscale stack": {}}}
    )
    with pytest.raises(ValidationFailed) as caught:
        ui_to_api(workflow, registry)
    (error,) = caught.value.errors
    assert error.node == "12" and "legacy group node" in error.message
