"""The project's error vocabulary.

Problems a user can cause are values with a stable ``code`` (``missing_input``,
``type_mismatch``, ...) that the CLI, the server and the editor all render the same way.
Exceptions carry those values; nothing here ever asks for a traceback to be shown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
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


@dataclass(frozen=True, slots=True)
class GraphError:
    """One problem found in a workflow: what, where, and a sentence for a person."""

    code: ErrorCode
    message: str
    node: str | None = None
    input: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (the code as its string value)."""
        data = asdict(self)
        data["code"] = self.code.value
        return data

    def __str__(self) -> str:
        where = ""
        if self.node is not None:
            where = f"node {self.node!r}"
            if self.input is not None:
                where += f", input {self.input!r}"
            where = f"[{where}] "
        return f"{self.code.value}: {where}{self.message}"


class GraphflowError(Exception):
    """Base class for every error graphflow raises on purpose."""


class WorkflowFormatError(GraphflowError):
    """The workflow document cannot be read (bad JSON, wrong shape, unknown format)."""


class ValidationFailed(GraphflowError):
    """A workflow failed validation; ``errors`` lists every problem found."""

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
