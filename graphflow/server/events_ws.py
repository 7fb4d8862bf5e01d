"""Websocket fan-out: run events to the client that queued the job, queue status to everyone.

``GET /ws?client_id=ID`` opens a connection for that client id (one is made up and sent back
in the first ``status`` message when absent). A client receives:

- ``status`` — queue counts, on connect and whenever the queue changes (every client);
- the executor's events of its own jobs (``run_started``, ``node_started``, ``progress`` ...)
  as ``{"type", "data"}`` with ``data.job_id`` added;
- ``job_done`` — after the job's record is committed to the history (wait for this one, not
  ``run_finished``, before reading ``/api/history/{job_id}``);
- with ``&batch=1``, the job events that arrive together come as one ``events`` message
  ``{"type": "events", "data": {"job_id", "events": [message, ...]}}`` whose items are
  exactly the messages an unbatched connection gets, in order (``status``, ``job_done``,
  ``pong`` and previews stay separate frames). A big run then costs a few frames instead of
  two per node;
- previews of its own jobs as binary frames: a 4-byte big-endian header length, a UTF-8 JSON
  header ``{"type": "preview", "data": {job_id, node, format, width, height}}``, then JPEG bytes.

Another dialect of the feed (a plugin's, e.g. ComfyUI's ``/ws?clientId=``) attaches a *tap*
(:meth:`EventHub.add_tap`): an object that is handed every job event, preview, job outcome
and queue change, and a query parameter that routes ``GET /ws`` to its own handler.

Each connection has its own outbound buffer and writer task, so one slow client never
delays the others; a client that falls more than ``max_backlog`` messages behind is
disconnected (it can reconnect and read the history). Previews are the first thing dropped
when a client is behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
import struct
import sys
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from ..events import Event
from ..jobs import JobOutcome
from .event_text import event_texts
from .queue_base import to_json
from .routes_common import ApiError

log = logging.getLogger("graphflow.server")

CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
BATCH_VALUES = {"1": True, "true": True, "0": False, "false": False}
"""What ``GET /ws?batch=`` accepts."""
PREVIEW_BACKLOG = 16
"""A preview is dropped when its client already has this many messages waiting."""


def encode_preview(image: Any, max_size: int = 512, quality: int = 80) -> tuple[bytes, int, int]:
    """A preview image as JPEG bytes and its size (width, height).

    Takes a PIL image, a torch tensor or a numpy array in graphflow's IMAGE layout
    (B, H, W, C floats in 0..1; the first image of a batch is shown) or channels-first
    (C, H, W). PIL, numpy and torch are imported here, only once a preview arrives.
    """
    from PIL import Image

    if not isinstance(image, Image.Image):
        import numpy as np

        torch = sys.modules.get("torch")
        if torch is not None and isinstance(image, torch.Tensor):
            array = image.detach().to("cpu", torch.float32).numpy()
        else:
            array = np.asarray(image)
        while array.ndim > 3:
            array = array[0]
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)  # channels-first → channels-last
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3):
            raise ValueError(f"cannot show an array of shape {array.shape} as an image")
        if array.dtype != np.uint8:
            array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        image = Image.fromarray(np.ascontiguousarray(array))
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    image = image.copy()
    image.thumbnail((max_size, max_size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue(), image.width, image.height


def preview_frame(header: dict, payload: bytes) -> bytes:
    """The binary websocket frame: header length, JSON header, image bytes."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(head)) + head + payload


def parse_preview_frame(frame: bytes) -> tuple[dict, bytes]:
    """Split a binary preview frame (what a client does; used by tests and benchmarks)."""
    (length,) = struct.unpack(">I", frame[:4])
    return json.loads(frame[4 : 4 + length]), frame[4 + length :]


_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def encode_message(message: dict) -> str:
    """JSON text of one message: :func:`~graphflow.jobs.to_json`'s exact output, with one
    shared encoder for the common case (values plain JSON holds); ``to_json`` handles the
    rest (NaN, odd ui values) as it always did."""
    try:
        return _ENCODER.encode(message)
    except (TypeError, ValueError, RecursionError):
        return to_json(message)


def job_event_texts(job_id: str, events: Sequence[Event]) -> list[str]:
    """Each event's websocket text (its :func:`event_message`, encoded); the frequent
    node events are written directly (graphflow.server.event_text)."""
    direct = event_texts(events, encode_message(job_id))
    return [
        text if text is not None else encode_message(event_message(event, job_id))
        for text, event in zip(direct, events, strict=True)
    ]


def event_message(event: Event, job_id: str) -> dict:
    """An executor event as its websocket message: ``Event.to_dict()`` plus ``job_id``."""
    message = event.to_dict()
    message["data"]["job_id"] = job_id
    return message


class Connection:
    """One websocket with its outbound buffer and writer task."""

    def __init__(
        self, ws: web.WebSocketResponse, client_id: str, max_backlog: int, batch: bool = False
    ):
        self.ws = ws
        self.client_id = client_id
        self.max_backlog = max_backlog
        self.batch = batch
        """True: this client takes a run of job events as one ``events`` message."""
        self.outbox: deque[str | bytes] = deque()
        self.ready = asyncio.Event()
        self.closed = False
        self.task: asyncio.Task | None = None
        self.closing: asyncio.Future | None = None

    def send(self, message: str | bytes) -> None:
        """Queue a message (never blocks); disconnects a client that is too far behind."""
        if self.closed:
            return
        if len(self.outbox) >= self.max_backlog:
            log.warning("websocket client %s is too slow; disconnecting it", self.client_id)
            self.closed = True
            self.outbox.clear()
            self.closing = asyncio.ensure_future(
                self.ws.close(code=1013, message=b"too far behind; reconnect and read /api/history")
            )
            return
        self.outbox.append(message)
        self.ready.set()

    async def write_forever(self) -> None:
        """Send queued messages in order until the socket closes."""
        try:
            while not self.closed:
                await self.ready.wait()
                self.ready.clear()
                while self.outbox and not self.closed:
                    message = self.outbox.popleft()
                    if isinstance(message, bytes):
                        await self.ws.send_bytes(message)
                    else:
                        await self.ws.send_str(message)
        except (ConnectionError, RuntimeError):
            self.closed = True  # the peer went away; the reader side notices and cleans up


class HubTap(Protocol):
    """Another dialect's view of the feed (see :meth:`EventHub.add_tap`); every method is
    called on the event loop except :meth:`wants`, which may be called from any thread."""

    def wants(self, client_id: str | None) -> bool:
        """True when this tap would deliver a job event of ``client_id`` (previews are
        encoded only if someone wants them)."""

    def job_event(self, client_id: str | None, job_id: str, event: Event) -> None:
        """An executor event of a job."""

    def preview(self, client_id: str | None, frame: bytes) -> None:
        """A preview frame in graphflow's layout (:func:`parse_preview_frame` splits it)."""

    def job_done(self, client_id: str | None, job_id: str, outcome: JobOutcome) -> None:
        """A job ended and its record is committed to the history."""

    def queue_changed(self) -> None:
        """The queue changed (at most once per loop iteration)."""


class EventHub:
    """Every open websocket, by client id, and what to send to whom."""

    def __init__(self, *, max_backlog: int = 50_000, status: Any = None):
        self.max_backlog = max_backlog
        self._clients: dict[str, set[Connection]] = {}
        self._status_scheduled = False
        self.status = status or (lambda: {})
        self.taps: list[HubTap] = []
        self._dialects: dict[str, Any] = {}

    def add_tap(self, tap: HubTap, query_param: str | None = None, handler: Any = None) -> None:
        """Hand ``tap`` everything this hub sends; ``GET /ws?<query_param>=...`` (without
        ``client_id``) then goes to ``handler(request)`` instead of graphflow's feed."""
        self.taps.append(tap)
        if query_param is not None and handler is not None:
            self._dialects[query_param] = handler

    def _tap(self, method: str, *args: Any) -> None:
        for tap in self.taps:
            try:
                getattr(tap, method)(*args)
            except Exception:  # another dialect's bug must not break graphflow's feed
                log.exception("websocket tap %r failed in %s", tap, method)

    def has_listeners(self, client_id: str | None) -> bool:
        """True when ``client_id`` has an open connection or a tap wants its events (safe
        to call from any thread)."""
        if self.taps and any(tap.wants(client_id) for tap in self.taps):
            return True
        return client_id is not None and bool(self._clients.get(client_id))

    @property
    def connection_count(self) -> int:
        """Open websocket connections."""
        return sum(len(conns) for conns in self._clients.values())

    def send_to_client(self, client_id: str | None, message: dict) -> None:
        """Send a JSON message to every connection of one client."""
        conns = self._clients.get(client_id) if client_id is not None else None
        if not conns:
            return
        text = to_json(message)
        for conn in list(conns):
            conn.send(text)

    def send_job_done(self, client_id: str | None, message: dict, outcome: JobOutcome) -> None:
        """``job_done`` to the job's client, and the outcome to the taps (both after the
        history commit)."""
        if self.taps:
            self._tap("job_done", client_id, message["data"]["job_id"], outcome)
        self.send_to_client(client_id, message)

    def send_job_event(self, client_id: str | None, job_id: str, event: Event) -> None:
        """Forward one executor event of a job to the client that queued it."""
        self.send_job_events(client_id, job_id, (event,))

    def send_job_events(self, client_id: str | None, job_id: str, events: Sequence[Event]) -> None:
        """Forward consecutive executor events of one job to the client that queued it: one
        message per event to plain connections, one ``events`` message to batching ones.
        Taps get each event, in order."""
        if self.taps:
            for event in events:
                self._tap("job_event", client_id, job_id, event)
        conns = self._clients.get(client_id) if client_id is not None else None
        if not conns or not events:
            return  # nobody listening: skip the encoding work entirely
        texts = job_event_texts(job_id, events)
        batch: str | None = None
        for conn in list(conns):
            if conn.batch:
                if batch is None:
                    batch = (
                        f'{{"type":"events","data":{{"job_id":{encode_message(job_id)},'
                        f'"events":[{",".join(texts)}]}}}}'
                    )
                conn.send(batch)
            else:
                for text in texts:
                    conn.send(text)

    def send_preview(self, client_id: str | None, frame: bytes) -> None:
        """Send an encoded preview frame, skipping clients that are behind."""
        if self.taps:
            self._tap("preview", client_id, frame)
        for conn in list(self._clients.get(client_id, ())) if client_id is not None else ():
            if len(conn.outbox) < PREVIEW_BACKLOG:
                conn.send(frame)

    def broadcast(self, message: dict) -> None:
        """Send a JSON message to every connection."""
        if not self._clients:
            return
        text = to_json(message)
        for conns in list(self._clients.values()):
            for conn in list(conns):
                conn.send(text)

    def broadcast_status(self) -> None:
        """Tell everyone the queue counts, once per loop iteration however many changes."""
        if (self._clients or self.taps) and not self._status_scheduled:
            self._status_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_status)

    def _send_status(self) -> None:
        self._status_scheduled = False
        if self.taps:
            self._tap("queue_changed")
        if self._clients:
            self.broadcast({"type": "status", "data": {"queue": self.status()}})

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """The ``GET /ws`` route (a tap's dialect when its query parameter is given)."""
        if self._dialects and "client_id" not in request.query:
            for param, handler in self._dialects.items():
                if param in request.query:
                    return await handler(request)
        client_id = request.query.get("client_id") or uuid.uuid4().hex
        if not CLIENT_ID.match(client_id):
            raise ApiError(
                400, "invalid_client_id", "client_id must be 1-128 letters, digits or _.:-"
            )
        batch = BATCH_VALUES.get(request.query.get("batch", "0").lower())
        if batch is None:
            raise ApiError(400, "invalid_request", "batch must be 1, 0, true or false")
        # compress=False: events are small JSON; deflating each one costs more than it saves.
        ws = web.WebSocketResponse(heartbeat=30, compress=False, max_msg_size=64 * 1024)
        await ws.prepare(request)
        conn = Connection(ws, client_id, self.max_backlog, batch)
        self._clients.setdefault(client_id, set()).add(conn)
        conn.task = asyncio.ensure_future(conn.write_forever())
        hello: dict[str, Any] = {"client_id": client_id, "queue": self.status()}
        if batch:
            hello["batch"] = True  # so a client can tell this server batches
        conn.send(to_json({"type": "status", "data": hello}))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT and message.data == "ping":
                    conn.send(to_json({"type": "pong", "data": {}}))
                # Anything else from the client is ignored: the API is HTTP, this is a feed.
        finally:
            await self._drop(conn)
        return ws

    async def _drop(self, conn: Connection) -> None:
        conn.closed = True
        conn.ready.set()
        conns = self._clients.get(conn.client_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._clients[conn.client_id]
        if conn.task is not None:
            conn.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await conn.task

    async def close_all(self) -> None:
        """Close every connection (server shutdown)."""
        for conns in list(self._clients.values()):
            for conn in list(conns):
                with contextlib.suppress(Exception):
                    await conn.ws.close(code=1001, message=b"server shutting down")
                await self._drop(conn)
