"""Declaring nodes: what a typed function turns into, and the mistakes refused early."""

from __future__ import annotations

import json

import pytest

from graphflow import (
    Any,
    Choice,
    Float,
    Image,
    Int,
    Lazy,
    Mask,
    NodeContext,
    NodeResult,
    Outputs,
    String,
    node,
)
from graphflow.node import NodeDeclarationError


@node("image.film_grain", version="1.2.0", category="image/noise")
def film_grain(
    image: Image,
    intensity: Float(0.0, 1.0, step=0.05) = 0.2,
    seed: Int(min=0) = 0,
    mode: Choice(["mono", "color"]) = "mono",
    note: String(multiline=True) = "",
    mask: Mask = None,
    fallback: Lazy(Any) = None,
    ctx: NodeContext = None,
) -> Outputs(image=Image, grain=Mask):
    """Overlay synthetic silver-halide grain.

    Longer help text for the editor.
    """
    return image, mask


def test_function_signature_becomes_the_spec():
    spec = film_grain
    assert (spec.id, spec.version, spec.category) == ("image.film_grain", "1.2.0", "image/noise")
    assert spec.display_name == "Film Grain"
    assert spec.description.startswith("Overlay synthetic silver-halide grain.")
    assert [i.name for i in spec.inputs] == [
        "image",
        "intensity",
        "seed",
        "mode",
        "note",
        "mask",
        "fallback",
    ]
    assert spec.context_param == "ctx"
    assert spec.inputs_by_name["image"].required
    assert not spec.inputs_by_name["mask"].required
    assert spec.inputs_by_name["fallback"].lazy
    assert [(o.name, o.type) for o in spec.outputs] == [("image", "IMAGE"), ("grain", "MASK")]
    assert spec.output_node is False and spec.idempotent is True


def test_spec_serialises_to_json_with_widget_constraints():
    data = json.loads(json.dumps(film_grain.to_dict()))
    intensity = data["inputs"][1]
    assert intensity == {
        "name": "intensity",
        "type": "FLOAT",
        "required": False,
        "lazy": False,
        "default": 0.2,
        "min": 0.0,
        "max": 1.0,
        "step": 0.05,
    }
    assert data["inputs"][3]["choices"] == ["mono", "color"]
    assert data["inputs"][4]["multiline"] is True
    assert data["outputs"] == [
        {"name": "image", "type": "IMAGE"},
        {"name": "grain", "type": "MASK"},
    ]


def test_single_output_is_named_after_its_type():
    @node("t.one")
    def one() -> Float:
        """One."""
        return 1.0

    assert [o.name for o in one.outputs] == ["float"]
    assert one.pack_result(1.0) == ({"float": 1.0}, None)


def test_results_pack_from_tuple_dict_or_node_result():
    assert film_grain.pack_result((1, 2)) == ({"image": 1, "grain": 2}, None)
    assert film_grain.pack_result({"grain": 2, "image": 1}) == ({"image": 1, "grain": 2}, None)
    assert film_grain.pack_result(NodeResult((1, 2), ui={"x": 1})) == (
        {"image": 1, "grain": 2},
        {"x": 1},
    )
    with pytest.raises(TypeError, match="declares 2 outputs"):
        film_grain.pack_result(5)


@pytest.mark.parametrize(
    ("node_id", "version", "message"),
    [
        ("add", "1.0.0", "namespaced"),
        ("Core.Add", "1.0.0", "namespaced"),
        ("core.add", "1.0", "not semver"),
    ],
)
def test_bad_ids_and_versions_are_refused(node_id, version, message):
    with pytest.raises(NodeDeclarationError, match=message):
        node(node_id, version=version)


def test_missing_docstring_is_refused():
    with pytest.raises(NodeDeclarationError, match="docstring"):

        @node("t.nodoc")
        def nodoc() -> Float:
            return 1.0


def test_unannotated_parameter_is_refused():
    with pytest.raises(NodeDeclarationError, match="'x' needs a port type"):

        @node("t.bare")
        def bare(x) -> Float:
            """Bare."""


def test_node_without_outputs_must_be_an_output_node():
    with pytest.raises(NodeDeclarationError, match="output node"):

        @node("t.sink")
        def sink(x: Float) -> None:
            """Sink."""


def test_default_outside_range_is_refused():
    with pytest.raises(NodeDeclarationError, match="above max"):

        @node("t.range")
        def ranged(x: Float(0, 1) = 2.0) -> Float:
            """Ranged."""


def test_spec_is_callable_like_the_function():
    assert film_grain("img", mask="m") == ("img", "m")
