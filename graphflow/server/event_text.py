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
from json.encoder import encode_basestring_ascii as _quoted

from ..events import Event, NodeCached, NodeFinished, NodeStarted


def event_text(event: Event, job_json: str) -> str | None:
    """The websocket text of ``event`` for the job whose id is ``job_json`` (already JSON),
    or None when the generic encoder must write it."""
    kind = type(event)
    if kind is NodeStarted:
        return (
            f'{{"type":"node_started","data":{{"run_id":{_quoted(event.run_id)},'
            f'"node":{_quoted(event.node)},"node_type":{_quoted(event.node_type)},'
            f'"job_id":{job_json}}}}}'
        )
    if kind is NodeFinished:
        return _finished(event, job_json)
    if kind is NodeCached:
        return (
            f'{{"type":"node_cached","data":{{"run_id":{_quoted(event.run_id)},'
            f'"node":{_quoted(event.node)},"job_id":{job_json}}}}}'
        )
    return None


def _finished(event: NodeFinished, job_json: str) -> str | None:
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
        f'{{"type":"node_finished","data":{{"run_id":{_quoted(event.run_id)},'
        f'"node":{_quoted(event.node)},"seconds":{float.__repr__(seconds)},'
        f'"peak_memory_bytes":{memory},"ui":null,"job_id":{job_json}}}}}'
    )
