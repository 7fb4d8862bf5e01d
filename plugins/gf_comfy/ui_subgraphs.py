"""ComfyUI subgraphs in the UI format: ``definitions.subgraphs`` expanded into one flat node
table (COMFY_COMPAT.md §4.2 and §4.3 step 1).

A subgraph definition is ``{id (a uuid), name, inputNode {id: -10}, outputNode {id: -20},
inputs [{name, type, ...}], outputs [...], nodes, links}``; an instance is a node whose
``type`` is that uuid. Expanding an instance puts its inner nodes in its place with ids
``"<instance id>:<inner id>"`` (nested: ``"60:70:52"``), the ids ComfyUI's own frontend
sends. An inner link from the input node (-10) slot k reads the instance's input named like
the definition's ``inputs[k]`` (its link, else the promoted widget value); whatever is
linked into the output node (-20) slot k is what the instance's output k gives.

Muted and bypassed instances are not expanded (they behave as one muted or bypassed node).
Definitions that contain each other in a cycle, nesting deeper than :data:`MAX_DEPTH`,
expansions of more than :data:`MAX_NODES` nodes and instances of a uuid no definition has
are :class:`~graphflow.errors.GraphError` problems, never a hang or a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from graphflow.errors import ErrorCode, GraphError

MUTED, BYPASSED = 2, 4
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = -10, -20
MAX_DEPTH = 32
"""How deep subgraph instances may nest."""
MAX_NODES = 100_000
"""How many nodes the expansion may produce (each nesting level multiplies them)."""
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

Source = tuple  # ("node", node id, slot) | ("value", value)


@dataclass
class FlatInput:
    """One input socket of a flattened node: its name, type, widget and where it comes from."""

    name: str
    type: str
    widget: str | None
    source: Source | None


@dataclass
class FlatNode:
    """A UI node after subgraph expansion, with its links resolved to (node id, slot).

    ``order`` sorts nodes as the frontend emits them: an inner node's order is its
    instance's order followed by its own, so it sits where the instance was.
    """

    id: str
    type: str
    mode: int
    title: str | None
    order: tuple[int, ...]
    inputs: list[FlatInput] = field(default_factory=list)
    output_types: list[str] = field(default_factory=list)
    widgets_values: Any = None
    named_values: Any = None
    proxy_widgets: bool = False  # [newer] subgraph instance whose inner nodes hold the values


def links_table(raw_links: Any) -> dict[Any, tuple[Any, int]]:
    """link id → (origin node id, origin slot), from arrays (0.4) or objects (schema 1)."""
    links: dict[Any, tuple[Any, int]] = {}
    for link in as_list(raw_links):
        if isinstance(link, list) and len(link) >= 5 and isinstance(link[0], (int, str)):
            links[link[0]] = (link[1], link[2])
        elif isinstance(link, dict) and isinstance(link.get("id"), (int, str)):
            links[link["id"]] = (link.get("origin_id"), link.get("origin_slot", 0))
    return links


def as_list(value: Any) -> list:
    """``value`` when it is a list, else an empty list (files in the wild have nulls)."""
    return value if isinstance(value, list) else []


def as_int(value: Any, default: int = 0) -> int:
    """``value`` when it is an int (not a bool), else ``default``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def is_widget_type(type_name: str) -> bool:
    """True for the socket types whose unlinked subgraph inputs are promoted widgets."""
    return type_name in WIDGET_TYPES or type_name == "COMBO"


def subgraph_definitions(workflow: dict) -> dict[str, dict]:
    """``definitions.subgraphs`` as uuid → definition (malformed entries left out)."""
    definitions = workflow.get("definitions") or {}
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    return {
        s["id"]: s
        for s in as_list(subgraphs)
        if isinstance(s, dict) and isinstance(s.get("id"), str)
    }


@dataclass
class _Work:
    prefix: str
    raw_nodes: list
    raw_links: Any
    instance: FlatNode | None
    definition: dict | None
    chain: tuple[str, ...]


class Flattener:
    """Expands subgraph instances (iteratively) into one flat node table: ``nodes`` (flat
    id → node) and ``aliases`` ((instance id, output slot) → the source feeding it)."""

    def __init__(self, workflow: dict, problems: list[GraphError]):
        self.subgraphs = subgraph_definitions(workflow)
        self.nodes: dict[str, FlatNode] = {}
        self.aliases: dict[tuple[str, int], Source | None] = {}
        self.problems = problems
        self.count = 0

    def run(self, workflow: dict) -> None:
        """Flatten the workflow's nodes and those of every subgraph instance, depth first."""
        work = [_Work("", as_list(workflow.get("nodes")), workflow.get("links"), None, None, ())]
        while work:
            item = work.pop()
            links = links_table(item.raw_links)
            for position, raw in enumerate(item.raw_nodes):
                if not isinstance(raw, dict) or "id" not in raw:
                    continue
                self.count += 1
                if self.count > MAX_NODES:
                    self._problem(
                        ErrorCode.INVALID_DOCUMENT,
                        f"the subgraphs expand to more than {MAX_NODES:,} nodes",
                        None,
                    )
                    return
                node = self._flat(item, raw, links, position)
                inner = self._expansion(node, item)
                if inner is None:
                    self.nodes[node.id] = node
                elif inner is not False:
                    work.append(inner)

    def _expansion(self, node: FlatNode, parent: _Work) -> _Work | bool | None:
        """The work of expanding ``node`` (None: not an instance; False: a problem)."""
        sub = self.subgraphs.get(node.type)
        if sub is None:
            if _UUID.match(node.type):
                self._problem(
                    ErrorCode.UNKNOWN_NODE_TYPE,
                    f"node type {node.type!r} is a subgraph id, but the workflow's "
                    "definitions.subgraphs has no such subgraph",
                    node.id,
                )
                return False
            return None
        if node.mode in (MUTED, BYPASSED):
            return None
        if node.type in parent.chain:
            names = [self._name(u) for u in parent.chain[parent.chain.index(node.type) :]]
            self._problem(
                ErrorCode.CYCLE,
                "subgraphs contain each other in a cycle: "
                + " → ".join([*names, self._name(node.type)]),
                node.id,
            )
            return False
        if len(parent.chain) >= MAX_DEPTH:
            self._problem(
                ErrorCode.INVALID_DOCUMENT, f"subgraphs nest more than {MAX_DEPTH} deep", node.id
            )
            return False
        self._alias_outputs(node, sub)
        return _Work(
            node.id + ":",
            as_list(sub.get("nodes")),
            sub.get("links"),
            node,
            sub,
            (*parent.chain, node.type),
        )

    def _name(self, uuid: str) -> str:
        name = self.subgraphs.get(uuid, {}).get("name")
        return name if isinstance(name, str) and name else uuid

    def _problem(self, code: ErrorCode, message: str, node_id: str | None) -> None:
        self.problems.append(GraphError(code, message, node_id))

    def _flat(self, work: _Work, raw: dict, links: dict, position: int) -> FlatNode:
        base = work.instance.order if work.instance is not None else ()
        node = FlatNode(
            id=work.prefix + str(raw["id"]),
            type=str(raw.get("type", "")),
            mode=as_int(raw.get("mode")),
            title=raw.get("title") if isinstance(raw.get("title"), str) else None,
            order=(*base, as_int(raw.get("order"), position), position),
            widgets_values=raw.get("widgets_values"),
            named_values=raw.get("widgets_values_named"),
        )
        properties = raw.get("properties")
        node.proxy_widgets = isinstance(properties, dict) and "proxyWidgets" in properties
        for item in as_list(raw.get("inputs")):
            if not isinstance(item, dict):
                continue
            widget = item.get("widget")
            widget_name = widget.get("name") if isinstance(widget, dict) else None
            link_id = item.get("link")
            link = links.get(link_id) if isinstance(link_id, (int, str)) else None
            source = None if link is None else self._source(work, link)
            node.inputs.append(
                FlatInput(
                    str(item.get("name", "")), str(item.get("type", "*")), widget_name, source
                )
            )
        for item in as_list(raw.get("outputs")):
            node.output_types.append(str(item.get("type", "*")) if isinstance(item, dict) else "*")
        return node

    def _source(self, work: _Work, link: tuple) -> Source | None:
        origin, slot = link
        if origin == SUBGRAPH_INPUT and work.instance is not None:
            return self._from_instance_input(work.instance, work.definition, as_int(slot))
        return ("node", work.prefix + str(origin), as_int(slot))

    def _from_instance_input(self, instance: FlatNode, definition: dict, slot: int):
        """An inner link from the input node: the instance's input of that name (linked →
        its source; an unlinked widget-type input → the instance's promoted widget value)."""
        sub_inputs = [i for i in as_list(definition.get("inputs")) if isinstance(i, dict)]
        if not 0 <= slot < len(sub_inputs):
            return None
        name = sub_inputs[slot].get("name")
        for item in instance.inputs:
            if item.name == name and item.source is not None:
                return item.source
        widget_inputs = [i for i in sub_inputs if is_widget_type(str(i.get("type", "")))]
        values = None if instance.proxy_widgets else instance.widgets_values
        if sub_inputs[slot] in widget_inputs and isinstance(values, list):
            index = widget_inputs.index(sub_inputs[slot])
            if index < len(values):
                return ("value", values[index])
        return None

    def _alias_outputs(self, instance: FlatNode, definition: dict) -> None:
        """Instance output k → whatever feeds the subgraph's output node slot k."""
        inner = _Work(instance.id + ":", [], None, instance, definition, ())
        for link in as_list(definition.get("links")):
            if isinstance(link, dict):
                target, target_slot = link.get("target_id"), link.get("target_slot", 0)
                origin, origin_slot = link.get("origin_id"), link.get("origin_slot", 0)
            elif isinstance(link, list) and len(link) >= 5:
                origin, origin_slot, target, target_slot = link[1], link[2], link[3], link[4]
            else:
                continue
            if target != SUBGRAPH_OUTPUT:
                continue
            source = self._source(inner, (origin, origin_slot))
            self.aliases[(instance.id, as_int(target_slot))] = source
