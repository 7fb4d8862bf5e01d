"""What every route shares: structured errors, bounded JSON bodies, query parameters.

Every error the API returns has the shape ``{"error": {"code", "message", ...}}``. Nothing a
client sends can turn into a 500: malformed JSON, a wrong content type, a body over the limit
or a nesting deep enough to exhaust the parser's stack are all 4xx with a message. A real
server bug is a 500 ``internal_error`` with a generic message; its traceback goes to the
server log, never to the client.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..gcpause import gc_paused
from ..settings import Settings, use_settings
from .queue_base import to_json

log = logging.getLogger("graphflow.server")

JSON_TYPE = "application/json"


class ApiError(Exception):
    """An error to return as ``{"error": {"code", "message", ...extra}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": {"code": self.code, "message": self.message, **self.extra}}

    def response(self) -> web.Response:
        """The HTTP response."""
        return json_response(self.to_dict(), status=self.status)


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    """A JSON response (values JSON cannot hold are shown as short reprs, never a 500)."""
    return web.Response(text=to_json(data), status=status, content_type=JSON_TYPE, headers=headers)


def _code_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


def settings_middleware(settings: Settings) -> Any:
    """Run every request with the server's settings current (file choices listed while
    validating, /api/nodes), so several servers in one process each see their own."""

    @web.middleware
    async def with_settings(request: web.Request, handler: Any) -> web.StreamResponse:
        with use_settings(settings):
            return await handler(request)

    return with_settings


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn every failure into a structured JSON error (outermost middleware)."""
    try:
        return await handler(request)
    except ApiError as error:
        return error.response()
    except web.HTTPException as error:
        if error.status < 400:
            raise  # redirects and the like are not errors
        message = error.text or error.reason
        if message.startswith(f"{error.status}:"):
            message = message.split(":", 1)[1].strip()
        body = {"error": {"code": _code_for(error.status), "message": message}}
        headers = {k: v for k, v in error.headers.items() if k.lower() == "allow"}
        return json_response(body, status=error.status, headers=headers)
    except HttpProcessingError as error:  # a malformed body part found while reading it
        return json_response(
            {"error": {"code": "bad_request", "message": error.message or "malformed request"}},
            status=400,
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_response(
            {"error": {"code": "internal_error", "message": "unexpected server error (logged)"}},
            status=500,
        )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes, chunked or not."""
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(
            413, "body_too_large", f"request body of {length} bytes is over the {limit} limit"
        )
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"request body is over the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_bytes(request: web.Request, limit: int, *, allow_empty: bool = False) -> bytes:
    """The raw body of a JSON request: content type checked, size bounded (not parsed)."""
    if not request.body_exists:
        if allow_empty:
            return b""
        raise ApiError(400, "empty_body", "this request needs a JSON body")
    if request.content_type != JSON_TYPE:
        raise ApiError(
            400,
            "wrong_content_type",
            f"expected Content-Type {JSON_TYPE}, got {request.content_type or 'none'}",
        )
    return await read_body(request, limit)


async def read_json(request: web.Request, limit: int, *, allow_empty: bool = False) -> Any:
    """Parse a JSON body: content type checked, size bounded, every parse failure a 400."""
    raw = await read_json_bytes(request, limit, allow_empty=allow_empty)
    if allow_empty and not raw.strip():
        return {}
    if not raw.strip():
        raise ApiError(400, "empty_body", "this request needs a JSON body")
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """``json.loads`` with every failure as a 400 ``invalid_json``."""
    try:
        with gc_paused():  # parsing allocates many small objects; see graphflow/gcpause.py
            return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ApiError(
            400,
            "invalid_json",
            f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
        ) from None
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not UTF-8 text") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON is nested too deeply") from None
    except ValueError:  # a number with more digits than int() reads (about 4,300)
        raise ApiError(400, "invalid_json", "the JSON has a number with too many digits") from None


def int_query(
    request: web.Request, name: str, default: int, *, minimum: int = 0, maximum: int = 1 << 31
) -> int:
    """An integer query parameter within bounds (400 otherwise)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            400, "invalid_parameter", f"{name} must be an integer, got {raw!r}"
        ) from None
    if not minimum <= value <= maximum:
        raise ApiError(
            400, "invalid_parameter", f"{name} must be between {minimum} and {maximum}", name=name
        )
    return value


def require_object(value: Any, what: str) -> dict:
    """400 unless ``value`` is a JSON object."""
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_request", f"{what} must be a JSON object")
    return value
