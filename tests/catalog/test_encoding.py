"""Canonical encoding: round trips and strict, bounded decoding."""

from __future__ import annotations

import msgpack
import pytest

from p2pdata.catalog import decode, encode
from p2pdata.errors import MalformedData, TooLarge


def test_round_trip_and_key_order() -> None:
    value = {"b": [1, -2, 2**40], "a": {"y": b"\x00\xff", "x": "text"}, "c": None, "d": True}
    data = encode(value)
    assert data == encode(dict(reversed(list(value.items()))))
    assert decode(data, max_size=len(data)) == value


def test_size_checked_before_decoding() -> None:
    # Not even valid msgpack: the size bound must trip first.
    with pytest.raises(TooLarge):
        decode(b"\xc1" * 101, max_size=100)


@pytest.mark.parametrize(
    "value",
    [1.5, {1: "int key"}, {"a": {b"k": 1}}, [set()]],
    ids=["float", "int-key", "bytes-key", "set"],
)
def test_encode_rejects_non_canonical_types(value: object) -> None:
    with pytest.raises(MalformedData):
        encode(value)


def test_decode_rejects_floats_and_unsorted_maps() -> None:
    with pytest.raises(MalformedData):
        decode(msgpack.packb({"a": 1.0}), max_size=100)
    unsorted = msgpack.packb({"b": 1, "a": 2})
    with pytest.raises(MalformedData, match="canonical"):
        decode(unsorted, max_size=100)


def test_decode_rejects_non_minimal_integer() -> None:
    # 1 as uint32 instead of a positive fixint.
    with pytest.raises(MalformedData, match="canonical"):
        decode(b"\xce\x00\x00\x00\x01", max_size=100)


def test_decode_rejects_garbage_and_trailing_bytes() -> None:
    with pytest.raises(MalformedData):
        decode(b"\xc1", max_size=100)
    with pytest.raises(MalformedData):
        decode(encode(1) + b"\x00", max_size=100)


def test_decode_rejects_deep_nesting_without_recursion_error() -> None:
    with pytest.raises(MalformedData, match="nested"):
        decode(b"\x91" * 600 + b"\xc0", max_size=10_000)
