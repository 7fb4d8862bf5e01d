"""PNG files carrying fuzzed workflows, then damaged (used by tests/test_document_fuzz.py).

``make_png_case(seed, ...)`` wraps the document of ``docfuzz.make_case(seed, ...)`` in a tEXt,
zTXt or iTXt chunk of a tiny PNG and damages the file: truncation, flipped bytes, a chunk
body changed under a correct CRC (to reach the decompressor and the decoders), a wrong chunk
length, a duplicated chunk. Replay one: ``.venv/bin/python tests/docfuzz.py --png SEED``.
"""

from __future__ import annotations

import random
import struct
import zlib

from docfuzz import TEXTUAL, Case, Catalog, make_case

from graphflow.pngmeta import PNG_SIGNATURE, WORKFLOW_KEY


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_text(kind: bytes, key: str, text: str) -> bytes:
    """A 1×1 grey PNG carrying ``text`` under ``key`` in a tEXt, zTXt or iTXt chunk."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80")
    keyword = key.encode("latin-1") + b"\0"
    if kind == b"tEXt":
        body = keyword + text.encode("latin-1", "replace")
    elif kind == b"zTXt":
        body = keyword + b"\0" + zlib.compress(text.encode("latin-1", "replace"))
    else:
        body = keyword + b"\1\0" + b"en\0" + b"\0" + zlib.compress(text.encode("utf-8"))
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(kind, body)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


TEXT_KINDS = (b"tEXt", b"zTXt", b"iTXt")


def _png_chunks(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each whole chunk after the signature."""
    spans, offset = [], len(PNG_SIGNATURE)
    while offset + 12 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        spans.append((offset, min(len(data), offset + 12 + length)))
        offset += 12 + length
    return spans


def _rebody(rng: random.Random, data: bytes) -> bytes:
    """Damage the text chunk's body but give it a correct CRC (reaches the decoders)."""
    texts = [
        (a, b) for a, b in _png_chunks(data) if data[a + 4 : a + 8] in TEXT_KINDS and b - a >= 12
    ]
    if not texts:
        return data
    start, end = texts[0]
    kind, body = data[start + 4 : start + 8], bytearray(data[start + 8 : end - 4])
    key_end = body.find(b"\0") + 1
    choice = rng.randrange(5)
    if choice == 0:  # cut the compressed stream or the text short
        body = body[: rng.randrange(key_end, len(body) + 1)]
    elif choice == 1:  # garbage after the keyword
        body[key_end:] = bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
    elif choice == 2:  # no NUL after the keyword
        body = body.replace(b"\0", b"_")
    elif choice == 3:  # bytes that are not UTF-8 in the middle
        at = rng.randrange(key_end, len(body) + 1)
        body[at:at] = b"\xff\xfe\xc3"
    else:  # a flipped byte
        if len(body) > key_end:
            body[rng.randrange(key_end, len(body))] ^= 1 << rng.randrange(8)
    return data[:start] + png_chunk(kind, bytes(body)) + data[end:]


def _bad_length(rng: random.Random, data: bytes) -> bytes:
    spans = _png_chunks(data)
    if not spans:
        return data
    start, _ = rng.choice(spans)
    length = rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 16)])
    return data[:start] + struct.pack(">I", length) + data[start + 4 :]


PNG_DAMAGE = {
    "truncate": TEXTUAL["truncate"],
    "flip_bytes": TEXTUAL["flip_bytes"],
    "rebody": _rebody,
    "bad_length": _bad_length,
    "duplicate_chunk": lambda rng, data: data[:-12] + data[33:-12] + data[-12:],
}


def make_png_case(seed: int, corpus: dict[str, dict], catalog: Catalog) -> Case:
    """A PNG carrying the workflow of document case ``seed``, then damaged once or twice."""
    document = make_case(seed, corpus, catalog)
    rng = random.Random(seed)
    kind = rng.choice(TEXT_KINDS)
    key = rng.choice([WORKFLOW_KEY, WORKFLOW_KEY, "Comment"])
    data = png_with_text(kind, key, document.payload.decode("utf-8", "replace"))
    kinds = [f"png:{kind.decode()}"]
    for _ in range(rng.choice([0, 1, 1, 2])):
        damage = rng.choice(sorted(PNG_DAMAGE))
        kinds.append(f"png:{damage}")
        data = PNG_DAMAGE[damage](rng, data)
    return Case(seed, document.base, (*document.kinds, *kinds), data)
