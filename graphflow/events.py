"""Typed events of a run: the one stream the CLI, the server and the tests all consume.

An observer is any callable taking one event. Every event has a ``type`` string and a
JSON-ready ``to_dict()`` (except the preview payload, which the server encodes itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all run events; ``run_id`` ties an event to its run."""

    type: ClassVar[str] = "event"
    run_id: str

    def to_dict(self) -> dict:
        """``{"type": ..., "data": {...}}`` as sent over the websocket."""
        names = _FIELD_NAMES.get(type(self))
        if names is None:  # once per event class: dataclasses.fields() is slow per call
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in fields(self))
        return {"type": self.type, "data": {name: getattr(self, name) for name in names}}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
"""Each event class's field names, in declaration order (filled on first use)."""


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    """A validated run begins; ``planned`` lists the nodes it may execute, in order."""

    type: ClassVar[str] = "run_started"
    planned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeCached(Event):
    """A node's outputs came from the cache; it did not execute."""

    type: ClassVar[str] = "node_cached"
    node: str = ""


@dataclass(frozen=True, slots=True)
class NodeStarted(Event):
    """A node begins executing."""

    type: ClassVar[str] = "node_started"
    node: str = ""
    node_type: str = ""


@dataclass(frozen=True, slots=True)
class Progress(Event):
    """A long node reports step ``value`` of ``total``.

    For a node mapped over lists (graphflow.mapping), ``elements`` is how many elements it
    runs and ``element`` the one a report belongs to; the node's own step reports keep
    ``unit == "step"``, and after each element the engine reports ``unit == "element"``
    with ``value`` elements done of ``total``. Unmapped nodes: ``element`` None, ``elements`` 0.
    """

    type: ClassVar[str] = "progress"
    node: str = ""
    value: int = 0
    total: int = 0
    unit: str = "step"
    element: int | None = None
    elements: int = 0


@dataclass(frozen=True, slots=True)
class Preview(Event):
    """A node shows an intermediate image (a tensor or PIL image; the consumer encodes it)."""

    type: ClassVar[str] = "preview"
    node: str = ""
    image: Any = None

    def to_dict(self) -> dict:
        """The image itself is not JSON; consumers send it separately."""
        return {"type": self.type, "data": {"run_id": self.run_id, "node": self.node}}


@dataclass(frozen=True, slots=True)
class NodeFinished(Event):
    """A node executed; ``seconds`` of wall time and peak device memory when known."""

    type: ClassVar[str] = "node_finished"
    node: str = ""
    seconds: float = 0.0
    peak_memory_bytes: int | None = None
    ui: dict | None = None


@dataclass(frozen=True, slots=True)
class RunFailed(Event):
    """A node raised; the run stopped there."""

    type: ClassVar[str] = "run_failed"
    node: str = ""
    exception_type: str = ""
    message: str = ""
    traceback: str = ""


@dataclass(frozen=True, slots=True)
class RunInterrupted(Event):
    """Someone asked the run to stop; ``node`` is where it stopped (empty between nodes)."""

    type: ClassVar[str] = "run_interrupted"
    node: str = ""


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    """The run completed: how many nodes executed or came from the cache, and wall time."""

    type: ClassVar[str] = "run_finished"
    executed: int = 0
    cached: int = 0
    seconds: float = 0.0


Observer = Callable[[Event], None]


@dataclass
class EventLog:
    """An observer that keeps every event (for tests and summaries)."""

    events: list[Event] = field(default_factory=list)

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of_type(self, kind: type[Event]) -> list[Any]:
        """The recorded events of one class, in order."""
        return [e for e in self.events if isinstance(e, kind)]

    def nodes(self, kind: type[Event]) -> list[str]:
        """The ``node`` field of the recorded events of one class, in order."""
        return [e.node for e in self.events if isinstance(e, kind)]
