"""value_codec: every supported kind round-trips; anything else is refused, never pickled."""

from __future__ import annotations

import dataclasses
import math
import pickle
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from graphflow import value_codec
from graphflow.value_codec import (
    MissingCodec,
    UndecodableError,
    Unencodable,
    decode_value,
    encode_value,
    pack,
    register_codec,
    register_dataclass,
    unpack,
)


def roundtrip(value: Any) -> Any:
    """Through the JSON tree and the safetensors payload, as the disk tier stores it."""
    tree, tensors = encode_value(value)
    manifest, loaded = unpack(pack({"v": tree}, tensors))
    return decode_value(manifest["v"], loaded)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**80,
        1.5,
        -0.0,
        "",
        "text with ünïcode and \x00",
        [],
        [1, "a", None],
        (),
        (1, (2, 3), [4]),
        {"a": 1, "b": [1.5, "x"]},
        {1: "int key", 2.5: "float key", None: 0, False: "bool key"},
        {"$": "a key that looks like a tag"},
        b"",
        b"\x00\x01binary\xff",
        {"nested": {"deeper": [{"x": (1, 2)}]}},
    ],
)
def test_plain_values_round_trip_with_their_exact_types(value):
    back = roundtrip(value)
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, (list, tuple)):
        assert [type(v) for v in back] == [type(v) for v in value]


def test_non_finite_floats_round_trip():
    back = roundtrip([math.inf, -math.inf, math.nan])
    assert back[0] == math.inf and back[1] == -math.inf and math.isnan(back[2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64])
def test_tensors_round_trip_bit_exactly(dtype):
    tensor = (torch.randn(2, 3, 4) * 100).to(dtype)
    back = roundtrip({"t": tensor, "empty": torch.zeros(0, 5, dtype=dtype)})
    assert back["t"].dtype == dtype and torch.equal(back["t"], tensor)
    assert back["empty"].shape == (0, 5)


def test_non_contiguous_and_view_tensors_round_trip():
    base = torch.arange(24.0).reshape(4, 6)
    value = {"t": base.t(), "a": base[:2], "b": base[2:]}
    back = roundtrip(value)
    for key in value:
        assert torch.equal(back[key], value[key])


def test_one_tensor_used_twice_is_stored_once_and_stays_one_object():
    tensor = torch.ones(3)
    _tree, tensors = encode_value([tensor, tensor])
    assert len(tensors) == 1
    back = roundtrip([tensor, tensor])
    assert back[0] is back[1]


def test_numpy_arrays_and_scalars_round_trip():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    back = roundtrip({"a": array, "s": np.int16(7)})
    assert isinstance(back["a"], np.ndarray) and np.array_equal(back["a"], array)
    assert back["a"].dtype == np.float32
    assert back["s"] == 7 and back["s"].dtype == np.int16


@dataclass
class Point:
    """A plain-data value a pack might define."""

    x: float
    y: float
    tags: list[str] = field(default_factory=list)
    samples: Any = None


@dataclass(frozen=True)
class Frozen:
    """A frozen dataclass with a field set after init."""

    a: int
    b: int = field(init=False, default=0)


register_dataclass(Point, "tests.Point")
register_dataclass(Frozen, "tests.Frozen")


def test_registered_dataclasses_round_trip_nested_with_tensors():
    value = [Point(1.0, 2.0, ["p"], samples=torch.randn(1, 4)), Point(3.0, 4.0)]
    back = roundtrip(value)
    assert [type(p) for p in back] == [Point, Point]
    assert back[0].tags == ["p"] and torch.equal(back[0].samples, value[0].samples)
    assert back[1] == value[1]


def test_frozen_dataclass_with_non_init_field_round_trips():
    value = Frozen(1)
    object.__setattr__(value, "b", 9)
    back = roundtrip(value)
    assert back == value and back.b == 9


def test_register_codec_for_a_non_dataclass_type():
    class Span:
        def __init__(self, start, end):
            self.start, self.end = start, end

    register_codec(Span, "tests.Span", lambda s: [s.start, s.end], lambda d: Span(*d))
    back = roundtrip({"s": Span(2, 5)})
    assert type(back["s"]) is Span and (back["s"].start, back["s"].end) == (2, 5)


def test_a_name_taken_by_another_class_is_refused():
    @dataclass
    class Other:
        """Not Point."""

        x: int = 0

    with pytest.raises(ValueError, match="already used"):
        register_dataclass(Other, "tests.Point")
    register_dataclass(Point, "tests.Point")  # the same registration again: fine
    with pytest.raises(ValueError, match="not a dataclass"):
        register_dataclass(int, "tests.int")


class Handle:
    """Stands for a model handle: no codec."""


class Subclassed(int):
    """An int subclass: not silently stored as an int."""


@pytest.mark.parametrize(
    "value, where",
    [
        (Handle(), "value"),
        ({"model": Handle()}, "value['model']"),
        ([1, (2, threading.Lock())], "value[1][1]"),
        (Subclassed(3), "value"),
        (Point(1.0, 2.0, samples=Handle()), "value<tests.Point>['samples']"),
        ({(1, 2): "tuple key"}, "value"),
        ({1, 2}, "value"),
        (torch.zeros(2, dtype=torch.complex64), "value"),
        (np.array(["a"], dtype=object), "value"),
    ],
)
def test_values_without_a_codec_are_refused_with_where_they_sit(value, where):
    with pytest.raises(Unencodable) as error:
        encode_value(value)
    assert error.value.path == where


def test_an_unregistered_dataclass_is_refused():
    @dataclass
    class Unregistered:
        """Not registered."""

        x: int = 1

    assert dataclasses.is_dataclass(Unregistered)
    with pytest.raises(Unencodable, match="has no codec"):
        encode_value(Unregistered())


def test_too_deep_values_are_refused():
    value: Any = 1
    for _ in range(value_codec.MAX_DEPTH + 5):
        value = [value]
    with pytest.raises(Unencodable, match="deeper"):
        encode_value(value)


def test_nothing_is_ever_pickled(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("dumps", "dump", "loads", "load"):
        monkeypatch.setattr(pickle, name, refuse)
    value = {"t": torch.randn(3), "p": Point(1.0, 2.0), "b": b"x", "n": np.ones(2)}
    back = roundtrip(value)
    assert torch.equal(back["t"], value["t"]) and back["p"] == value["p"]
    with pytest.raises(Unencodable):
        encode_value({"h": Handle()})


def test_the_store_and_codec_sources_use_no_pickling_api():
    from pathlib import Path

    import graphflow.disk_cache

    for module in (value_codec, graphflow.disk_cache):
        source = Path(module.__file__).read_text()
        for banned in ("import pickle", "torch.save", "torch.load", "marshal", "shelve"):
            assert banned not in source, (module.__name__, banned)


def test_the_payload_is_plain_json_and_safetensors():
    tree, tensors = encode_value({"t": torch.ones(2), "p": Point(1.0, 2.0)})
    payload = pack({"v": tree}, tensors)
    from safetensors.torch import load

    assert set(load(payload)) == {"0"}  # a standard safetensors file
    assert b"tests.Point" in payload and b"pickle" not in payload


def test_unknown_type_names_and_garbage_are_undecodable():
    tree, tensors = encode_value(Point(1.0, 2.0))
    tree["type"] = "tests.NotRegistered"
    with pytest.raises(MissingCodec, match="no codec named"):
        decode_value(tree, tensors)
    with pytest.raises(UndecodableError):
        decode_value({"$": "tensor", "key": "9"}, {})
    with pytest.raises(UndecodableError):
        decode_value({"$": "what"}, {})
    with pytest.raises(UndecodableError):
        unpack(b"not safetensors at all")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_come_back_on_their_device():
    tensor = torch.randn(4, device="cuda")
    back = roundtrip(tensor)
    assert back.device == tensor.device and torch.equal(back, tensor)


def test_a_device_missing_here_falls_back_to_the_cpu():
    tree, tensors = encode_value(torch.ones(2))
    tree["device"] = "cuda:99"
    back = decode_value(tree, tensors)
    assert back.device.type == "cpu" and torch.equal(back, torch.ones(2))
