"""ComfyUI's websocket dialect (``GET /ws?clientId=``) as a tap on graphflow's event hub.

graphflow's events of a job become ComfyUI's messages (COMFY_COMPAT §3.2, §7 "Event
mapping"): ``run_started`` → ``execution_start``; the cached nodes → ``execution_cached``
(sent before the first node runs); ``node_started`` → ``executing``; ``progress`` →
``progress``; a node's ui → ``executed``. The end of a job arrives as graphflow's
``job_done``, which the dispatcher sends only after the history is committed, so
``execution_success`` / ``execution_error`` / ``execution_interrupted``, ``status`` and the
final ``executing(null)`` all follow the commit (ComfyUI's #11540 race cannot happen).

Messages for a client id with no live socket are held (at most ``hold_seconds`` and
``hold_bytes`` per client) and flushed when it connects, so a client that opens its socket
after ``POST /prompt`` still sees the whole run. Previews go out as binary type 4 to sockets
that sent ``feature_flags`` with ``supports_preview_metadata``, as type 1 to the others only
when previews are switched on (ComfyUI sends none without ``--preview-method``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from graphflow.events import (
    Event,
    NodeCached,
    NodeFinished,
    NodeStarted,
    Progress,
    RunFailed,
    RunInterrupted,
    RunStarted,
)
from graphflow.jobs import JobOutcome, JobStatus, to_json
from graphflow.server.events_ws import CLIENT_ID, Connection, parse_preview_frame
from graphflow.server.queue_base import JobNotFound

from . import records

FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Track:
    """What one running job has shown so far."""

    client_id: str | None
    planned: tuple[str, ...] = ()
    cached: list[str] = field(default_factory=list)
    cached_sent: int = -1
    current: str | None = None
    executed: list[str] = field(default_factory=list)
    shown: set[str] = field(default_factory=set)
    failure: RunFailed | None = None
    stopped_at: str | None = None


class _Held:
    """Messages kept for a client with no live socket (bounded in age and bytes)."""

    def __init__(self) -> None:
        self.items: deque[tuple[float, str]] = deque()
        self.size = 0

    def add(self, text: str, now: float, hold_seconds: float, hold_bytes: int) -> None:
        """Hold one message; drop the oldest past ``hold_bytes`` in all or ``hold_seconds``."""
        self.items.append((now, text))
        self.size += len(text)
        while self.items and (self.size > hold_bytes or now - self.items[0][0] > hold_seconds):
            self.size -= len(self.items.popleft()[1])


class ComfyFeed:
    """The ComfyUI websocket dialect: sockets by clientId, held messages, event mapping."""

    def __init__(
        self,
        state: Any,
        *,
        previews: bool = False,
        hold_seconds: float = 30.0,
        hold_bytes: int = 4 << 20,
        hold_total: int = 64 << 20,
        max_backlog: int = 50_000,
    ):
        self.state = state
        self.previews = previews
        self.hold_seconds = hold_seconds
        self.hold_bytes = hold_bytes
        self.hold_total = hold_total
        self.max_backlog = max_backlog
        self.sockets: dict[str, Connection] = {}
        self.metadata: set[Connection] = set()  # sockets that asked for type-4 previews
        self.expected: dict[str, float] = {}  # client id → hold messages until this time
        self.held: dict[str, _Held] = {}
        self.tracks: dict[str, _Track] = {}
        self.class_types: dict[str, dict[str, str]] = {}  # prompt id → node → class type

    # -- sending -----------------------------------------------------------------------------

    def expect(self, client_id: str | None, prompt_id: str, prompt: dict) -> None:
        """A prompt for ``client_id`` was queued: hold its messages until it connects, and
        keep its class types for the error messages."""
        self.class_types[prompt_id] = {
            node_id: node.get("class_type") for node_id, node in prompt.items()
        }
        while len(self.class_types) > 10_000:  # prompts cancelled while pending never end
            self.class_types.pop(next(iter(self.class_types)))
        if client_id is not None:
            self.expected[client_id] = time.monotonic() + self.hold_seconds
            self.sweep()

    def sweep(self) -> None:
        """Forget clients whose hold time ran out (none of their prompts running), then the
        stalest until all held messages fit ``hold_total`` bytes and 10,000 clients."""
        now = time.monotonic()
        running = self.tracks_clients()
        for client_id, until in list(self.expected.items()):
            if now > until and client_id not in running:
                del self.expected[client_id]
                self.held.pop(client_id, None)
        total = sum(held.size for held in self.held.values())
        if total <= self.hold_total and len(self.expected) <= 10_000:
            return
        for client_id in sorted(self.expected, key=self.expected.__getitem__):
            if total <= self.hold_total and len(self.expected) <= 10_000:
                break
            del self.expected[client_id]
            held = self.held.pop(client_id, None)
            total -= held.size if held is not None else 0

    def send(self, client_id: str | None, kind: str, data: dict) -> None:
        """One JSON message to a client (held if it has no socket yet); None: to nobody."""
        if client_id is None:
            return
        conn = self.sockets.get(client_id)
        if conn is not None and not conn.closed:
            conn.send(to_json({"type": kind, "data": data}))
            return
        until = self.expected.get(client_id)
        if until is None:
            return  # nobody is expected under this id: nothing to encode
        now = time.monotonic()
        if now > until and client_id not in self.tracks_clients():
            self.expected.pop(client_id, None)
            self.held.pop(client_id, None)
            return
        self.expected[client_id] = max(until, now + self.hold_seconds)
        text = to_json({"type": kind, "data": data})
        self.held.setdefault(client_id, _Held()).add(text, now, self.hold_seconds, self.hold_bytes)

    def tracks_clients(self) -> set[str | None]:
        """Client ids with a job running now."""
        return {track.client_id for track in self.tracks.values()}

    def broadcast(self, kind: str, data: dict) -> None:
        """One JSON message to every ComfyUI socket."""
        if not self.sockets:
            return
        text = to_json({"type": kind, "data": data})
        for conn in list(self.sockets.values()):
            conn.send(text)

    def _to_client_or_all(self, client_id: str | None, kind: str, data: dict) -> None:
        if client_id is None:
            self.broadcast(kind, data)
        else:
            self.send(client_id, kind, data)

    def status_data(self, sid: str | None = None) -> dict:
        """``status`` message data: the queue's pending + running count."""
        counts = self.state.queue.active_counts()
        data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": sum(counts.values())}}}
        if sid is not None:
            data["sid"] = sid
        return data

    # -- HubTap ------------------------------------------------------------------------------

    def wants(self, client_id: str | None) -> bool:
        """True when a preview of this client's job would reach a ComfyUI socket."""
        if not self.sockets:
            return False
        if client_id is None:
            return self.previews or bool(self.metadata)
        conn = self.sockets.get(client_id)
        return conn is not None and (self.previews or conn in self.metadata)

    def job_event(self, client_id: str | None, job_id: str, event: Event) -> None:
        """Map one graphflow event of a job to ComfyUI's messages."""
        kind = type(event)
        if kind is RunStarted:
            if client_id is None:
                watched = bool(self.sockets)
            else:
                watched = client_id in self.sockets or client_id in self.expected
            if not watched:
                return  # no ComfyUI client for this job: its events cost nothing here
            self.tracks[job_id] = _Track(client_id, event.planned)
            self.send(client_id, "execution_start", {"prompt_id": job_id, "timestamp": _now_ms()})
            return
        track = self.tracks.get(job_id)
        if track is None:
            return
        if kind is NodeStarted:
            self._flush_cached(job_id, track)
            track.current = event.node
            self.send(
                client_id,
                "executing",
                {"node": event.node, "display_node": event.node, "prompt_id": job_id},
            )
        elif kind is Progress:
            # ComfyUI reports a node's steps only; graphflow's per-element reports of a node
            # mapped over a list would interleave a second value/max stream for that node.
            if event.unit != "element" and (client_id is not None or self.sockets):
                data = {
                    "value": event.value,
                    "max": event.total,
                    "prompt_id": job_id,
                    "node": event.node,
                }
                self._to_client_or_all(client_id, "progress", data)
        elif kind is NodeFinished:
            track.executed.append(event.node)
            if event.ui is not None:
                track.shown.add(event.node)
                self.send(
                    client_id,
                    "executed",
                    {
                        "node": event.node,
                        "display_node": event.node,
                        "output": event.ui,
                        "prompt_id": job_id,
                    },
                )
        elif kind is NodeCached:
            track.cached.append(event.node)
        elif kind is RunFailed:
            track.failure = event
        elif kind is RunInterrupted:
            track.stopped_at = event.node or track.current

    def _flush_cached(self, job_id: str, track: _Track) -> None:
        if track.cached_sent < len(track.cached):
            nodes = track.cached[max(track.cached_sent, 0) :]
            track.cached_sent = len(track.cached)
            self.send(
                track.client_id,
                "execution_cached",
                {"nodes": nodes, "prompt_id": job_id, "timestamp": _now_ms()},
            )

    def preview(self, client_id: str | None, frame: bytes) -> None:
        """A preview: type 4 to sockets that asked for metadata, type 1 when enabled."""
        header, jpeg = parse_preview_frame(frame)
        data = header.get("data", {})
        targets = (
            list(self.sockets.values())
            if client_id is None
            else [c for c in (self.sockets.get(client_id),) if c is not None]
        )
        for conn in targets:
            if conn in self.metadata:
                meta = json.dumps(
                    {
                        "node_id": data.get("node"),
                        "prompt_id": data.get("job_id"),
                        "display_node_id": data.get("node"),
                        "parent_node_id": None,
                        "real_node_id": data.get("node"),
                        "image_type": "image/jpeg",
                    }
                ).encode()
                conn.send(struct.pack(">II", 4, len(meta)) + meta + jpeg)
            elif self.previews:
                conn.send(struct.pack(">II", 1, 1) + jpeg)

    def job_done(self, client_id: str | None, job_id: str, outcome: JobOutcome) -> None:
        """A job ended, its history committed: its last messages (§3.3 order)."""
        track = self.tracks.pop(job_id, None) or _Track(client_id)
        class_types = self.class_types.pop(job_id, None)
        self.sweep()
        if client_id is None:
            if outcome.status is JobStatus.CANCELLED and self.sockets:
                self.broadcast("execution_interrupted", {
                    "prompt_id": job_id, "node_id": track.stopped_at, "node_type": None,
                    "executed": track.executed, "timestamp": _now_ms()})  # fmt: skip
            return
        self._finish(client_id, job_id, outcome, track, class_types)

    def _class_type(self, job_id: str, node: str | None, known: dict | None) -> str | None:
        if node is None:
            return None
        if known is not None:
            return known.get(node)
        try:  # a graphflow-dialect job: read its document (only on failure or interrupt)
            job = self.state.queue.get(job_id)
        except JobNotFound:
            return None
        return records.node_type(records.queue_item(self.state.registry, job), node)

    def _finish(
        self, client_id: str, job_id: str, outcome: JobOutcome, track: _Track, known: dict | None
    ) -> None:
        status = outcome.status
        if status is JobStatus.DONE:
            # Nodes behind a cached node are never reached, so graphflow does not report them;
            # for ComfyUI they came from the cache too.
            done = set(track.executed) | set(track.cached)
            track.cached.extend(node for node in track.planned if node not in done)
        self._flush_cached(job_id, track)
        for node in track.cached:  # ComfyUI re-sends executed for cached output nodes
            if node in outcome.ui and node not in track.shown:
                data = {"node": node, "display_node": node, "output": outcome.ui[node]}
                self.send(client_id, "executed", {**data, "prompt_id": job_id})
        now = _now_ms()
        if status is JobStatus.DONE:
            self.send(client_id, "execution_success", {"prompt_id": job_id, "timestamp": now})
        elif status is JobStatus.CANCELLED:
            node = track.stopped_at
            self.send(client_id, "execution_interrupted", {
                "prompt_id": job_id, "node_id": node,
                "node_type": self._class_type(job_id, node, known), "executed": track.executed,
                "timestamp": now})  # fmt: skip
        else:
            error = dict(outcome.error or {})
            if track.failure is not None:
                error.setdefault("node", track.failure.node)
            node_type = self._class_type(job_id, error.get("node"), known)
            data = records.error_message(job_id, error, node_type, track.executed, now)
            self.send(client_id, "execution_error", data)
        self.send(client_id, "status", self.status_data())
        self.send(client_id, "executing", {"node": None, "display_node": None, "prompt_id": job_id})

    def queue_changed(self) -> None:
        """``status`` to every ComfyUI socket."""
        if self.sockets:
            self.broadcast("status", self.status_data())

    # -- the /ws?clientId= route -------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """``GET /ws?clientId=ID``: ComfyUI's feed (graphflow's own is ``?client_id=``)."""
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        if not CLIENT_ID.match(client_id):
            raise web.HTTPBadRequest(text="clientId must be 1-128 letters, digits or _.:-")
        ws = web.WebSocketResponse(heartbeat=30, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(ws, client_id, self.max_backlog)
        conn.task = asyncio.ensure_future(conn.write_forever())
        conn.send(to_json({"type": "status", "data": self.status_data(client_id)}))
        held = self.held.pop(client_id, None)
        self.expected.pop(client_id, None)
        for _, text in held.items if held is not None else ():
            conn.send(text)
        self.sockets[client_id] = conn  # a new socket with this id replaces the old one
        if held is None:
            for job_id, track in self.tracks.items():
                if track.client_id == client_id and track.current is not None:
                    conn.send(
                        to_json(
                            {
                                "type": "executing",
                                "data": {
                                    "node": track.current,
                                    "display_node": track.current,
                                    "prompt_id": job_id,
                                },
                            }
                        )
                    )
        try:
            first = True
            async for message in ws:
                if message.type == WSMsgType.TEXT and first:
                    self._feature_flags(conn, message.data)
                first = False
        finally:
            await self._drop(conn)
        return ws

    def _feature_flags(self, conn: Connection, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "feature_flags":
            data = message.get("data")
            if isinstance(data, dict) and data.get("supports_preview_metadata"):
                self.metadata.add(conn)
            conn.send(to_json({"type": "feature_flags", "data": FEATURES}))

    async def _drop(self, conn: Connection) -> None:
        conn.closed = True
        conn.ready.set()
        self.metadata.discard(conn)
        if self.sockets.get(conn.client_id) is conn:
            del self.sockets[conn.client_id]
        if conn.task is not None:
            conn.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await conn.task

    async def close_all(self) -> None:
        """Close every ComfyUI socket (server shutdown)."""
        for conn in list(self.sockets.values()):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"server shutting down")
            await self._drop(conn)
