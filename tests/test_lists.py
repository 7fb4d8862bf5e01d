"""Lists: a node maps over list inputs, collects whole lists, returns lists; per-element
caching and progress (graphflow/mapping.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from graphflow import (
    Any,
    EventLog,
    Executor,
    Float,
    Int,
    NodeContext,
    OutputCache,
    Outputs,
    Registry,
    String,
    node,
)
from graphflow.events import NodeFinished, NodeStarted, Progress
from graphflow.mapping import ValueList
from graphflow.node import NodeDeclarationError, UnequalLists
from graphflow.value_codec import decode_value, encode_value
from support import link, make_workflow


class ListPack:
    """Nodes that count their calls (and the values they were called with)."""

    def __init__(self):
        self.calls: Counter[str] = Counter()
        self.seen: list[tuple] = []
        calls, seen = self.calls, self.seen

        @node("l.words", output_is_list=True)
        def words(text: String = "") -> String:
            """The words of a text, as a list."""
            calls["l.words"] += 1
            return text.split()

        @node("l.numbers", output_is_list=True)
        def numbers(count: Int = 3) -> Int:
            """0, 1, ... count-1 as a list."""
            calls["l.numbers"] += 1
            return list(range(count))

        @node("l.label")
        def label(text: String, number: Int = 0, ctx: NodeContext = None) -> String:
            """text#number, reporting two steps."""
            calls["l.label"] += 1
            seen.append((text, number))
            ctx.progress(1, 2)
            ctx.progress(2, 2)
            return f"{text}#{number}"

        @node("l.label_comfy", unequal_lists="repeat_last")
        def label_comfy(text: String, number: Int = 0) -> String:
            """text#number under ComfyUI's rule for unequal lists."""
            calls["l.label_comfy"] += 1
            return f"{text}#{number}"

        @node("l.join", input_is_list=True)
        def join(texts: String) -> String:
            """The texts of a list joined with '|'."""
            calls["l.join"] += 1
            seen.append(("join", type(texts).__name__, len(texts)))
            return "|".join(texts)

        @node("l.split_both", output_is_list=["parts"])
        def split_both(text: String) -> Outputs(parts=String, first=String):
            """The characters of a text (a list) and its first character (one value)."""
            calls["l.split_both"] += 1
            return list(text), text[:1]

        @node("l.half")
        def half(value: Float) -> Float:
            """value / 2 (records the type it got)."""
            seen.append(("half", type(value).__name__))
            return value / 2

        @node("l.pair_list", output_is_list=True)
        def pair_list() -> Any:
            """Returns a tuple of two plain Python lists."""
            return [[1, 2], [3, 4]]

        @node("l.plain")
        def plain() -> Any:
            """A plain Python list: one value."""
            return [1, 2, 3]

        @node("l.count")
        def count(value: Any) -> Int:
            """len(value) of one value."""
            calls["l.count"] += 1
            return len(value)

        @node("l.not_a_list", output_is_list=True)
        def not_a_list() -> Int:
            """Declares a list but returns one number."""
            return 3

        @node("l.show", output=True)
        def show(value: Any) -> None:
            """Record a value."""
            calls["l.show"] += 1
            return {"value": [value]}

        self.specs = [words, numbers, label, label_comfy, join, split_both, half]
        self.specs += [pair_list, plain, count, not_a_list, show]
        self.registry = Registry()
        self.registry.register_all(self.specs, plugin="tests")

    def executor(self) -> Executor:
        return Executor(self.registry, cache=OutputCache())


@pytest.fixture
def lists() -> ListPack:
    return ListPack()


def labels(words="a b c", numbers=None, label_type="l.label", **extra):
    nodes = {
        "w": ("l.words", {"text": words}),
        "lab": (label_type, {"text": link("w", "string"), **extra}),
        "out": ("l.show", {"value": link("lab", "string")}),
    }
    if numbers is not None:
        nodes["n"] = ("l.numbers", {"count": numbers})
        nodes["lab"][1]["number"] = link("n", "int")
    return make_workflow(nodes)


def test_a_list_reaching_a_single_input_runs_the_node_once_per_element(lists):
    result = lists.executor().run(labels(), outputs=["lab"])
    assert result.ok
    assert lists.calls["l.label"] == 3
    assert result.outputs["lab"]["string"] == ["a#0", "b#0", "c#0"]
    assert isinstance(result.outputs["lab"]["string"], ValueList)


def test_two_lists_of_equal_length_are_zipped(lists):
    result = lists.executor().run(labels(numbers=3), outputs=["lab"])
    assert result.outputs["lab"]["string"] == ["a#0", "b#1", "c#2"]
    assert lists.seen == [("a", 0), ("b", 1), ("c", 2)]


def test_a_single_value_beside_a_list_is_used_for_every_element(lists):
    result = lists.executor().run(labels(number=7), outputs=["lab"])
    assert result.outputs["lab"]["string"] == ["a#7", "b#7", "c#7"]


def test_lists_of_unequal_length_fail_naming_the_node_inputs_and_lengths(lists):
    result = lists.executor().run(labels(numbers=2), outputs=["lab"])
    assert result.status == "failed"
    assert result.error.node == "lab"
    assert result.error.exception_type == "ListLengthError"
    message = result.error.message
    assert "'lab'" in message and "l.label" in message
    assert "text has 3" in message and "number has 2" in message
    assert lists.calls["l.label"] == 0


def test_the_comfyui_rule_repeats_the_last_element_of_a_shorter_list(lists):
    workflow = labels(numbers=2, label_type="l.label_comfy")
    result = lists.executor().run(workflow, outputs=["lab"])
    assert result.ok
    assert result.outputs["lab"]["string"] == ["a#0", "b#1", "c#1"]


def test_comfyui_class_types_use_the_comfyui_rule_and_flags():
    from gf_comfy.names import CLASSES

    sampler = CLASSES["KSampler"]
    assert sampler.spec.unequal_lists is UnequalLists.REPEAT_LAST
    assert sampler.output_is_list == (False,)
    assert not sampler.input_is_list


def test_a_collect_input_gets_the_whole_list_and_the_node_runs_once(lists):
    workflow = make_workflow(
        {
            "w": ("l.words", {"text": "x y z"}),
            "j": ("l.join", {"texts": link("w", "string")}),
            "out": ("l.show", {"value": link("j", "string")}),
        }
    )
    result = lists.executor().run(workflow)
    assert result.ui["out"] == {"value": ["x|y|z"]}
    assert lists.calls["l.join"] == 1
    assert lists.seen == [("join", "list", 3)]


def test_a_collect_input_given_one_value_gets_a_one_element_list(lists):
    workflow = make_workflow(
        {"j": ("l.join", {"texts": "solo"}), "out": ("l.show", {"value": link("j", "string")})}
    )
    result = lists.executor().run(workflow)
    assert result.ui["out"] == {"value": ["solo"]}
    assert lists.seen == [("join", "list", 1)]


def test_list_outputs_of_a_mapped_node_are_joined_and_single_outputs_listed(lists):
    workflow = make_workflow(
        {
            "w": ("l.words", {"text": "ab cde"}),
            "s": ("l.split_both", {"text": link("w", "string")}),
            "out": ("l.show", {"value": link("s", "parts")}),
        }
    )
    result = lists.executor().run(workflow, outputs=["s"])
    assert result.outputs["s"]["parts"] == ["a", "b", "c", "d", "e"]
    assert result.outputs["s"]["first"] == ["a", "c"]


def test_an_output_declared_a_list_must_be_given_a_list(lists):
    workflow = make_workflow(
        {"n": ("l.not_a_list", {}), "out": ("l.show", {"value": link("n", "int")})}
    )
    result = lists.executor().run(workflow)
    assert result.status == "failed"
    assert "output_is_list" in result.error.message and "l.not_a_list" in result.error.message


def test_a_plain_python_list_is_one_value_and_not_mapped_over(lists):
    workflow = make_workflow(
        {
            "p": ("l.plain", {}),
            "c": ("l.count", {"value": link("p", "any")}),
            "out": ("l.show", {"value": link("c", "int")}),
        }
    )
    result = lists.executor().run(workflow)
    assert result.ui["out"] == {"value": [3]}
    assert lists.calls["l.count"] == 1


def test_elements_that_are_plain_lists_are_each_one_value(lists):
    workflow = make_workflow(
        {
            "p": ("l.pair_list", {}),
            "c": ("l.count", {"value": link("p", "any")}),
            "out": ("l.show", {"value": link("c", "int")}),
        }
    )
    result = lists.executor().run(workflow, outputs=["c"])
    assert result.outputs["c"]["int"] == [2, 2]


def test_int_elements_reaching_a_float_input_become_floats(lists):
    workflow = make_workflow(
        {
            "n": ("l.numbers", {"count": 2}),
            "h": ("l.half", {"value": link("n", "int")}),
            "out": ("l.show", {"value": link("h", "float")}),
        }
    )
    result = lists.executor().run(workflow, outputs=["h"])
    assert result.outputs["h"]["float"] == [0.0, 0.5]
    assert lists.seen == [("half", "float"), ("half", "float")]


def test_an_empty_list_runs_the_node_zero_times_and_gives_an_empty_list(lists):
    result = lists.executor().run(labels(words=""), outputs=["lab"])
    assert result.ok
    assert result.outputs["lab"]["string"] == []
    assert lists.calls["l.label"] == 0


def test_a_mapped_output_node_joins_the_display_data_of_its_elements(lists):
    workflow = make_workflow(
        {"w": ("l.words", {"text": "p q"}), "out": ("l.show", {"value": link("w", "string")})}
    )
    result = lists.executor().run(workflow)
    assert result.ui["out"] == {"value": ["p", "q"]}
    assert lists.calls["l.show"] == 2


def test_changing_one_element_reruns_exactly_that_element(lists):
    executor = lists.executor()
    first = executor.run(labels("a b c d"))
    assert first.elements["lab"] == {"executed": [0, 1, 2, 3], "cached": []}
    lists.calls.clear()
    second = executor.run(labels("a b X d"))
    assert second.ok
    assert lists.calls["l.label"] == 1
    assert second.elements["lab"] == {"executed": [2], "cached": [0, 1, 3]}
    assert second.ui["out"] == {"value": ["a#0", "b#0", "X#0", "d#0"]}


def test_a_second_identical_run_takes_the_whole_list_from_the_cache(lists):
    executor = lists.executor()
    executor.run(labels(numbers=3))
    lists.calls.clear()
    again = executor.run(labels(numbers=3))
    assert again.executed == []
    assert sum(lists.calls.values()) == 0


def test_equal_elements_in_one_run_are_computed_once(lists):
    result = lists.executor().run(labels("a b a a"), outputs=["lab"])
    assert result.outputs["lab"]["string"] == ["a#0", "b#0", "a#0", "a#0"]
    assert lists.calls["l.label"] == 2
    assert result.elements["lab"] == {"executed": [0, 1], "cached": [2, 3]}


def test_progress_is_reported_per_element_and_steps_name_their_element(lists):
    log = EventLog()
    lists.executor().run(labels("a b c"), observers=[log])
    mine = [e for e in log.of_type(Progress) if e.node == "lab"]
    done = [e for e in mine if e.unit == "element"]
    assert [(e.value, e.total, e.element) for e in done] == [(1, 3, 0), (2, 3, 1), (3, 3, 2)]
    steps = [(e.element, e.value, e.elements) for e in mine if e.unit == "step"]
    assert steps == [(0, 1, 3), (0, 2, 3), (1, 1, 3), (1, 2, 3), (2, 1, 3), (2, 2, 3)]
    assert log.nodes(NodeStarted).count("lab") == 1
    assert log.nodes(NodeFinished).count("lab") == 1


def test_a_cached_element_still_reports_its_element_progress(lists):
    executor = lists.executor()
    executor.run(labels("a b"))
    log = EventLog()
    executor.run(labels("a c"), observers=[log])
    mine = [e for e in log.of_type(Progress) if e.node == "lab"]
    done = [e.element for e in mine if e.unit == "element"]
    steps = {e.element for e in mine if e.unit == "step"}
    assert done == [0, 1]
    assert steps == {1}  # element 0 came from the cache: no steps of its own


def test_unmapped_nodes_report_progress_as_before(pack):
    log = EventLog()
    workflow = make_workflow(
        {
            "v": ("t.value", {"value": 1.0}),
            "s": ("t.steps", {"value": link("v", "float"), "steps": 2}),
            "out": ("t.out", {"value": link("s", "float")}),
        }
    )
    pack.executor().run(workflow, observers=[log])
    reports = log.of_type(Progress)
    assert [(e.unit, e.element, e.elements) for e in reports] == [("step", None, 0)] * 2


def test_a_value_list_keeps_its_element_keys_through_the_disk_codec():
    values = ValueList(["a", 2], keys=["k1", "k2"])
    tree, tensors = encode_value({"out": values})
    back = decode_value(tree, tensors)["out"]
    assert isinstance(back, ValueList)
    assert back == ["a", 2] and back.keys == ("k1", "k2")


def test_list_flags_name_ports_and_are_checked_when_declared():
    @node("l.flags", output_is_list=(True, False))
    def flags(a: Int = 0, b: Int = 0) -> Outputs(many=Int, one=Int):
        """Two outputs, the first a list."""
        return [a], b

    assert [o.is_list for o in flags.outputs] == [True, False]
    assert flags.to_dict()["outputs"][0]["is_list"] is True
    with pytest.raises(NodeDeclarationError, match="not its ports"):

        @node("l.bad_name", input_is_list=["nope"])
        def bad_name(a: Int = 0) -> Int:
            """Names an input it lacks."""
            return a

    with pytest.raises(NodeDeclarationError, match="1 flags for 2 ports"):

        @node("l.bad_count", output_is_list=(True,))
        def bad_count() -> Outputs(x=Int, y=Int):
            """One flag for two outputs."""
            return 1, 2
