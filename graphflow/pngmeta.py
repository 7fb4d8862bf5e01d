"""Workflows embedded in PNG files: the text chunks graphflow writes and reads back.

Saved images carry the workflow that made them (``graphflow_workflow``) and the literal
inputs of every node (``graphflow_parameters``), as JSON in PNG text chunks. Reading needs
no imaging library: the chunks are parsed directly, so ``graphflow run image.png`` works
anywhere.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WORKFLOW_KEY = "graphflow_workflow"
PARAMETERS_KEY = "graphflow_parameters"
MAX_TEXT_BYTES = 64 << 20  # refuse absurd chunks instead of inflating them


class PngMetadataError(ValueError):
    """The file is not a PNG, or its text chunks are damaged."""


def is_png(data: bytes) -> bool:
    """True when ``data`` starts with the PNG signature."""
    return data.startswith(PNG_SIGNATURE)


def png_text_chunks(data: bytes) -> dict[str, str]:
    """All tEXt / zTXt / iTXt entries of a PNG (later duplicates win)."""
    if not is_png(data):
        raise PngMetadataError("not a PNG file")
    texts: dict[str, str] = {}
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        if len(body) != length:
            raise PngMetadataError("truncated PNG chunk")
        offset += 12 + length  # length + type + body + CRC
        if kind == b"IEND":
            break
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        key, _, rest = body.partition(b"\0")
        name = key.decode("latin-1")
        try:
            if kind == b"tEXt":
                texts[name] = rest.decode("latin-1")
            elif kind == b"zTXt":
                texts[name] = _inflate(rest[1:]).decode("latin-1")
            else:
                compressed, _method = rest[0], rest[1]
                _lang, _, rest = rest[2:].partition(b"\0")
                _translated, _, text = rest.partition(b"\0")
                texts[name] = (_inflate(text) if compressed else text).decode("utf-8")
        except (zlib.error, UnicodeDecodeError, IndexError) as error:
            raise PngMetadataError(f"damaged text chunk {name!r}: {error}") from None
    return texts


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_TEXT_BYTES)
    if inflater.unconsumed_tail:
        raise PngMetadataError("text chunk too large")
    return out


def workflow_text_from_png(data: bytes) -> str:
    """The embedded workflow JSON of a graphflow PNG (PngMetadataError if it has none)."""
    texts = png_text_chunks(data)
    if WORKFLOW_KEY not in texts:
        raise PngMetadataError("this PNG holds no graphflow workflow")
    return texts[WORKFLOW_KEY]
