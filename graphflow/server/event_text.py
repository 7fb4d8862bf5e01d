"""JSON text of the executor's most frequent events, written straight from their fields.

A 10,000-node run sends two events per node. Building each message as a dict and encoding
it with the generic encoder was half of the server's event-loop time at that size; the
texts here are the same JSON (same keys, order, separators and escaping as
``events_ws.encode_message(event_message(event, job_id))``), built from the fields with the
C string escaper. Events this module does not know, or values it cannot write exactly
(a node's ``ui``, a non-finite number), return None: the caller encodes those the generic way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii as _quoted

from ..events import Event, NodeCached, NodeFinished, NodeStarted


def event_text(event: Event, job_json: str) -> str | None:
    """The websocket text of ``event`` for the job whose id is ``job_json`` (already JSON),
    or None when the generic encoder must write it."""
    return event_texts([event], job_json)[0]


def event_texts(events: Sequence[Event], job_json: str) -> list[str | None]:
    """:func:`event_text` of each event; what is the same for every event of a run (the
    run id, the keys around it, the job id) is written once per run, not once per event."""
    texts: list[str | None] = []
    run_id: str | None = None
    started = finished = cached = ""
    end = f',"job_id":{job_json}}}}}'
    for event in events:
        kind = type(event)
        if kind is not NodeStarted and kind is not NodeFinished and kind is not NodeCached:
            texts.append(None)
            continue
        if event.run_id != run_id:
            run_id = event.run_id
            run = _quoted(run_id)
            started = f'{{"type":"node_started","data":{{"run_id":{run},"node":'
            finished = f'{{"type":"node_finished","data":{{"run_id":{run},"node":'
            cached = f'{{"type":"node_cached","data":{{"run_id":{run},"node":'
        if kind is NodeStarted:
            texts.append(
                f'{started}{_quoted(event.node)},"node_type":{_quoted(event.node_type)}{end}'
            )
        elif kind is NodeCached:
            texts.append(f"{cached}{_quoted(event.node)}{end}")
        else:
            texts.append(_finished(event, finished, end))
    return texts


def _finished(event: NodeFinished, prefix: str, end: str) -> str | None:
    """node_finished without ui (the common case for trivial nodes), else None."""
    seconds, peak = event.seconds, event.peak_memory_bytes
    if event.ui is not None or type(seconds) is not float or not math.isfinite(seconds):
        return None
    if peak is None:
        memory = "null"
    elif type(peak) is int:
        memory = str(peak)
    else:
        return None
    return (
        f'{prefix}{_quoted(event.node)},"seconds":{float.__repr__(seconds)},'
        f'"peak_memory_bytes":{memory},"ui":null{end}'
    )
