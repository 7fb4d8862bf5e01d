"""Lists flowing through a graph: a node maps over list inputs, collects them, or returns them.

A :class:`ValueList` is a run-time value (validation sees only port types): a node makes one
by returning a list at an output declared ``output_is_list``, or by being mapped. The rules:

- **Mapping.** A ValueList reaching an ordinary input makes the node run once per element;
  each output becomes a ValueList of the per-element results. Several list inputs are zipped;
  lists of different lengths are an error (:class:`ListLengthError`) unless the node says
  ``unequal_lists="repeat_last"`` (ComfyUI's rule: run as often as the longest list, a shorter
  list repeats its last element). Inputs that are not lists are used by every element.
- **Collecting.** An input declared ``input_is_list`` gets the whole list (a single value as a
  one-element list) and the node is not mapped over it.
- **Returning lists.** An output declared ``output_is_list`` must be given a list; when the
  node is also mapped, the lists of its calls are joined into one (ComfyUI's flattening).
- A plain Python ``list`` (a CONDITIONING value, say) is one value, never mapped over.

Each element has a key (an element signature): a mapped call is hashed from the keys of its
inputs, so re-running with one element changed computes that element only and takes the
others from the cache. Element keys of list outputs are the values themselves for plain
scalars (str, int, float, bool, None) and the producing call's signature plus the position
for anything else (see docs/lists.md).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .cache import LOCAL_PREFIX, _stable_text, node_signature
from .context import NodeContext, RunServices
from .errors import GraphflowError
from .events import NodeFinished, NodeStarted, Progress
from .node import NodeSpec, UnequalLists
from .value_codec import register_codec

if TYPE_CHECKING:
    from .cache import CacheEntry


class ValueList(list):
    """A list of values travelling along one link; an ordinary input maps over it.

    ``keys`` holds one identity (element signature) per element, so each element caches on
    its own. A list built by hand gets keys from its scalar values, else unique ones.
    """

    def __init__(self, items: Iterable[Any] = (), keys: Iterable[str] | None = None):
        super().__init__(items)
        if keys is None:
            keys = (content_key(v) or f"{LOCAL_PREFIX}{id(self):x}:{i}" for i, v in enumerate(self))
        self.keys: tuple[str, ...] = tuple(keys)
        if len(self.keys) != len(self):
            raise ValueError(f"ValueList of {len(self)} values has {len(self.keys)} keys")

    def __repr__(self) -> str:
        return f"ValueList({list.__repr__(self)})"


register_codec(
    ValueList,
    "graphflow.ValueList",
    lambda values: {"items": list(values), "keys": list(values.keys)},
    lambda data: ValueList(data["items"], data["keys"]),
)


class ListLengthError(GraphflowError):
    """A node is mapped over lists of different lengths (and its rule is ``error``)."""

    def __init__(self, node_id: str, spec: NodeSpec, lengths: Mapping[str, int]):
        self.node = node_id
        self.lengths = dict(lengths)
        sizes = ", ".join(f"{name} has {size}" for name, size in lengths.items())
        super().__init__(
            f"node {node_id!r} ({spec.id}) is mapped over lists of different lengths: {sizes} "
            "elements; give lists of one length, or a single value to use for every element"
        )


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


_SCALARS = (str, int, float, bool, type(None))


def content_key(value: Any) -> str | None:
    """The key of a plain scalar element (its type and value), else None."""
    if type(value) in _SCALARS:
        return "=" + _digest(f"{type(value).__name__}:{value!r}")
    return None


def literal_key(value: Any) -> str:
    """The key of a literal input value (process-local when it has no stable text)."""
    text, portable = _stable_text({"literal": value})
    return ("" if portable else LOCAL_PREFIX) + "=" + _digest(text)


def list_key(keys: Iterable[str]) -> str:
    """One key for a whole list (what a collect input received)."""
    keys = list(keys)
    local = any(key.startswith(LOCAL_PREFIX) for key in keys)
    return (LOCAL_PREFIX if local else "") + "[" + _digest("\x1f".join(keys))


def input_keys(kwargs: Mapping[str, Any], link_keys: Mapping[str, str]) -> dict[str, str]:
    """A key per input as the node received it: the link's signature and output for a
    linked value, the list key for a ValueList, the value itself for a literal."""
    keys = {}
    for name, value in kwargs.items():
        if type(value) is ValueList:
            keys[name] = list_key(value.keys)
        elif name in link_keys:
            keys[name] = link_keys[name]
        else:
            keys[name] = literal_key(value)
    return keys


def call_signature(spec: NodeSpec, keys: Mapping[str, str], fingerprint: object, nonce: str) -> str:
    """The signature of one call of a node from the keys of its inputs."""
    links = [(name, key, "") for name, key in keys.items()]
    return node_signature(spec, {}, links, fingerprint, nonce)


@dataclass
class CallPlan:
    """How a node runs over list inputs: each call's keyword arguments and input keys;
    ``mapped`` when its outputs become lists."""

    calls: list[dict[str, Any]]
    keys: list[dict[str, str]]
    mapped: bool


def plan_calls(
    node_id: str, spec: NodeSpec, kwargs: dict[str, Any], link_keys: Mapping[str, str]
) -> CallPlan | None:
    """The calls of a node given its resolved inputs, or None for one plain call (no list
    reaches it and it collects none, the common case: checked with no allocation)."""
    collect = spec.list_inputs
    if not collect and not any(type(v) is ValueList for v in kwargs.values()):
        return None
    keys = input_keys(kwargs, link_keys)
    base = dict(kwargs)
    mapped: dict[str, ValueList] = {}
    for name, value in kwargs.items():
        if name in collect:
            base[name] = list(value) if type(value) is ValueList else [value]
            if type(value) is not ValueList:
                keys[name] = list_key([keys[name]])
        elif type(value) is ValueList:
            mapped[name] = value
    if not mapped:
        return CallPlan([base], [keys], mapped=False)
    count = _call_count(node_id, spec, {name: len(v) for name, v in mapped.items()})
    calls, call_keys = [], []
    for index in range(count):
        call, key = dict(base), dict(keys)
        for name, values in mapped.items():
            at = min(index, len(values) - 1)
            value = values[at]
            if type(value) is int and name in spec.float_inputs:
                value = float(value)
            call[name], key[name] = value, values.keys[at]
        calls.append(call)
        call_keys.append(key)
    return CallPlan(calls, call_keys, mapped=True)


def _call_count(node_id: str, spec: NodeSpec, lengths: dict[str, int]) -> int:
    if len(set(lengths.values())) == 1:
        return next(iter(lengths.values()))
    if spec.unequal_lists is UnequalLists.REPEAT_LAST and min(lengths.values()) > 0:
        return max(lengths.values())
    raise ListLengthError(node_id, spec, lengths)


def list_outputs(spec: NodeSpec, outputs: dict[str, Any], base_key: str) -> dict[str, Any]:
    """Wrap the values of ``output_is_list`` outputs as ValueLists with element keys."""
    for name in spec.list_outputs:
        value = outputs[name]
        if not isinstance(value, (list, tuple)):
            raise TypeError(
                f"node {spec.id} declares output {name!r} a list (output_is_list) but "
                f"returned {type(value).__name__}; return a list there"
            )
        keys = [content_key(v) or f"{base_key}:{name}:{i}" for i, v in enumerate(value)]
        outputs[name] = ValueList(value, keys)
    return outputs


def merge_outputs(
    spec: NodeSpec, results: list[dict[str, Any]], call_keys: list[str]
) -> dict[str, ValueList]:
    """Each output of a mapped node as one ValueList over its calls (list outputs joined)."""
    merged = {}
    for port in spec.outputs:
        items: list[Any] = []
        keys: list[str] = []
        for outputs, call_key in zip(results, call_keys, strict=True):
            value = outputs[port.name]
            if port.is_list:
                items.extend(value)
                keys.extend(value.keys)
            else:
                items.append(value)
                keys.append(f"{call_key}:{port.name}")
        merged[port.name] = ValueList(items, keys)
    return merged


def merge_ui(uis: Iterable[dict | None]) -> dict | None:
    """Display data of a mapped node: the lists of each key joined in element order."""
    merged: dict[str, list] | None = None
    for ui in uis:
        if ui is None:
            continue
        merged = {} if merged is None else merged
        for key, value in ui.items():
            target = merged.setdefault(key, [])
            target.extend(value) if isinstance(value, list) else target.append(value)
    return merged


class ElementContext(NodeContext):
    """The context of one element's call: its step reports name the element."""

    __slots__ = ("element", "elements")

    def __init__(self, run: RunServices, node_id: str, element: int, elements: int):
        super().__init__(run, node_id)
        self.element = element
        self.elements = elements

    def progress(self, value: int, total: int) -> None:
        """Report step ``value`` of ``total`` of this element; also checks interrupt."""
        run = self._run
        run.emit(
            Progress(
                run.run_id,
                self.node_id,
                int(value),
                int(total),
                element=self.element,
                elements=self.elements,
            )
        )
        self.check_interrupt()


class ElementRunner(Protocol):
    """What :func:`run_mapped` needs of the executor's run."""

    run_id: str
    services: RunServices

    def emit(self, event: Any) -> None:
        """Send an event to the run's observers."""

    def invoke(
        self, node_id: str, spec: NodeSpec, kwargs: dict, keys: dict, context: Any, key: str
    ) -> tuple[dict[str, Any], dict | None]:
        """Call the node once (expansions included); packed outputs and ui."""

    def element_entry(self, node_id: str, key: str) -> CacheEntry | None:
        """A cached element, if any."""

    def store_element(self, node_id: str, key: str, outputs: dict, ui, seconds: float) -> None:
        """Keep one element's outputs."""

    def element_nonce(self, node_id: str) -> tuple[object, str]:
        """The node's fingerprint and the nonce of its calls."""

    def record_elements(self, node_id: str, ran: list[int], cached: list[int]) -> None:
        """Note which elements ran and which came from the cache."""


def run_mapped(
    run: ElementRunner, node_id: str, spec: NodeSpec, plan: CallPlan
) -> tuple[dict[str, Any], dict | None, float]:
    """Run a mapped node element by element: each element from the cache when its key is
    there, else called and stored; an ``element`` progress report after each."""
    count = len(plan.calls)
    run.emit(NodeStarted(run.run_id, node_id, spec.id))
    fingerprint, nonce = run.element_nonce(node_id)
    results, uis, call_keys, ran, cached = [], [], [], [], []
    seconds = 0.0
    for index, (kwargs, keys) in enumerate(zip(plan.calls, plan.keys, strict=True)):
        key = call_signature(spec, keys, fingerprint, nonce)
        entry = run.element_entry(node_id, key) if spec.idempotent else None
        if entry is not None:
            outputs, ui = entry.outputs, entry.ui
            cached.append(index)
        else:
            context = ElementContext(run.services, node_id, index, count)
            began = time.perf_counter()
            outputs, ui = run.invoke(node_id, spec, kwargs, keys, context, key)
            spent = time.perf_counter() - began
            seconds += spent
            if spec.idempotent:
                run.store_element(node_id, key, outputs, ui, spent)
            ran.append(index)
        results.append(outputs)
        uis.append(ui)
        call_keys.append(key)
        run.emit(
            Progress(
                run.run_id,
                node_id,
                index + 1,
                count,
                unit="element",
                element=index,
                elements=count,
            )
        )
    run.record_elements(node_id, ran, cached)
    merged_ui = merge_ui(uis)
    run.emit(NodeFinished(run.run_id, node_id, seconds, None, merged_ui))
    return merge_outputs(spec, results, call_keys), merged_ui, seconds
