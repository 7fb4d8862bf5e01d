"""Validation reports every problem at once, as structured errors, without executing."""

from __future__ import annotations

import pytest

from graphflow import (
    Choice,
    ErrorCode,
    Float,
    Int,
    Registry,
    ValidationFailed,
    build_graph,
    node,
    validate,
)
from graphflow.graph import plan_execution
from support import link, make_workflow


def codes(errors):
    return sorted((e.code.value, e.node, e.input) for e in errors)


def test_every_error_code_is_reported_in_one_pass(pack):
    workflow = make_workflow(
        {
            "unknown": ("t.nope", {}),
            "missing": ("t.add", {}),
            "extra": ("t.value", {"value": 1, "bogus": 2}),
            "dangling": ("t.add", {"a": link("ghost", "float")}),
            "bad_out": ("t.add", {"a": link("extra", "nope")}),
            "mismatch": ("t.blob", {"size": link("extra", "float")}),
            "wrong_literal": ("t.blob", {"size": "big"}),
            "range": ("t.blob", {"size": -5}),
            "steps_link_only": ("t.out", {"value": link("extra", "float")}),
        }
    )
    _, errors = validate(workflow, pack.registry)
    assert codes(errors) == [
        ("invalid_literal", "wrong_literal", "size"),
        ("link_missing_node", "dangling", "a"),
        ("link_missing_output", "bad_out", "a"),
        ("missing_input", "missing", "a"),
        ("out_of_range", "range", "size"),
        ("type_mismatch", "mismatch", "size"),
        ("unknown_input", "extra", "bogus"),
        ("unknown_node_type", "unknown", None),
    ]
    assert all(e.message for e in errors)


def test_unknown_type_suggests_close_names(pack):
    _, errors = validate(make_workflow({"a": ("t.vlaue", {})}), pack.registry)
    assert errors[0].code is ErrorCode.UNKNOWN_NODE_TYPE
    assert "t.value" in errors[0].message


def test_cycle_is_reported_with_the_nodes_on_it(pack):
    workflow = make_workflow(
        {
            "a": ("t.add", {"a": link("c", "float")}),
            "b": ("t.add", {"a": link("a", "float")}),
            "c": ("t.add", {"a": link("b", "float")}),
            "out": ("t.out", {"value": link("c", "float")}),
        }
    )
    _, errors = validate(workflow, pack.registry)
    (cycle,) = errors
    assert cycle.code is ErrorCode.CYCLE
    assert "a → b → c → a" in cycle.message


def test_self_loop_is_a_cycle(pack):
    workflow = make_workflow(
        {"a": ("t.add", {"a": link("a", "float")}), "out": ("t.out", {"value": 1})}
    )
    _, errors = validate(workflow, pack.registry)
    assert [e.code for e in errors] == [ErrorCode.CYCLE]


def test_workflow_without_output_node_is_invalid(pack):
    _, errors = validate(make_workflow({"a": ("t.value", {"value": 1})}), pack.registry)
    assert [e.code for e in errors] == [ErrorCode.NO_OUTPUT]


def test_value_not_in_choices_is_reported():
    @node("v.pick", output=True)
    def pick(mode: Choice(["fast", "slow"]) = "fast") -> None:
        """Pick a mode."""

    registry = Registry()
    registry.register(pick)
    _, errors = validate(make_workflow({"p": ("v.pick", {"mode": "medium"})}), registry)
    assert [(e.code, e.input) for e in errors] == [(ErrorCode.NOT_IN_CHOICES, "mode")]
    assert "fast" in errors[0].message


AVAILABLE_FILES = ["a.safetensors"]


def test_choices_can_be_computed_when_validating():
    @node("v.load", output=True)
    def load(name: Choice(lambda: AVAILABLE_FILES)) -> None:
        """Load a file."""

    registry = Registry()
    registry.register(load)
    workflow = make_workflow({"l": ("v.load", {"name": "b.safetensors"})})
    assert validate(workflow, registry)[1][0].code is ErrorCode.NOT_IN_CHOICES
    AVAILABLE_FILES.append("b.safetensors")
    assert validate(workflow, registry)[1] == []


def test_node_can_add_its_own_input_check():
    @node("v.range", output=True)
    def span(low: Float = 0.0, high: Float = 1.0) -> None:
        """A range."""

    @span.check
    def _ordered(low, high):
        return "high: must not be below low" if high < low else None

    registry = Registry()
    registry.register(span)
    _, errors = validate(make_workflow({"r": ("v.range", {"low": 2, "high": 1})}), registry)
    assert [(e.code, e.node, e.input, e.message) for e in errors] == [
        (ErrorCode.INVALID_INPUT, "r", "high", "must not be below low")
    ]


def test_int_output_may_feed_float_input_but_not_the_reverse(pack):
    ok = make_workflow(
        {"b": ("t.blob", {"size": 3}), "n": ("t.add", {"a": 1}), "out": ("t.out", {"value": 1})}
    )
    assert validate(ok, pack.registry)[1] == []

    @node("v.int", output=True)
    def int_in(value: Int) -> None:
        """Takes an int."""

    pack.registry.register(int_in)
    bad = make_workflow({"f": ("t.value", {}), "i": ("v.int", {"value": link("f", "float")})})
    assert [e.code for e in validate(bad, pack.registry)[1]] == [ErrorCode.TYPE_MISMATCH]


def test_bool_is_not_accepted_as_a_number(pack):
    _, errors = validate(
        make_workflow({"a": ("t.value", {"value": True}), "o": ("t.out", {"value": 1})}),
        pack.registry,
    )
    assert [(e.code, e.input) for e in errors] == [(ErrorCode.INVALID_LITERAL, "value")]


def test_validation_executes_nothing(pack):
    workflow = make_workflow({"a": ("t.fail", {}), "o": ("t.out", {"value": link("a", "float")})})
    build_graph(workflow, pack.registry)
    assert sum(pack.calls.values()) == 0


def test_build_graph_raises_with_all_errors(pack):
    workflow = make_workflow({"a": ("t.add", {}), "b": ("t.nope", {})})
    with pytest.raises(ValidationFailed) as caught:
        build_graph(workflow, pack.registry)
    assert {e.code for e in caught.value.errors} == {
        ErrorCode.MISSING_INPUT,
        ErrorCode.UNKNOWN_NODE_TYPE,
    }


def test_plan_contains_only_ancestors_in_topological_order(pack):
    workflow = make_workflow(
        {
            "x": ("t.value", {}),
            "a": ("t.value", {}),
            "b": ("t.add", {"a": link("a", "float")}),
            "o1": ("t.out", {"value": link("b", "float")}),
            "o2": ("t.out", {"value": link("x", "float")}),
        }
    )
    validated = build_graph(workflow, pack.registry)
    assert plan_execution(validated, ["o1"]) == ["a", "b", "o1"]
    with pytest.raises(ValidationFailed) as caught:
        plan_execution(validated, ["nope"])
    assert caught.value.errors[0].code is ErrorCode.UNKNOWN_OUTPUT


def test_errors_serialise_with_code_strings(pack):
    _, errors = validate(make_workflow({"a": ("t.add", {})}), pack.registry)
    assert errors[0].to_dict() == {
        "code": "missing_input",
        "message": "required FLOAT input is neither linked nor set",
        "node": "a",
        "input": "a",
    }


def test_int_too_large_for_a_float_input_is_out_of_range(pack):
    # FLOAT inputs get INT literals as floats; 2**1100 has no float, and used to crash the run
    workflow = make_workflow(
        {"a": ("t.value", {"value": 2**1100}), "o": ("t.out", {"value": link("a", "float")})}
    )
    _, errors = validate(workflow, pack.registry)
    assert [(e.code, e.node, e.input) for e in errors] == [(ErrorCode.OUT_OF_RANGE, "a", "value")]
    assert "too large for a FLOAT" in errors[0].message


def test_int_that_still_fits_a_float_is_accepted_for_a_float_input(pack):
    workflow = make_workflow(
        {"a": ("t.value", {"value": 10**308}), "o": ("t.out", {"value": link("a", "float")})}
    )
    assert validate(workflow, pack.registry)[1] == []


def test_range_error_names_an_int_too_long_to_print(pack):
    # str() of an int over ~4,300 digits raises ValueError; the message must still be built
    workflow = make_workflow({"b": ("t.blob", {"size": -(10**5000)}), "o": ("t.out", {"value": 1})})
    _, errors = validate(workflow, pack.registry)
    assert [e.code for e in errors] == [ErrorCode.OUT_OF_RANGE]
    assert "-bit integer" in errors[0].message and len(errors[0].message) < 120
