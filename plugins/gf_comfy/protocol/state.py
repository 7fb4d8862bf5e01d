"""What the ComfyUI dialect keeps per application (``app[COMFY]``) and its error replies."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from graphflow.server.routes_common import json_response

from .feed import ComfyFeed
from .prompts import PromptRefused


@dataclass
class ComfyState:
    """The ComfyUI websocket feed and the prompt counter (ComfyUI's default ``number``)."""

    feed: ComfyFeed
    counter: itertools.count = field(default_factory=itertools.count)

    def next_number(self) -> int:
        """The next default prompt number (0, 1, 2 ...)."""
        return next(self.counter)


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
