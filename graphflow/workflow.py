"""Workflow documents: the versioned JSON format, loading, saving and migrations.

A document looks like::

    {
      "format": "graphflow/1",
      "nodes": {
        "width": {"type": "core.int", "inputs": {"value": 512}},
        "double": {"type": "core.multiply", "inputs": {"a": {"link": ["width", "int"]}, "b": 2}}
      },
      "editor": {"positions": {"width": [0, 0]}}
    }

Inputs are literal JSON values or links ``{"link": [node_id, output_name]}``. The optional
``subgraphs`` section defines workflows used as one node (``{"type": "subgraph",
"subgraph": id}``; see graphflow.subgraphs, which flattens them before validation). The
optional ``editor`` section holds what only the editor cares about (positions, groups,
viewport) and never affects a run. Saving a loaded document gives the same bytes back.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    StrictInt,
    StrictStr,
)
from pydantic import ValidationError as PydanticValidationError

from .errors import WorkflowFormatError
from .gcpause import gc_paused
from .pngmeta import PngMetadataError, is_png, workflow_text_from_png

if TYPE_CHECKING:
    from .registry import Registry

CURRENT_FORMAT = "graphflow/1"


class Link(BaseModel):
    """A link from another node's named output: ``{"link": [node_id, output_name]}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    link: tuple[str, str] = Field(description="[source node id, source output name]")

    @property
    def node(self) -> str:
        """The id of the source node."""
        return self.link[0]

    @property
    def output(self) -> str:
        """The name of the source node's output."""
        return self.link[1]


InputValue = Annotated[Link | JsonValue, Field(union_mode="left_to_right")]


class NodeEntry(BaseModel):
    """One node of a workflow: its type, its inputs, and an optional display title.

    A node of type ``subgraph`` runs a subgraph: ``subgraph`` names one defined in the
    document's ``subgraphs`` section, or ``file`` names a workflow file whose ``subgraphs``
    section holds it (``subgraph`` may then be left out when the file defines only one).
    """

    model_config = ConfigDict(extra="forbid")
    type: str = Field(description="Registered node id, e.g. 'core.add', or 'subgraph'")
    subgraph: str | None = Field(
        default=None, description="For type 'subgraph': the id of the subgraph it runs"
    )
    file: str | None = Field(
        default=None,
        description="For type 'subgraph': a workflow file (relative to this one) defining it",
    )
    inputs: dict[str, InputValue] = Field(default_factory=dict)
    title: str | None = Field(default=None, description="Title shown in the editor")

    def to_dict(self) -> dict:
        """The entry as it is written to disk (no title key when there is none)."""
        data: dict[str, Any] = {"type": self.type}
        if self.subgraph is not None:
            data["subgraph"] = self.subgraph
        if self.file is not None:
            data["file"] = self.file
        data["inputs"] = _inputs_to_dict(self.inputs)
        if self.title is not None:
            data["title"] = self.title
        return data


def _inputs_to_dict(inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {"link": list(value.link)} if isinstance(value, Link) else value
        for name, value in inputs.items()
    }


class SubgraphInput(BaseModel):
    """One typed input a subgraph declares; inner nodes read it as ``{"link": ["$in", name]}``."""

    model_config = ConfigDict(extra="forbid")
    name: str
    type: str = Field(description="Port type, e.g. 'IMAGE' or 'FLOAT'")
    default: JsonValue = Field(
        default=None, description="Value used when the subgraph node leaves it unset"
    )
    description: str | None = None

    @property
    def has_default(self) -> bool:
        """True when the document gives a default (the input may then be left unset)."""
        return "default" in self.model_fields_set

    def to_dict(self) -> dict:
        """The input as it is written to disk."""
        data: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.has_default:
            data["default"] = self.default
        if self.description is not None:
            data["description"] = self.description
        return data


class SubgraphOutput(BaseModel):
    """One output a subgraph declares: which inner node's output it passes on."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str
    source: tuple[str, str] = Field(
        alias="from", description="[inner node id, output name] (or ['$in', input name])"
    )
    type: str | None = Field(
        default=None, description="Port type; when given, the inner output must fit it"
    )

    def to_dict(self) -> dict:
        """The output as it is written to disk."""
        data: dict[str, Any] = {"name": self.name, "from": list(self.source)}
        if self.type is not None:
            data["type"] = self.type
        return data


class Subgraph(BaseModel):
    """A workflow used as one node: typed inputs, outputs taken from inner nodes, nodes."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, description="Name shown in the editor")
    description: str | None = None
    inputs: list[SubgraphInput] = Field(default_factory=list)
    outputs: list[SubgraphOutput] = Field(default_factory=list)
    nodes: dict[str, NodeEntry] = Field(description="Inner node id → node")
    editor: dict[str, JsonValue] | None = Field(
        default=None, description="Editor-only data of the inner graph; never affects a run"
    )

    def to_dict(self) -> dict:
        """The subgraph as it is written to disk, keys in a fixed order."""
        data: dict[str, Any] = {}
        if self.title is not None:
            data["title"] = self.title
        if self.description is not None:
            data["description"] = self.description
        data["inputs"] = [item.to_dict() for item in self.inputs]
        data["outputs"] = [item.to_dict() for item in self.outputs]
        data["nodes"] = {node_id: entry.to_dict() for node_id, entry in self.nodes.items()}
        if self.editor is not None:
            data["editor"] = self.editor
        return data


class Workflow(BaseModel):
    """A whole workflow document (format ``graphflow/1``)."""

    model_config = ConfigDict(
        extra="forbid",
        title="graphflow workflow",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )
    format: str = Field(default=CURRENT_FORMAT, pattern=r"^graphflow/1$")
    nodes: dict[str, NodeEntry] = Field(description="Node id → node")
    subgraphs: dict[str, Subgraph] | None = Field(
        default=None, description="Subgraph id → subgraph, run by nodes of type 'subgraph'"
    )
    editor: dict[str, JsonValue] | None = Field(
        default=None,
        description="Editor-only data (positions, groups, viewport); never affects a run",
    )
    _base_dir: Path | None = PrivateAttr(default=None)
    _file_root: Path | None = PrivateAttr(default=None)

    @property
    def base_dir(self) -> Path | None:
        """The folder ``file`` references of subgraph nodes are relative to (the folder of
        the file this document was read from; None: the current directory)."""
        return self._base_dir

    @base_dir.setter
    def base_dir(self, folder: str | Path | None) -> None:
        self._base_dir = None if folder is None else Path(folder)

    @property
    def file_root(self) -> Path | None:
        """When set, subgraph ``file`` references must lie inside this folder (the server
        sets its workflows folder, so a posted document cannot read other files)."""
        return self._file_root

    @file_root.setter
    def file_root(self, folder: str | Path | None) -> None:
        self._file_root = None if folder is None else Path(folder).resolve()

    def confine_files(self, folder: str | Path) -> None:
        """Resolve subgraph ``file`` references in ``folder`` and refuse any outside it."""
        self.base_dir = folder
        self.file_root = folder

    def __eq__(self, other: object) -> bool:
        """Documents are equal when their content is (wherever they were read from)."""
        if not isinstance(other, Workflow):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable, like every pydantic model

    def to_dict(self) -> dict:
        """The document as plain JSON data, keys in a fixed order."""
        data: dict[str, Any] = {
            "format": self.format,
            "nodes": {node_id: entry.to_dict() for node_id, entry in self.nodes.items()},
        }
        if self.subgraphs is not None:
            data["subgraphs"] = {key: sub.to_dict() for key, sub in self.subgraphs.items()}
        if self.editor is not None:
            data["editor"] = self.editor
        return data

    def set_input(self, node_id: str, name: str, value: Any) -> None:
        """Set one input to a literal value (``--set node.input=value``)."""
        if node_id not in self.nodes:
            known = ", ".join(sorted(self.nodes)) or "none"
            raise WorkflowFormatError(f"no node {node_id!r} in this workflow (nodes: {known})")
        if _path_of_unencodable(value) is not None or not _is_utf8(name):
            raise WorkflowFormatError(f"the value for {node_id}.{name} is not valid Unicode text")
        self.nodes[node_id].inputs[name] = value


# -- migrations -------------------------------------------------------------------------------

MIGRATIONS: dict[str, Callable[[dict], dict]] = {}
"""Format → function upgrading a document to the next format. A migration gets a copy of a
document of any shape (it has only been checked to be an object with that "format") and
raises WorkflowFormatError for one it cannot read."""


def _short(value: Any) -> str:
    """A repr for messages, cut to 60 characters (document values can be megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def migration(from_format: str) -> Callable[[Callable[[dict], dict]], Callable[[dict], dict]]:
    """Register a function that upgrades a document from ``from_format`` to the next format."""

    def register(function: Callable[[dict], dict]) -> Callable[[dict], dict]:
        if from_format in MIGRATIONS:
            raise ValueError(f"a migration from {from_format!r} is already registered")
        MIGRATIONS[from_format] = function
        return function

    return register


class _PrototypeNode(BaseModel):
    """One node of a graphflow/0 document (keys the prototype did not use are ignored)."""

    id: StrictStr | StrictInt
    type: str
    values: dict[str, JsonValue] = Field(default_factory=dict)
    pos: list[JsonValue] | None = None
    title: str | None = None


class _PrototypeDocument(BaseModel):
    """A graphflow/0 document: nodes as a list, links as ``[source, output, target, input]``."""

    nodes: list[_PrototypeNode] = Field(default_factory=list)
    links: list[tuple[StrictStr | StrictInt, str, StrictStr | StrictInt, str]] = Field(
        default_factory=list
    )


@migration("graphflow/0")
def _from_prototype_layout(doc: dict) -> dict:
    """graphflow/0 (the prototype): nodes as a list with ``values`` and ``pos``, links apart.

    ``{"nodes": [{"id", "type", "values", "pos", "title"?}], "links": [[src, out, dst, in]]}``
    becomes node ids → entries with links inline, positions moved to the editor section.
    """
    try:
        old = _PrototypeDocument.model_validate(doc)
    except PydanticValidationError as error:
        raise WorkflowFormatError(
            "not a valid graphflow/0 document:\n" + _format_pydantic(error)
        ) from None
    nodes: dict[str, dict] = {}
    positions: dict[str, list] = {}
    for item in old.nodes:
        node_id = str(item.id)
        entry: dict[str, Any] = {"type": item.type, "inputs": dict(item.values)}
        if item.title is not None:
            entry["title"] = item.title
        nodes[node_id] = entry
        if item.pos is not None:
            positions[node_id] = list(item.pos)
    for source, output, target, name in old.links:
        if str(target) not in nodes:
            raise WorkflowFormatError(f"graphflow/0 link into unknown node {_short(target)}")
        nodes[str(target)]["inputs"][name] = {"link": [str(source), output]}
    migrated: dict[str, Any] = {"format": "graphflow/1", "nodes": nodes}
    if positions:
        migrated["editor"] = {"positions": positions}
    return migrated


def migrate(doc: dict) -> dict:
    """Upgrade a document dict to the current format (a copy; the input is not changed)."""
    fmt = doc.get("format")
    if fmt == CURRENT_FORMAT:
        return doc
    doc = copy.deepcopy(doc)
    seen: set[str] = set()
    while fmt != CURRENT_FORMAT:
        if not isinstance(fmt, str):
            raise WorkflowFormatError(
                f'"format" must be a string such as "{CURRENT_FORMAT}", '
                f"got {type(fmt).__name__} {_short(fmt)}"
            )
        if fmt in seen or fmt not in MIGRATIONS:
            known = ", ".join(sorted([*MIGRATIONS, CURRENT_FORMAT]))
            raise WorkflowFormatError(
                f"unknown workflow format {_short(fmt)} (this graphflow reads: {known})"
            )
        seen.add(fmt)
        doc = MIGRATIONS[fmt](doc)
        fmt = doc.get("format")
    return doc


# -- load / save ------------------------------------------------------------------------------


def _format_pydantic(error: PydanticValidationError) -> str:
    lines = []
    for item in error.errors()[:20]:
        where = ".".join(_cut(str(p), 40) for p in item["loc"]) or "document"
        lines.append(f"  - {where}: {item['msg']}")
    more = len(error.errors()) - 20
    if more > 0:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unencodable_text(doc: object) -> str | None:
    """Where the first string (key or value) UTF-8 cannot encode is, or None when none is.

    ``doc`` has passed validation, so it is plain JSON data: pydantic's JSON encoder (native
    code, a few milliseconds for 10,000 nodes) fails on it only for such a string.
    """
    try:
        pydantic_core.to_json(doc)
    except pydantic_core.PydanticSerializationError:
        return _path_of_unencodable(doc)
    return None


def _path_of_unencodable(doc: object) -> str | None:
    """The slow pass, for a document known to hold such a string: say where it is."""
    stack: list[tuple[tuple[str, ...], object]] = [((), doc)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str) and not _is_utf8(item):
            return ".".join(path) or "the document"
        if isinstance(item, dict):
            pairs: Any = item.items()
        elif isinstance(item, list):
            pairs = enumerate(item)
        else:
            continue
        for key, value in pairs:
            if isinstance(key, str) and not _is_utf8(key):
                return "a key of " + (".".join(path) or "the document")
            stack.append(((*path, _cut(str(key), 40)), value))
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def workflow_from_dict(doc: object, registry: Registry | None = None) -> Workflow:
    """Build a :class:`Workflow` from parsed JSON, migrating older formats first.

    Every problem is a :class:`WorkflowFormatError`: not an object, no or a bad "format", a
    shape the model refuses, nesting too deep, text that is not Unicode (lone surrogates).
    A document with no "format" field is given to ``registry``'s workflow importers (other
    tools' formats, see graphflow.formats) when a registry is passed.
    """
    if not isinstance(doc, dict):
        raise WorkflowFormatError(f"a workflow must be a JSON object, got {type(doc).__name__}")
    if "format" not in doc:
        if registry is not None:
            from .formats import import_document

            return import_document(doc, registry)[0]
        raise WorkflowFormatError(
            f'the document has no "format" field (expected "{CURRENT_FORMAT}"; other tools\''
            " formats are read through their importer plugins, e.g. by `graphflow run`)"
        )
    try:
        doc = migrate(doc)
        with gc_paused():
            workflow = Workflow.model_validate(doc)
    except PydanticValidationError as error:
        raise WorkflowFormatError(
            "not a valid workflow document:\n" + _format_pydantic(error)
        ) from None
    except RecursionError:
        raise WorkflowFormatError("the document is nested too deeply") from None
    where = _unencodable_text(doc)
    if where is not None:
        raise WorkflowFormatError(
            f"text at {where} is not valid Unicode (a lone surrogate); a workflow is UTF-8 text"
        )
    return workflow


def loads_workflow(text: str | bytes) -> Workflow:
    """Parse a workflow from JSON text (UTF-8; bytes in UTF-16 or UTF-32 are read too)."""
    return workflow_from_dict(parse_json(text))


def parse_json(text: str | bytes) -> Any:
    """Parse JSON text (UTF-8, -16 or -32); every problem is one WorkflowFormatError line."""
    try:
        with gc_paused():
            doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise WorkflowFormatError(
            f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    except UnicodeDecodeError as error:
        raise WorkflowFormatError(
            f"the document is not {error.encoding.upper()} text (bad byte at {error.start})"
        ) from None
    except RecursionError:
        raise WorkflowFormatError("the JSON is nested too deeply") from None
    except ValueError as error:  # a number with more digits than int() reads (about 4,300)
        raise WorkflowFormatError(f"invalid JSON: {_cut(str(error), 120)}") from None
    return doc


def read_workflow_bytes(path: Path) -> bytes:
    """A workflow file's bytes; a missing file, a folder or an unreadable one is a one-line
    :class:`WorkflowFormatError`."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise WorkflowFormatError(f"workflow file not found: {path}") from None
    except IsADirectoryError:
        raise WorkflowFormatError(f"{path} is a folder, not a workflow file") from None
    except OSError as error:
        raise WorkflowFormatError(f"cannot read {path}: {error.strerror}") from None


def load_workflow(path: str | Path) -> Workflow:
    """Read a workflow file (any known format; older ones are migrated).

    A PNG saved by graphflow works too: the workflow embedded in it is read.
    """
    path = Path(path)
    text = read_workflow_bytes(path)
    try:
        if is_png(text):
            try:
                text = workflow_text_from_png(text).encode()
            except PngMetadataError as error:
                raise WorkflowFormatError(str(error)) from None
        workflow = loads_workflow(text)
        workflow.base_dir = path.resolve().parent
        return workflow
    except WorkflowFormatError as error:
        raise WorkflowFormatError(f"{path}: {error}") from None


_STR = r'"(?:[^"\\]|\\.)*"'
# A link spread over four lines by json.dumps; JSON strings cannot hold raw newlines, so this
# pattern can only match real links, never text inside a value.
_SPREAD_LINK = re.compile(rf'"link": \[\n\s*({_STR}),\n\s*({_STR})\n\s*\]')


def dumps_workflow(workflow: Workflow) -> str:
    """The canonical text of a workflow (2-space indent, links on one line, final newline)."""
    text = json.dumps(workflow.to_dict(), indent=2, ensure_ascii=False)
    return _SPREAD_LINK.sub(r'"link": [\1, \2]', text) + "\n"


def save_workflow(workflow: Workflow, path: str | Path) -> None:
    """Write a workflow atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dumps_workflow(workflow), encoding="utf-8")
    tmp.replace(path)


def workflow_json_schema() -> dict:
    """The JSON Schema of the current format, generated from the model."""
    return Workflow.model_json_schema()
