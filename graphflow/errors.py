"""The project's vocabulary of outcomes: error codes, run and job statuses.

Problems a user can cause are values with a stable ``code`` (``missing_input``,
``type_mismatch``, ...) that the CLI, the server and the editor all render the same way.
Exceptions carry those values; nothing here ever asks for a traceback to be shown.

Statuses and codes are ``str`` enums: a member equals its string (``RunStatus.FAILED ==
"failed"``), prints as it (``str()``, f-strings) and is written as it in JSON, so the wire
format and stored records are the plain strings they always were.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ErrorCode(str, Enum):
    """Stable codes for everything a workflow can get wrong."""

    UNKNOWN_NODE_TYPE = "unknown_node_type"
    """A node names a type that no loaded plugin registers."""
    UNKNOWN_INPUT = "unknown_input"
    """A node sets an input its type does not have."""
    MISSING_INPUT = "missing_input"
    """A required input is neither linked nor given a value."""
    LINK_MISSING_NODE = "link_missing_node"
    """A link points at a node id that is not in the workflow."""
    LINK_MISSING_OUTPUT = "link_missing_output"
    """A link points at an output name the source node does not have."""
    TYPE_MISMATCH = "type_mismatch"
    """A link joins an output and an input whose port types are incompatible."""
    INVALID_LITERAL = "invalid_literal"
    """A literal value has the wrong type, or the input only takes links."""
    OUT_OF_RANGE = "out_of_range"
    """A number is below the input's minimum or above its maximum."""
    NOT_IN_CHOICES = "not_in_choices"
    """A value is not one of the input's allowed choices."""
    INVALID_INPUT = "invalid_input"
    """A node's own input check rejected a value."""
    CYCLE = "cycle"
    """Links form a cycle; the message names the nodes on it."""
    NO_OUTPUT = "no_output"
    """The workflow has no output node, so running it would do nothing."""
    UNKNOWN_OUTPUT = "unknown_output"
    """A requested output node does not exist or is not an output node."""
    INVALID_DOCUMENT = "invalid_document"
    """The file is not a well-formed workflow document."""


class _Word(str, Enum):
    """A ``str`` enum whose ``str()`` and f-string form is its value (as on every Python)."""

    def __str__(self) -> str:
        return str(self.value)

    __format__ = str.__format__


class RunStatus(_Word):
    """How a run of :meth:`graphflow.executor.Executor.run` stands (``RunResult.status``)."""

    RUNNING = "running"
    """The run is executing (only seen by code that looks at a result mid-run)."""
    FINISHED = "finished"
    """Every requested output was computed."""
    FAILED = "failed"
    """A node raised; ``RunResult.error`` says which and why."""
    INTERRUPTED = "interrupted"
    """The run's cancel token was cancelled (or ``Executor.interrupt()`` was called)."""


class JobStatus(_Word):
    """Where a job is in its life (a job: one run asked of a queue, e.g. ``POST /api/prompt``)."""

    PENDING = "pending"
    """Accepted and waiting for the worker."""
    RUNNING = "running"
    """Claimed by a worker and executing."""
    DONE = "done"
    """The run finished; ``result`` holds its ui data."""
    FAILED = "failed"
    """The run failed (a node raised, the workflow no longer validates, a restart cut it)."""
    CANCELLED = "cancelled"
    """Cancelled while pending, or interrupted while running."""

    @property
    def finished(self) -> bool:
        """True for the three terminal states."""
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class JobErrorCode(_Word):
    """Stable ``error.code`` values of a job that did not end ``done``."""

    NODE_FAILED = "node_failed"
    """A node raised while the job ran; the error names the node and the exception."""
    INTERRUPTED = "interrupted"
    """Interrupted (``POST /api/interrupt``, a shutdown) before or while it ran."""
    CANCELLED = "cancelled"
    """Cancelled while still pending (``DELETE``/``POST /api/queue``)."""
    VALIDATION_FAILED = "validation_failed"
    """The workflow no longer validates where it was run; ``errors`` lists the problems."""
    INVALID_DOCUMENT = "invalid_document"
    """The stored workflow document could not be read back."""
    WORKER_ERROR = "worker_error"
    """Something outside any node went wrong while running the job (a bug, a refused
    hand-over, SystemExit from plugin code); the job's worker keeps running."""
    WORKER_LOST = "worker_lost"
    """The job's remote worker died on every attempt, or none could be started."""
    INTERRUPTED_BY_RESTART = "interrupted_by_restart"
    """The job was running when the server stopped without finishing it."""


@dataclass(frozen=True, slots=True)
class GraphError:
    """One problem found in a workflow: what, where, and a sentence for a person.

    ``node`` is the id in the graph that runs: inside a subgraph that is the id with the
    nesting path, ``"12:3"`` for inner node 3 of subgraph node 12, and ``path`` then holds
    the ids along the nesting, ``("12", "3")`` (empty for a node of the workflow itself).
    """

    code: ErrorCode
    message: str
    node: str | None = None
    input: str | None = None
    path: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """JSON-ready form (the code as its string value; ``path`` only inside subgraphs)."""
        data = {
            "code": self.code.value,
            "message": self.message,
            "node": self.node,
            "input": self.input,
        }
        if self.path:
            data["path"] = list(self.path)
        return data

    @property
    def where(self) -> str:
        """Where the problem is, in words: ``node '5'`` or, inside subgraphs,
        ``outer node 12 › inner node 3`` (with ``, input 'x'`` when an input is named)."""
        if self.node is None:
            return ""
        if len(self.path) > 1:
            inner = " › ".join(f"inner node {part}" for part in self.path[1:])
            where = f"outer node {self.path[0]} › {inner}"
        else:
            where = f"node {self.node!r}"
        if self.input is not None:
            where += f", input {self.input!r}"
        return where

    def __str__(self) -> str:
        where = self.where
        prefix = f"[{where}] " if where else ""
        return f"{self.code.value}: {prefix}{self.message}"


class GraphflowError(Exception):
    """Base class for every error graphflow raises on purpose."""


class WorkflowFormatError(GraphflowError):
    """The workflow document cannot be read (bad JSON, wrong shape, unknown format)."""


class ValidationFailed(GraphflowError):
    """A workflow failed validation; ``errors`` lists every problem found."""

    read_as: str | None = None
    """For a foreign document an importer refused: what it was read as (``ComfyUI API
    format``), so the CLI can say so as it does for one that imports."""

    def __init__(self, errors: list[GraphError]):
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"workflow has {len(self.errors)} problem(s):\n{lines}")


class DuplicateNodeError(GraphflowError):
    """Two plugins register the same node id."""


class DuplicateTypeError(GraphflowError):
    """Two plugins register the same port type name with different definitions."""


class Interrupted(GraphflowError):
    """Raised inside a run when someone asked it to stop."""
