"""ncnn's text ``.param`` format: the layer list of a network, parsed and checked.

A ``.param`` file is text: the magic number 7767517, then ``LAYER_COUNT BLOB_COUNT``, then one
line per layer, in run order: ``TYPE NAME INPUTS OUTPUTS`` followed by the input and output blob
names and ``KEY=VALUE`` parameters (array parameters as key −23300−K with ``count,v1,v2...``).
``ncnn_convert`` reads the matching ``.bin`` and maps the layers to PyTorch; this module only
turns the text into ``NcnnLayer`` records, refusing malformed files with a message naming the
line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphflow.errors import GraphflowError

PARAM_MAGIC = 7767517


class NcnnConversionError(GraphflowError):
    """An ncnn model that this converter cannot read or map (the message names the layer)."""


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param`` file."""

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[int, Any]

    def get(self, key: int, default: Any = None) -> Any:
        """Parameter ``key`` (ncnn numbers them), or ``default`` when the line omits it."""
        return self.params.get(key, default)

    def __str__(self) -> str:
        return f"layer {self.name} ({self.type})"


def _number(text: str, where: str) -> int | float:
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise NcnnConversionError(f"{where}: {text!r} is not a number") from None


def parse_param(text: str, source: str = ".param") -> list[NcnnLayer]:
    """The layers of a text ``.param`` file, in file order (which is ncnn's run order)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != str(PARAM_MAGIC):
        raise NcnnConversionError(
            f"{source} is not a text ncnn .param file (its first line must be {PARAM_MAGIC}; "
            "binary .param.bin files are not supported)"
        )
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise NcnnConversionError(f"{source}: line 2 must be 'LAYER_COUNT BLOB_COUNT'") from None
    layers = []
    for number, line in enumerate(lines[2:], start=3):
        where = f"{source} line {number}"
        fields = line.split()
        try:
            kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        except (IndexError, ValueError):
            raise NcnnConversionError(
                f"{where}: expected 'TYPE NAME INPUTS OUTPUTS ...', got {line[:60]!r}"
            ) from None
        rest = fields[4:]
        if len(rest) < n_in + n_out:
            raise NcnnConversionError(f"{where} ({name}): fewer blob names than declared")
        params: dict[int, Any] = {}
        for item in rest[n_in + n_out :]:
            key_text, sep, value = item.partition("=")
            if not sep:
                raise NcnnConversionError(f"{where} ({name}): {item!r} is not KEY=VALUE")
            key = int(_number(key_text, where))
            if key <= -23300:  # ncnn writes array parameter K as key -23300-K: "count,v1,v2..."
                count, *values = (_number(v, where) for v in value.split(","))
                if count != len(values):
                    raise NcnnConversionError(f"{where} ({name}): array {item!r} length mismatch")
                params[-23300 - key] = values
            else:
                params[key] = _number(value, where)
        layers.append(
            NcnnLayer(kind, name, tuple(rest[:n_in]), tuple(rest[n_in : n_in + n_out]), params)
        )
    if len(layers) != layer_count:
        raise NcnnConversionError(
            f"{source} declares {layer_count} layers but lists {len(layers)}; the file is cut"
        )
    return layers
