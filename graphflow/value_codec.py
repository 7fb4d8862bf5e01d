"""Safe serialisation of node output values: a JSON manifest plus safetensors, never pickle.

The disk cache tier (``disk_cache.py``) stores what :func:`encode_value` accepts and skips
everything else. Supported kinds:

- ``None``, ``bool``, ``int``, ``float`` (NaN and infinities included), ``str`` — exact
  types only (an ``IntEnum`` or a ``str`` subclass is not silently turned into its base);
- ``bytes``, torch tensors (dense, on any device: stored from the CPU, put back on their
  device when it exists here) and numpy arrays / scalars of numeric dtypes;
- ``list``, ``tuple`` and ``dict`` (keys of the scalar kinds above) of supported values;
- instances of classes registered here: :func:`register_dataclass` for plain-data
  dataclasses, :func:`register_codec` for anything else a pack can turn into supported
  values and back. Lookup is by exact type, so a subclass must register itself.

Anything else — a model handle, a module, a generator, an open file — raises
:class:`Unencodable`, naming where in the value it sits. Decoding runs no code but the
registered ``from_data`` functions: a cache file can hold data, never behaviour.

Encoded form: a JSON tree in which plain JSON values stand for themselves and tagged
objects ``{"$": kind, ...}`` for the rest; tensor data lives in a safetensors payload whose
``__metadata__["graphflow"]`` holds the tree (:func:`pack`, :func:`unpack`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 64
"""Deeper values are not encoded (:class:`Unencodable`)."""

_TAG = "$"
_METADATA_KEY = "graphflow"


class Unencodable(ValueError):
    """A value (or a part of it, at ``path``) has no safe encoding; it stays memory-only."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UndecodableError(ValueError):
    """Stored data cannot be turned back into a value (corrupt, or an unknown type name)."""


class MissingCodec(UndecodableError):
    """Stored data names a type whose codec is not registered in this process."""


@dataclass(frozen=True)
class TypeCodec:
    """How one registered type is stored: ``to_data`` returns supported values,
    ``from_data`` rebuilds the object from them. ``name`` is stored in the file."""

    name: str
    cls: type
    to_data: Callable[[Any], Any]
    from_data: Callable[[Any], Any]


_BY_TYPE: dict[type, TypeCodec] = {}
_BY_NAME: dict[str, TypeCodec] = {}


def register_codec(
    cls: type, name: str, to_data: Callable[[Any], Any], from_data: Callable[[Any], Any]
) -> TypeCodec:
    """Let values of exactly ``cls`` be stored on disk under the stable ``name``.

    ``name`` is written into cache files, so it must not change when the class moves
    (e.g. ``"diffusion.Latent"``). Registering the same class under the same name again is
    a no-op; a name or class already taken by another registration is a ValueError.
    """
    if not isinstance(cls, type):
        raise ValueError(f"register_codec: {cls!r} is not a class")
    if not name or not isinstance(name, str):
        raise ValueError(f"register_codec: the name of {cls.__qualname__} must be a string")
    codec = TypeCodec(name, cls, to_data, from_data)
    known = _BY_NAME.get(name)
    if known is not None and known.cls is not cls:
        raise ValueError(
            f"codec name {name!r} is already used by {known.cls.__module__}."
            f"{known.cls.__qualname__}; choose another name for {cls.__qualname__}"
        )
    other = _BY_TYPE.get(cls)
    if other is not None and other.name != name:
        raise ValueError(f"{cls.__qualname__} is already registered as {other.name!r}")
    if known is not None and other is not None:
        return known
    _BY_NAME[name] = _BY_TYPE[cls] = codec
    return codec


def register_dataclass(cls: type, name: str) -> type:
    """Register a plain-data dataclass: its fields are stored (each must be a supported
    value when an instance is encoded) and it is rebuilt with ``cls(**init fields)``; fields
    with ``init=False`` are set afterwards. Returns ``cls``."""
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise ValueError(f"register_dataclass: {cls!r} is not a dataclass type")
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    init = {f.name for f in fields if f.init}

    def to_data(obj: Any) -> dict[str, Any]:
        return {n: getattr(obj, n) for n in names}

    def from_data(data: dict[str, Any]) -> Any:
        obj = cls(**{k: v for k, v in data.items() if k in init})
        for key, value in data.items():
            if key not in init:
                object.__setattr__(obj, key, value)
        return obj

    register_codec(cls, name, to_data, from_data)
    return cls


def registered_codecs() -> dict[str, type]:
    """Registered names and their classes."""
    return {name: codec.cls for name, codec in _BY_NAME.items()}


# -- encoding ---------------------------------------------------------------------------------

_SCALARS = (type(None), bool, int, str)


class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, Any] = {}
        self._keys: dict[int, str] = {}  # id(tensor) -> key: one tensor stored once
        self._keep: list[Any] = []  # keeps ids valid while encoding

    def encode(self, value: Any, path: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise Unencodable(path, f"nested deeper than {MAX_DEPTH} levels")
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is float:
            return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
        if kind is list:
            return [self.encode(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        if kind is tuple:
            items = [self.encode(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
            return {_TAG: "tuple", "items": items}
        if kind is dict:
            return self._dict(value, path, depth)
        if kind is bytes:
            return {_TAG: "bytes", "key": self._bytes(value)}
        codec = _BY_TYPE.get(kind)
        if codec is not None:
            data = self.encode(codec.to_data(value), f"{path}<{codec.name}>", depth + 1)
            return {_TAG: "obj", "type": codec.name, "v": data}
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.Tensor):
            return self._tensor(value, path)
        numpy = sys.modules.get("numpy")
        if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
            return self._numpy(value, path, numpy)
        raise Unencodable(path, f"{kind.__module__}.{kind.__qualname__} has no codec")

    def _dict(self, value: dict, path: str, depth: int) -> Any:
        if all(type(k) is str for k in value) and _TAG not in value:
            return {k: self.encode(v, f"{path}[{k!r}]", depth + 1) for k, v in value.items()}
        items = []
        for key, item in value.items():
            if type(key) not in (*_SCALARS, float):
                raise Unencodable(path, f"dict key of type {type(key).__qualname__}")
            items.append([self.encode(key, path, depth + 1), self.encode(item, path, depth + 1)])
        return {_TAG: "dict", "items": items}

    def _store(self, tensor: Any, original: Any) -> str:
        key = self._keys.get(id(original))
        if key is None:
            key = str(len(self.tensors))
            self.tensors[key] = tensor
            self._keys[id(original)] = key
            self._keep.append(original)
        return key

    def _tensor(self, value: Any, path: str) -> dict:
        import torch

        if value.layout != torch.strided or value.is_quantized or value.is_complex():
            raise Unencodable(path, f"tensor of layout {value.layout} / dtype {value.dtype}")
        if value.device.type == "meta":
            raise Unencodable(path, "tensor on the meta device (no data)")
        cpu = value.detach().to("cpu").contiguous()
        return {_TAG: "tensor", "key": self._store(cpu, value), "device": str(value.device)}

    def _numpy(self, value: Any, path: str, numpy: Any) -> dict:
        import torch

        array = numpy.ascontiguousarray(value)
        if array.dtype.kind not in "biuf":
            raise Unencodable(path, f"numpy array of dtype {array.dtype}")
        try:
            tensor = torch.from_numpy(array.copy())
        except TypeError as error:
            raise Unencodable(path, f"numpy dtype {array.dtype}: {error}") from None
        scalar = isinstance(value, numpy.generic)
        return {_TAG: "npscalar" if scalar else "ndarray", "key": self._store(tensor, value)}

    def _bytes(self, value: bytes) -> str:
        import torch

        tensor = torch.frombuffer(bytearray(value), dtype=torch.uint8) if value else None
        if tensor is None:
            tensor = torch.zeros(0, dtype=torch.uint8)
        return self._store(tensor, value)


def encode_value(value: Any, path: str = "value") -> tuple[Any, dict[str, Any]]:
    """(JSON tree, tensors by key) for ``value``; raises :class:`Unencodable`."""
    encoder = _Encoder()
    tree = encoder.encode(value, path)
    return tree, encoder.tensors


# -- decoding ---------------------------------------------------------------------------------


def _restore_device(tensor: Any, device: str) -> Any:
    """Back to the device it was stored from, when that device exists here (else CPU)."""
    if device == "cpu":
        return tensor
    import torch

    kind, _, index = device.partition(":")
    if kind == "cuda" and torch.cuda.is_available():
        if not index or int(index) < torch.cuda.device_count():
            return tensor.to(device)
    elif kind == "mps" and torch.backends.mps.is_available():
        return tensor.to(device)
    return tensor


class _Decoder:
    def __init__(self, tensors: dict[str, Any]):
        self.tensors = tensors
        self._done: dict[str, Any] = {}

    def tensor(self, key: Any) -> Any:
        if key not in self.tensors:
            raise UndecodableError(f"tensor {key!r} is missing from the payload")
        return self.tensors[key]

    def decode(self, tree: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH + 2:
            raise UndecodableError("stored value is nested too deeply")
        if isinstance(tree, list):
            return [self.decode(v, depth + 1) for v in tree]
        if not isinstance(tree, dict):
            return tree
        tag = tree.get(_TAG)
        if tag is None:
            return {k: self.decode(v, depth + 1) for k, v in tree.items()}
        return self._tagged(tag, tree, depth)

    def _tagged(self, tag: str, tree: dict, depth: int) -> Any:
        if tag == "float":
            return float(tree["v"])
        if tag == "tuple":
            return tuple(self.decode(v, depth + 1) for v in tree["items"])
        if tag == "dict":
            return {self.decode(k, depth + 1): self.decode(v, depth + 1) for k, v in tree["items"]}
        if tag == "tensor":
            key = tree["key"]
            if key not in self._done:  # one stored tensor, one object (aliasing kept)
                self._done[key] = _restore_device(self.tensor(key), tree.get("device", "cpu"))
            return self._done[key]
        if tag == "bytes":
            return self.tensor(tree["key"]).numpy().tobytes()
        if tag in ("ndarray", "npscalar"):
            array = self.tensor(tree["key"]).numpy()
            return array[()] if tag == "npscalar" else array
        if tag == "obj":
            codec = _BY_NAME.get(tree["type"])
            if codec is None:
                raise MissingCodec(
                    f"no codec named {tree['type']!r} is registered (is its plugin loaded?)"
                )
            return codec.from_data(self.decode(tree["v"], depth + 1))
        raise UndecodableError(f"unknown stored kind {tag!r}")


def decode_value(tree: Any, tensors: dict[str, Any]) -> Any:
    """The value :func:`encode_value` encoded; raises :class:`UndecodableError`."""
    try:
        return _Decoder(tensors).decode(tree)
    except UndecodableError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UndecodableError(f"malformed stored value: {type(error).__name__}: {error}") from None


# -- the safetensors payload ------------------------------------------------------------------


def pack(manifest: dict, tensors: dict[str, Any]) -> bytes:
    """One safetensors file holding ``tensors``, with ``manifest`` (JSON) in its metadata.

    Without tensors the file is written here, so a value of plain data never imports torch.
    """
    text = json.dumps(manifest, separators=(",", ":"), allow_nan=False)
    if not tensors:
        header = json.dumps({"__metadata__": {_METADATA_KEY: text}}).encode()
        header += b" " * (-len(header) % 8)  # safetensors pads its header to 8 bytes
        return struct.pack("<Q", len(header)) + header
    from safetensors.torch import save

    try:
        return save(_unshared(tensors), metadata={_METADATA_KEY: text})
    except Exception as error:  # a dtype safetensors cannot store
        raise Unencodable("tensors", f"safetensors refused them: {error}") from None


def _unshared(tensors: dict[str, Any]) -> dict[str, Any]:
    """``tensors`` with views of one storage (a VAE posterior's mean and its parameters)
    copied apart: safetensors refuses tensors that share memory."""
    seen: set[int] = set()
    out = {}
    for key, tensor in tensors.items():
        storage = tensor.untyped_storage().data_ptr() if tensor.numel() else None
        shared = storage is not None and storage in seen
        out[key] = tensor.clone() if shared else tensor
        if storage is not None:
            seen.add(storage)
    return out


def unpack(payload: bytes) -> tuple[dict, dict[str, Any]]:
    """(manifest, tensors) of a :func:`pack` payload; raises :class:`UndecodableError`."""
    try:
        (length,) = struct.unpack_from("<Q", payload, 0)
        header = json.loads(payload[8 : 8 + length])
        manifest = json.loads(header["__metadata__"][_METADATA_KEY])
        tensors: dict[str, Any] = {}
        if set(header) - {"__metadata__"}:
            from safetensors.torch import load

            tensors = load(payload)
    except Exception as error:
        raise UndecodableError(f"not a graphflow safetensors payload: {error}") from None
    if not isinstance(manifest, dict):
        raise UndecodableError("the payload's manifest is not an object")
    return manifest, tensors
