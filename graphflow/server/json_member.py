"""Parse a JSON request body and keep the exact text of one of its top-level members.

``POST /api/prompt`` stores the posted workflow as JSON text. Encoding the parsed document
again costs as much as parsing it (~27 ms for 10,000 nodes); the text is already in the
body. :func:`parse_keeping_member` parses the body's top-level object member by member with
the standard library's C scanner, so the parse is the one ``json.loads`` does, and it notes
where the wanted member's value starts and ends on the way.

Anything unusual — not UTF-8 (``json.loads`` also reads UTF-16/32 and a BOM), not an
object, malformed, a NaN or Infinity in the member (which stored JSON spells differently) —
falls back to the caller's ordinary parse: the member text is then None and the caller
encodes the value itself. So the fast path never changes what a body means or which error a
bad body gets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_NON_FINITE = re.compile(r"NaN|Infinity")


class _Unusual(Exception):
    """The body is not the simple case; the ordinary parse takes it."""


def parse_keeping_member(
    raw: bytes, key: str, parse: Callable[[bytes], Any]
) -> tuple[Any, str | None]:
    """``(parse(raw), text)``: the parsed body and the exact JSON text of its top-level
    member ``key`` (None when absent or when the body is not the simple case, which then
    goes through ``parse`` itself, errors and all)."""
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):
            raise _Unusual
        body, member = _scan_object(text, key)
    except (_Unusual, UnicodeDecodeError, ValueError, StopIteration, RecursionError):
        return parse(raw), None
    if member is not None and _NON_FINITE.search(member):
        member = None  # maybe a literal NaN: let the caller's encoder spell it
    return body, member


def _scan_object(text: str, key: str) -> tuple[dict[str, Any], str | None]:
    """The top-level object of ``text`` and the text of member ``key`` (last one wins, as
    in ``json.loads``); raises on anything but a well-formed object."""
    scan = _DECODER.scan_once
    index = _SPACE.match(text, 0).end()
    if text[index : index + 1] != "{":
        raise _Unusual
    index = _SPACE.match(text, index + 1).end()
    body: dict[str, Any] = {}
    member: str | None = None
    if text[index : index + 1] == "}":
        return body, _end(text, index + 1, member)
    while True:
        if text[index : index + 1] != '"':
            raise _Unusual
        name, index = json.decoder.scanstring(text, index + 1)
        index = _SPACE.match(text, index).end()
        if text[index : index + 1] != ":":
            raise _Unusual
        start = _SPACE.match(text, index + 1).end()
        value, index = scan(text, start)
        body[name] = value
        if name == key:
            member = text[start:index]
        index = _SPACE.match(text, index).end()
        separator = text[index : index + 1]
        if separator == "}":
            return body, _end(text, index + 1, member)
        if separator != ",":
            raise _Unusual
        index = _SPACE.match(text, index + 1).end()


def _end(text: str, index: int, member: str | None) -> str | None:
    if _SPACE.match(text, index).end() != len(text):
        raise _Unusual  # text after the object: json.loads says where
    return member
