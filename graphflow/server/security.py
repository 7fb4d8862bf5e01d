"""Security middlewares: a localhost server is attacked through the user's own browser.

- **Host check (DNS rebinding).** A page on ``evil.example`` whose DNS later points at
  127.0.0.1 talks to us with ``Host: evil.example``. Requests are accepted only when the Host
  names an IP address, ``localhost``, the bind address, or a host listed in ``allow_origins``.
  A rebinding attack always carries a domain name, so IP literals are safe to accept (that is
  what makes ``http://192.168.1.5:8188`` work on a LAN bind with a token).
- **Origin check (cross-site requests).** A request with an ``Origin`` header must come from
  the server's own origin (same host and port as the Host header) or one listed in
  ``allow_origins``; ``Origin: null`` is refused. Browsers send Origin on every cross-origin
  request, on every POST/PUT/DELETE and on websocket handshakes, so a web page can neither
  queue jobs nor open ``/ws``. Cross-site subresource loads that carry no Origin (an
  ``<img>`` on another site) are refused through ``Sec-Fetch-Site`` too, unless some origin
  is allowed; navigations (a link to the editor) pass.
- **CORS** is answered only for ``allow_origins`` (the preflight needs no token).
- **Auth token.** When configured, every route needs ``Authorization: Bearer TOKEN``, or
  ``?token=TOKEN`` where a browser cannot set headers (websocket, ``<img src>``).
- **Headers.** ``nosniff``, ``no-referrer`` (a ``?token=`` never leaks through Referer),
  and no framing (clickjacking).

Body size limits are enforced where bodies are read (``routes_common.read_body`` and the
upload route) and by the application's ``client_max_size``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from .routes_common import ApiError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def split_host(value: str) -> tuple[str, str]:
    """``host:port`` (IPv6 in brackets) → (lower-case host without brackets, port or "")."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, port
    return value, ""


def normalise_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, default ports dropped; None if malformed."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 80 if parts.scheme == "http" else 443
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme}://{host}{suffix}"


class OriginPolicy:
    """Which Host and Origin values the server accepts."""

    def __init__(self, bind_host: str, allow_origins: Iterable[str] = ()):
        self.allowed_origins: set[str] = set()
        self.allowed_hosts: set[str] = set(LOOPBACK_NAMES)
        bind = bind_host.strip("[]").lower()
        if bind and bind not in ("0.0.0.0", "::"):
            self.allowed_hosts.add(bind)
        for origin in allow_origins:
            normal = normalise_origin(origin)
            if normal is None:
                raise ValueError(
                    f"--allow-origin {origin!r} is not an http(s)://host[:port] origin"
                )
            self.allowed_origins.add(normal)
            self.allowed_hosts.add(split_host(urlsplit(normal).netloc)[0])

    def host_allowed(self, host_header: str) -> bool:
        """True when the Host header cannot come from a DNS-rebinding page."""
        host, _ = split_host(host_header)
        return _is_ip(host) or host in self.allowed_hosts

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        """True for the server's own origin or an allowed one."""
        normal = normalise_origin(origin)
        if normal is None:
            return False
        if normal in self.allowed_origins:
            return True
        # Same origin: the page was loaded from exactly the host:port this request targets.
        own_host, own_port = split_host(host_header)
        parts = urlsplit(normal)
        origin_host, origin_port = split_host(parts.netloc)
        if not origin_port:
            origin_port = "80" if parts.scheme == "http" else "443"
        if not own_port:
            own_port = origin_port if parts.scheme in ("http", "https") else ""
        return origin_host == own_host and origin_port == own_port


def _forbidden(code: str, message: str) -> ApiError:
    return ApiError(403, code, message)


def origin_middleware(policy: OriginPolicy) -> Any:
    """Refuse foreign Host and Origin headers; answer CORS for allowed origins."""

    @web.middleware
    async def check_origin(request: web.Request, handler: Any) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if not host or not policy.host_allowed(host):
            raise _forbidden(
                "forbidden_host",
                f"Host {host!r} is not this server (possible DNS rebinding); "
                "start the server with --allow-origin to accept it",
            )
        origin = request.headers.get("Origin")
        cors_origin = None
        if origin is not None:
            if not policy.origin_allowed(origin, host):
                raise _forbidden(
                    "forbidden_origin",
                    f"requests from origin {origin!r} are refused; "
                    "start the server with --allow-origin to accept it",
                )
            if normalise_origin(origin) in policy.allowed_origins:
                cors_origin = origin
        else:
            site = request.headers.get("Sec-Fetch-Site", "")
            mode = request.headers.get("Sec-Fetch-Mode", "")
            cross_site_subresource = site == "cross-site" and mode != "navigate"
            if cross_site_subresource and not (
                policy.allowed_origins and request.method in ("GET", "HEAD")
            ):
                raise _forbidden("forbidden_origin", "cross-site requests are refused")
        if request.method == "OPTIONS" and cors_origin is not None:
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": cors_origin,
                    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type",
                    "Access-Control-Max-Age": "600",
                    "Vary": "Origin",
                },
            )
        response = await handler(request)
        if cors_origin is not None and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = cors_origin
            response.headers["Vary"] = "Origin"
        return response

    return check_origin


def auth_middleware(token: str) -> Any:
    """Require the token on every route (header, or ``?token=`` where headers are impossible)."""
    expected = token.encode()

    @web.middleware
    async def check_token(request: web.Request, handler: Any) -> web.StreamResponse:
        given = ""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
        elif "token" in request.query:
            given = request.query["token"]
        if not given or not hmac.compare_digest(given.encode(), expected):
            error = ApiError(
                401,
                "unauthorized",
                "this server needs its token: Authorization: Bearer TOKEN (or ?token=TOKEN)",
            )
            response = error.response()
            response.headers["WWW-Authenticate"] = 'Bearer realm="graphflow"'
            return response
        return await handler(request)

    return check_token


def security_headers(*, cross_origin_reads: bool = False) -> Any:
    """An ``on_response_prepare`` hook adding the headers every response carries.

    ``cross_origin_reads``: some origin is allowed, so its pages may embed our images
    (``Cross-Origin-Resource-Policy`` is then left out).
    """

    async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        if not cross_origin_reads:
            headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")

    return add_headers
