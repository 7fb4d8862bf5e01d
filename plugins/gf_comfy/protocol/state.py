"""What the ComfyUI dialect keeps per application (``app[COMFY]``) and its error replies."""

from __future__ import annotations

import functools
import itertools
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from graphflow.server.routes_common import json_response

from .feed import ComfyFeed
from .prompts import Conversions, PromptRefused

HISTORY_CACHE_BYTES = 32 << 20


@dataclass
class ComfyState:
    """The ComfyUI websocket feed, the prompt counter (ComfyUI's default ``number``), the
    rendered history entries (a finished job's entry never changes) and the last prompts
    converted (for a prompt queued again)."""

    feed: ComfyFeed
    counter: itertools.count = field(default_factory=itertools.count)
    rendered: OrderedDict = field(default_factory=OrderedDict)
    rendered_bytes: int = 0
    conversions: Conversions = field(default_factory=Conversions)

    def next_number(self) -> int:
        """The next default prompt number (0, 1, 2 ...)."""
        return next(self.counter)

    def history_text(self, job: Any, render: Callable[[Any], str | None]) -> str | None:
        """The JSON text of a finished job's history entry, rendered once (keyed by id and
        finish time, so a reused prompt id is rendered anew); at most 32 MiB are kept."""
        key = (job.id, job.finished_at)
        text = self.rendered.get(key)
        if text is not None:
            self.rendered.move_to_end(key)
            return text
        text = render(job)
        if text is None:
            return None
        self.rendered[key] = text
        self.rendered_bytes += len(text)
        while self.rendered_bytes > HISTORY_CACHE_BYTES and len(self.rendered) > 1:
            _, old = self.rendered.popitem(last=False)
            self.rendered_bytes -= len(old)
        return text


COMFY = web.AppKey("gf_comfy_protocol", ComfyState)


def comfy_error(status: int, kind: str, message: str) -> PromptRefused:
    """A refusal in ComfyUI's shape: ``{"error": {type, message, details, extra_info},
    "node_errors": {}}``."""
    return PromptRefused(kind, message, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def comfy_replies(handler: Handler) -> Handler:
    """Answer a :class:`PromptRefused` raised by ``handler`` in ComfyUI's error shape (the
    app's error middleware would give graphflow's)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PromptRefused as refusal:
            return json_response(refusal.body, status=refusal.status)

    return wrapped
