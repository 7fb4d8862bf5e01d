"""graphflow/1 → a minimal ComfyUI UI workflow (litegraph, version 0.4), so ComfyUI opens it.

Nodes get integer ids (numeric graphflow ids are kept, others numbered after them and shown
as the node's title), a position (the editor's, else a grid in execution order), sockets
for every link-only input and for each linked widget (a "converted widget"), and
``widgets_values`` over the class type's widgets with the hidden slots ComfyUI expects
(``"fixed"`` after seeds, so ComfyUI runs the stored seed; ``"image"`` after uploads). A
document imported from a UI workflow and not changed since gets that workflow back as it was.
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

from graphflow.errors import GraphflowError, WorkflowFormatError
from graphflow.registry import Registry

from . import names
from .api_format import api_to_graphflow, class_type_of
from .ui_format import default_value, widget_slots

COLUMN, ROW = 320, 260


def _unchanged_original(doc: dict, registry: Registry) -> dict | None:
    editor = doc.get("editor") or {}
    comfy = editor.get("comfy") if isinstance(editor, dict) else None
    if not isinstance(comfy, dict) or not isinstance(comfy.get("workflow"), dict):
        return None
    try:  # the stored prompt, read again, must give this very document's nodes
        imported = api_to_graphflow(comfy.get("prompt"), registry)
    except GraphflowError:
        return None
    return comfy["workflow"] if imported["nodes"] == doc.get("nodes") else None


def _int_ids(nodes: dict) -> dict[str, int]:
    ids: dict[str, int] = {}
    for node_id in nodes:
        if node_id.isdigit() and 0 < int(node_id) < 2**31 and int(node_id) not in ids.values():
            ids[node_id] = int(node_id)
    next_id = max(ids.values(), default=0) + 1
    for node_id in nodes:
        if node_id not in ids:
            ids[node_id] = next_id
            next_id += 1
    return ids


def _order(nodes: dict) -> list[str]:
    """Node ids sources first (Kahn's algorithm; nodes on a cycle go last)."""
    waiting = {node_id: 0 for node_id in nodes}
    users: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for node_id, entry in nodes.items():
        for value in (entry.get("inputs") or {}).values():
            if isinstance(value, dict) and set(value) == {"link"} and value["link"][0] in nodes:
                waiting[node_id] += 1
                users[value["link"][0]].append(node_id)
    ready = deque(node_id for node_id, count in waiting.items() if count == 0)
    order: list[str] = []
    while ready:
        node_id = ready.popleft()
        order.append(node_id)
        for user in users[node_id]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    return order + [node_id for node_id in nodes if node_id not in order]


def _socket_type(spec, comfy, name: str) -> str:
    item = spec.inputs_by_name[name]
    facts = comfy.input(name) if comfy else names.ComfyInput()
    if facts.comfy_type:
        return facts.comfy_type
    return "COMBO" if item.choices is not None else item.type


def graphflow_to_ui(doc: dict, registry: Registry) -> dict:
    """A graphflow/1 document (JSON data) → a ComfyUI UI workflow."""
    from graphflow.subgraphs import flat_document

    original = _unchanged_original(doc, registry)
    if original is not None:
        return original
    doc = flat_document(doc, registry)  # exported flattened, with "12:3" ids
    nodes = doc.get("nodes") or {}
    ids = _int_ids(nodes)
    order = _order(nodes)
    editor = doc.get("editor") or {}
    positions = editor.get("positions") if isinstance(editor, dict) else None
    ui_nodes: dict[str, dict] = {}
    for rank, node_id in enumerate(order):
        ui_nodes[node_id] = _ui_node(node_id, nodes[node_id], registry, ids, rank, positions)
    links = _wire(nodes, ui_nodes, registry, ids)
    return {
        "id": str(uuid.uuid4()),
        "revision": 0,
        "last_node_id": max(ids.values(), default=0),
        "last_link_id": len(links),
        "nodes": [ui_nodes[node_id] for node_id in order],
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"graphflow": {"node_ids": {str(ids[n]): n for n in nodes}}},
        "version": 0.4,
    }


def _ui_node(node_id, entry, registry, ids, rank, positions) -> dict:
    spec = registry.get(entry["type"])
    if spec is None:
        raise WorkflowFormatError(f"node {node_id!r} has unknown type {entry['type']!r}")
    comfy = names.BY_NODE_ID.get(spec.id)
    given = entry.get("inputs") or {}
    slots = widget_slots(spec, comfy)
    widget_names = {name for name, kind in slots if kind == "widget"}
    values: list[Any] = []
    for name, kind in slots:
        if kind == "control":
            values.append("fixed")
        elif kind == "upload":
            values.append("image")
        else:
            value = given.get(name, default_value(spec, name))
            values.append(default_value(spec, name) if isinstance(value, dict) else value)
    inputs = []
    for item in spec.inputs:
        linked = isinstance(given.get(item.name), dict) and "link" in given[item.name]
        if item.name in widget_names and not linked:
            continue
        socket = {"name": item.name, "type": _socket_type(spec, comfy, item.name), "link": None}
        if item.name in widget_names:
            socket["widget"] = {"name": item.name}
        inputs.append(socket)
    output_names = comfy.output_names if comfy and comfy.output_names else ()
    outputs = [
        {
            "name": output_names[k] if k < len(output_names) else out.type,
            "type": out.type,
            "links": [],
            "slot_index": k,
        }
        for k, out in enumerate(spec.outputs)
    ]
    pos = positions.get(node_id) if isinstance(positions, dict) else None
    if not (isinstance(pos, list) and len(pos) >= 2):
        pos = [50 + COLUMN * (rank % 4), 50 + ROW * (rank // 4)]
    node = {
        "id": ids[node_id],
        "type": class_type_of(spec.id),
        "pos": list(pos[:2]),
        "size": [280, 30 + 24 * (len(inputs) + len(values) + len(outputs))],
        "flags": {},
        "order": rank,
        "mode": 0,
        "inputs": inputs,
        "outputs": outputs,
        "properties": {"Node name for S&R": class_type_of(spec.id)},
        "widgets_values": values,
    }
    title = entry.get("title") or (None if node_id == str(ids[node_id]) else node_id)
    if title:
        node["title"] = title
    return node


def _wire(nodes, ui_nodes, registry, ids) -> list[list]:
    links: list[list] = []
    for node_id, entry in nodes.items():
        target = ui_nodes[node_id]
        for name, value in (entry.get("inputs") or {}).items():
            if not (isinstance(value, dict) and set(value) == {"link"}):
                continue
            source_id, output = value["link"]
            source = ui_nodes.get(source_id)
            spec = registry.get(nodes[source_id]["type"]) if source_id in nodes else None
            if source is None or spec is None or output not in spec.outputs_by_name:
                raise WorkflowFormatError(f"node {node_id!r} links to unknown {source_id}.{output}")
            slot = [o.name for o in spec.outputs].index(output)
            socket = next(i for i, s in enumerate(target["inputs"]) if s["name"] == name)
            link_id = len(links) + 1
            kind = source["outputs"][slot]["type"]
            links.append([link_id, ids[source_id], slot, ids[node_id], socket, kind])
            target["inputs"][socket]["link"] = link_id
            source["outputs"][slot]["links"].append(link_id)
    return links
