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
    """All tEXt / zTXt / iTXt entries of a PNG (later duplicates win).

    A text chunk whose CRC does not match, that is cut short, or whose compressed text ends
    early raises :class:`PngMetadataError` (a damaged workflow is never read as another one).
    """
    if not is_png(data):
        raise PngMetadataError("not a PNG file")
    texts: dict[str, str] = {}
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        if len(body) != length:
            raise PngMetadataError("truncated PNG chunk")
        crc = data[offset + 8 + length : offset + 12 + length]
        offset += 12 + length  # length + type + body + CRC
        if kind == b"IEND":
            break
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        key, _, rest = body.partition(b"\0")
        name = key.decode("latin-1")
        if len(crc) != 4 or struct.unpack(">I", crc)[0] != zlib.crc32(kind + body):
            raise PngMetadataError(f"damaged text chunk {name!r}: its checksum does not match")
        try:
            texts[name] = _chunk_text(kind, rest)
        except (zlib.error, UnicodeDecodeError, PngMetadataError) as error:
            raise PngMetadataError(f"damaged text chunk {name!r}: {error}") from None
    return texts


def _chunk_text(kind: bytes, rest: bytes) -> str:
    """The text of a chunk body after its keyword and NUL."""
    if kind == b"tEXt":
        return rest.decode("latin-1")
    if kind == b"zTXt":
        return _inflate(rest[1:]).decode("latin-1")
    if len(rest) < 2:
        raise PngMetadataError("its header is cut short")
    compressed, _method = rest[0], rest[1]
    _lang, _, rest = rest[2:].partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    return (_inflate(text) if compressed else text).decode("utf-8")


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_TEXT_BYTES)
    if inflater.unconsumed_tail:
        raise PngMetadataError("text chunk too large")
    if not inflater.eof:
        raise PngMetadataError("its compressed text ends early")
    return out


def workflow_text_from_png(data: bytes) -> str:
    """The embedded workflow JSON of a graphflow PNG (PngMetadataError if it has none)."""
    texts = png_text_chunks(data)
    if WORKFLOW_KEY not in texts:
        raise PngMetadataError("this PNG holds no graphflow workflow")
    return texts[WORKFLOW_KEY]
