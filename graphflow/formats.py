"""Foreign workflow formats: importers and exporters that plugins register, and one reader.

graphflow runs ``graphflow/1`` documents (workflow.py). A plugin may teach it other formats
through the ``graphflow_workflow_importers`` and ``graphflow_workflow_exporters`` hooks: an
importer recognises a parsed document (``detect``) and turns it into a graphflow/1 dict
(``to_graphflow``); an exporter turns a graphflow/1 dict into its own format (``graphflow
convert --to NAME``) and may name a PNG text chunk it fills in every saved image, so other
tools can open graphflow's pictures. The engine itself knows no foreign format: it only
dispatches on what the registered importers say.

:func:`read_workflow` is what the CLI uses: a parsed document, JSON text or PNG bytes in, a
:class:`~graphflow.workflow.Workflow` and a one-line "read as ..." label out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import GraphflowError, ValidationFailed, WorkflowFormatError
from .pngmeta import WORKFLOW_KEY, PngMetadataError, is_png, png_text_chunks
from .workflow import (
    CURRENT_FORMAT,
    Workflow,
    dumps_workflow,
    parse_json,
    read_workflow_bytes,
    workflow_from_dict,
)

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger(__name__)

GRAPHFLOW = "graphflow"
"""The name of graphflow's own format for ``convert --to``."""


@dataclass(frozen=True)
class WorkflowImporter:
    """A foreign workflow format graphflow can read.

    ``detect(doc)`` says whether a parsed JSON document is in this format (cheap, never
    raises); ``to_graphflow(doc, registry, png_texts=...)`` returns a graphflow/1 dict and
    raises :class:`~graphflow.errors.WorkflowFormatError` or
    :class:`~graphflow.errors.ValidationFailed` (every problem listed) for what it cannot
    map. ``png_texts`` are all text chunks when the document came from a PNG, else None.
    ``png_keys`` are the PNG text chunks that may hold a document of this format, in the
    order they are tried. ``count_nodes(doc)`` gives the "12 nodes → 9" of the label.
    """

    name: str
    label: str
    detect: Callable[[Any], bool]
    to_graphflow: Callable[..., dict]
    png_keys: tuple[str, ...] = ()
    count_nodes: Callable[[Any], int] | None = None


@dataclass(frozen=True)
class WorkflowExporter:
    """A format graphflow can write: ``from_graphflow(doc, registry)`` → a JSON document.

    ``png_key`` names the PNG text chunk this format fills in saved images (None: none).
    """

    name: str
    label: str
    from_graphflow: Callable[[dict, Registry], Any]
    png_key: str | None = None


def _importers(registry: Registry | None) -> list[WorkflowImporter]:
    return list(getattr(registry, "importers", ()) or ())


def known_formats(registry: Registry | None) -> list[str]:
    """Names of every format that can be read: graphflow's and the registered importers'."""
    return [CURRENT_FORMAT, *(importer.label for importer in _importers(registry))]


def detect_importer(doc: Any, registry: Registry | None) -> WorkflowImporter | None:
    """The first registered importer that recognises ``doc``, or None."""
    for importer in _importers(registry):
        try:
            if importer.detect(doc):
                return importer
        except Exception:  # a plugin's detect bug must not hide the other formats
            log.exception("workflow importer %r failed to detect a document", importer.name)
    return None


def _label(importer: WorkflowImporter, doc: Any, graph: dict, source: str) -> str:
    produced = len(graph.get("nodes") or {})
    counted = produced
    if importer.count_nodes is not None:
        try:
            counted = importer.count_nodes(doc)
        except Exception:
            counted = produced
    count = f"{counted} nodes" if counted == produced else f"{counted} nodes → {produced}"
    return f"{importer.label}{source} ({count})"


def _refused_label(importer: WorkflowImporter, doc: Any, source: str) -> str:
    """What a document its importer refused was read as (its node count when known)."""
    try:
        counted = importer.count_nodes(doc) if importer.count_nodes is not None else None
    except Exception:
        counted = None
    return f"{importer.label}{source}" + (f" ({counted} nodes)" if counted is not None else "")


def import_document(
    doc: Any,
    registry: Registry | None,
    *,
    png_texts: Mapping[str, str] | None = None,
    source: str = "",
) -> tuple[Workflow, str]:
    """A parsed document → (Workflow, label); graphflow documents are read as they always were.

    A document without a ``"format"`` field goes to the registered importers; one none of
    them recognises is a :class:`WorkflowFormatError` naming the formats that are known.
    """
    if not isinstance(doc, dict) or "format" in doc:
        workflow = workflow_from_dict(doc)
        return workflow, f"{doc['format']}{source}"  # as written (graphflow/0 is migrated)
    importer = detect_importer(doc, registry)
    if importer is None:
        known = ", ".join(known_formats(registry))
        raise WorkflowFormatError(
            f'the document has no "format" field and is in none of the formats this '
            f"graphflow reads ({known})"
        )
    try:
        graph = importer.to_graphflow(doc, registry, png_texts=png_texts)
    except ValidationFailed as error:
        error.read_as = _refused_label(importer, doc, source)
        raise
    except GraphflowError:
        raise
    except Exception as error:  # a shape the plugin did not foresee: one line, no traceback
        log.debug("workflow importer %r failed", importer.name, exc_info=True)
        raise WorkflowFormatError(
            f"not a readable {importer.label} document ({type(error).__name__}: {error})"
        ) from None
    try:
        workflow = workflow_from_dict(graph)
    except WorkflowFormatError as error:
        raise WorkflowFormatError(f"{importer.label}: {error}") from None
    return workflow, _label(importer, doc, graph, source)


def _read_png(data: bytes, registry: Registry | None) -> tuple[Workflow, str]:
    """graphflow's own chunk first; then each importer's chunks, in registration order."""
    try:
        texts = png_text_chunks(data)
    except PngMetadataError as error:
        raise WorkflowFormatError(str(error)) from None
    if WORKFLOW_KEY in texts:
        return import_document(
            parse_json(texts[WORKFLOW_KEY]), None, source=f" (from the PNG's {WORKFLOW_KEY} chunk)"
        )
    for importer in _importers(registry):
        for key in importer.png_keys:
            if key not in texts:
                continue
            try:
                doc = parse_json(texts[key])
            except WorkflowFormatError:
                continue  # another tool's chunk of the same name; try the next
            if importer.detect(doc):
                return import_document(
                    doc, registry, png_texts=texts, source=f" (from the PNG's {key!r} chunk)"
                )
    names = ", ".join(repr(k) for k in texts) or "none"
    raise WorkflowFormatError(
        f"this PNG holds no graphflow workflow, nor one graphflow can import (text chunks: {names})"
    )


def read_workflow(source: Any, registry: Registry | None) -> tuple[Workflow, str]:
    """Read a workflow from a parsed document, JSON text, or PNG bytes: (Workflow, label).

    The label says what it was read as, e.g. ``"graphflow/1"`` or ``"ComfyUI UI format
    (12 nodes → 9)"``. Problems are :class:`WorkflowFormatError` (unreadable) or
    :class:`~graphflow.errors.ValidationFailed` (an importer's list of what it cannot map).
    """
    if isinstance(source, (bytes, bytearray)) and is_png(bytes(source)):
        return _read_png(bytes(source), registry)
    if isinstance(source, (bytes, bytearray)):
        return import_document(parse_json(bytes(source)), registry)
    if isinstance(source, str):
        return import_document(parse_json(source), registry)
    return import_document(source, registry)


def read_workflow_file(path: str | Path, registry: Registry | None) -> tuple[Workflow, str]:
    """:func:`read_workflow` on a file; error messages start with the path."""
    path = Path(path)
    data = read_workflow_bytes(path)
    try:
        workflow, label = read_workflow(data, registry)
    except WorkflowFormatError as error:
        raise WorkflowFormatError(f"{path}: {error}") from None
    workflow.base_dir = path.resolve().parent  # subgraph "file" references are relative to it
    return workflow, label


def exporter_names(registry: Registry | None) -> list[str]:
    """Every name ``convert --to`` takes: ``graphflow`` and the registered exporters'."""
    return [GRAPHFLOW, *(e.name for e in getattr(registry, "exporters", ()) or ())]


def export_workflow(workflow: Workflow, to: str, registry: Registry) -> str:
    """The text of ``workflow`` in format ``to`` (``graphflow`` or an exporter's name)."""
    if to == GRAPHFLOW:
        return dumps_workflow(workflow)
    for exporter in registry.exporters:
        if exporter.name == to:
            document = exporter.from_graphflow(workflow.to_dict(), registry)
            return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    known = ", ".join(exporter_names(registry))
    raise WorkflowFormatError(f"unknown output format {to!r} (known: {known})")


def png_chunks_for(doc: dict, registry: Registry | None) -> dict[str, str]:
    """PNG text chunks holding ``doc`` (graphflow/1 data) in every exporter's format.

    An exporter that cannot express the workflow is skipped (logged): saving an image never
    fails because another tool's format has no room for something.
    """
    chunks: dict[str, str] = {}
    for exporter in getattr(registry, "exporters", ()) or ():
        if exporter.png_key is None or exporter.png_key == WORKFLOW_KEY:
            continue
        try:
            document = exporter.from_graphflow(doc, registry)
            chunks[exporter.png_key] = json.dumps(document, ensure_ascii=True)
        except Exception as error:  # a plugin's exporter must never fail a save
            log.warning(
                "saved image: no %s chunk (%s: %s)", exporter.label, type(error).__name__, error
            )
    return chunks
