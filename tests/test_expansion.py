"""Run-time node expansion: a node returns a small graph to run in its place
(graphflow/expansion.py); its inner nodes run and cache like any node."""

from __future__ import annotations

from collections import Counter

import pytest

from graphflow import Any, Executor, OutputCache, Registry, String, node
from graphflow.expansion import Expand, InnerGraph
from support import link, make_workflow


class ExpansionPack:
    """Plain nodes that count calls, and nodes that expand into them."""

    def __init__(self):
        self.calls: Counter[str] = Counter()
        calls = self.calls

        @node("x.upper")
        def upper(text: String) -> String:
            """text in capitals."""
            calls["x.upper"] += 1
            return text.upper()

        @node("x.suffix")
        def suffix(text: String, end: String = "!") -> String:
            """text followed by end."""
            calls["x.suffix"] += 1
            return text + end

        @node("x.shout")
        def shout(text: String, end: String = "!") -> String:
            """Capitals then the end mark, done by an inner graph."""
            calls["x.shout"] += 1
            graph = InnerGraph()
            big = graph.add("x.upper", id="big", text=graph.parent("text"))
            out = graph.add("x.suffix", id="end", text=big["string"], end=graph.parent("end"))
            return graph.expand(string=out["string"])

        @node("x.shout_twice")
        def shout_twice(text: String) -> String:
            """An expansion whose inner node expands again."""
            graph = InnerGraph()
            once = graph.add("x.shout", id="once", text=graph.parent("text"))
            twice = graph.add("x.shout", id="twice", text=once["string"], end="?")
            return graph.expand(string=twice["string"])

        @node("x.as_dict")
        def as_dict(text: String) -> String:
            """The dict form of an expansion."""
            graph = {
                "a": {"type": "x.upper", "inputs": {"text": {"parent": "text"}}},
                "b": {"type": "x.suffix", "inputs": {"text": {"link": ["a", "string"]}}},
            }
            return Expand(graph, {"string": {"link": ["b", "string"]}})

        @node("x.broken")
        def broken(mode: String = "type") -> String:
            """Expands into a graph with mistakes."""
            graph = InnerGraph()
            if mode == "type":
                graph.add("x.nope", id="a")
                return graph.expand(string="never")
            a = graph.add("x.upper", id="a", text=graph.parent("missing"))
            return graph.expand(string=a["other"])

        @node("x.cycle")
        def cycle(text: String = "") -> String:
            """Expands into a cycle."""
            graph = {
                "a": {"type": "x.suffix", "inputs": {"text": {"link": ["b", "string"]}}},
                "b": {"type": "x.suffix", "inputs": {"text": {"link": ["a", "string"]}}},
            }
            return Expand(graph, {"string": {"link": ["a", "string"]}})

        @node("x.with_output")
        def with_output(text: String) -> String:
            """An expansion holding an output node of its own."""
            graph = InnerGraph()
            graph.add("x.show", id="shown", value=graph.parent("text"))
            return graph.expand(string=text)

        @node("x.words", output_is_list=True)
        def words(text: String = "") -> String:
            """The words of a text, as a list."""
            return text.split()

        @node("x.show", output=True)
        def show(value: Any) -> None:
            """Record a value."""
            return {"value": [value]}

        specs = [upper, suffix, shout, shout_twice, as_dict, broken, cycle, with_output]
        self.specs = [*specs, words, show]
        self.registry = Registry()
        self.registry.register_all(self.specs, plugin="tests")

    def executor(self) -> Executor:
        return Executor(self.registry, cache=OutputCache())


@pytest.fixture
def pack() -> ExpansionPack:
    return ExpansionPack()


def one(kind: str, **inputs):
    """Node ``s`` of type ``kind`` shown by ``out``."""
    return make_workflow({"s": (kind, inputs), "out": ("x.show", {"value": link("s", "string")})})


def shout(text="hi", end="!"):
    return one("x.shout", text=text, end=end)


def test_the_parent_outputs_the_named_inner_output(pack):
    result = pack.executor().run(shout("hi"))
    assert result.ok
    assert result.ui["out"] == {"value": ["HI!"]}


def test_inner_nodes_run_under_ids_prefixed_by_the_parent(pack):
    result = pack.executor().run(shout("hi"))
    assert result.executed.index("s:big") < result.executed.index("s:end")
    assert result.executed.index("s:end") < result.executed.index("s")


def test_a_second_identical_run_takes_the_parent_from_the_cache(pack):
    executor = pack.executor()
    executor.run(shout("hi"))
    pack.calls.clear()
    again = executor.run(shout("hi"))
    assert again.executed == []
    assert sum(pack.calls.values()) == 0


def test_an_unchanged_inner_node_hits_the_cache_when_the_parent_runs_again(pack):
    executor = pack.executor()
    executor.run(shout("hi", end="!"))
    pack.calls.clear()
    second = executor.run(shout("hi", end="?"))
    assert second.ui["out"] == {"value": ["HI?"]}
    assert pack.calls == Counter({"x.shout": 1, "x.suffix": 1})
    assert "s:big" in second.cached
    assert "s:end" in second.executed


def test_inner_nodes_cache_by_content_across_parents(pack):
    executor = pack.executor()
    executor.run(shout("hi", end="!"))
    pack.calls.clear()
    workflow = make_workflow(
        {
            "other": ("x.shout", {"text": "hi", "end": "?"}),
            "out": ("x.show", {"value": link("other", "string")}),
        }
    )
    result = executor.run(workflow)
    assert "other:big" in result.cached
    assert pack.calls["x.upper"] == 0


def test_an_inner_node_may_expand_again(pack):
    result = pack.executor().run(one("x.shout_twice", text="hi"))
    assert result.ui["out"] == {"value": ["HI!?"]}
    assert "s:twice:end" in result.executed


def test_the_dict_form_with_link_and_parent_entries_works(pack):
    result = pack.executor().run(one("x.as_dict", text="ok"))
    assert result.ui["out"] == {"value": ["OK!"]}


def test_an_unknown_inner_node_type_fails_the_run_naming_it(pack):
    result = pack.executor().run(one("x.broken", mode="type"))
    assert result.status == "failed"
    assert result.error.node == "s"
    assert result.error.exception_type == "ExpansionError"
    assert "unknown node type 'x.nope'" in result.error.message
    assert "'s:a'" in result.error.message


def test_every_problem_of_an_inner_graph_is_listed(pack):
    result = pack.executor().run(one("x.broken", mode="links"))
    message = result.error.message
    assert "2 problem(s)" in message
    assert "no input 'missing'" in message
    assert "no output 'other'" in message


def test_an_inner_cycle_is_refused(pack):
    result = pack.executor().run(one("x.cycle"))
    assert result.status == "failed"
    assert "cycle" in result.error.message


def test_inner_output_nodes_run_and_show_their_data(pack):
    result = pack.executor().run(one("x.with_output", text="seen"))
    assert result.ui["s:shown"] == {"value": ["seen"]}
    assert result.ui["out"] == {"value": ["seen"]}


def test_a_parent_mapped_over_a_list_expands_once_per_element(pack):
    workflow = make_workflow(
        {
            "w": ("x.words", {"text": "a b"}),
            "s": ("x.shout", {"text": link("w", "string")}),
            "out": ("x.show", {"value": link("s", "string")}),
        }
    )
    result = pack.executor().run(workflow, outputs=["s"])
    assert result.outputs["s"]["string"] == ["A!", "B!"]
    assert {"s[0]:big", "s[1]:big"} <= set(result.executed)
