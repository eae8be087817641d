"""Canonical msgpack: the exact bytes that signatures cover.

Maps have sorted string keys, there are no floats, bytes stay bytes, times are
integer seconds. Decoding is strict and bounded: the caller's size limit is
checked before a single byte is parsed.
"""

from __future__ import annotations

from typing import Any

import msgpack

from p2pdata.errors import MalformedData, TooLarge

# Bounds on nested structures, so a hostile blob cannot make us allocate much.
_MAX_CONTAINER = 1_000_000
_MAX_BIN = 256 * 1024 * 1024
# Catalogs nest about six deep; a hostile blob nested hundreds deep must be a
# MalformedData, not a RecursionError in the checks below.
_MAX_DEPTH = 32
_MAX_INT = 2**63 - 1


def _check(value: Any, where: str, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise MalformedData(f"{where}: nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, float):
        raise MalformedData(f"{where}: floats are not allowed in canonical data")
    if isinstance(value, int) and not -_MAX_INT - 1 <= value <= _MAX_INT:
        # Every integer must fit SQLite's signed 64 bits, or storing it fails on every sync.
        raise MalformedData(f"{where}: integer {value} is outside the signed 64-bit range")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedData(f"{where}: map keys must be strings, got {type(key).__name__}")
            _check(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", depth + 1)
    elif not (value is None or isinstance(value, bool | int | str | bytes)):
        raise MalformedData(f"{where}: {type(value).__name__} cannot be encoded")


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(item) for item in value]
    return value


def encode(value: Any) -> bytes:
    """Encode to canonical msgpack; the same value always gives the same bytes."""
    _check(value, "$")
    return msgpack.packb(_sorted(value), use_bin_type=True)


def decode(data: bytes, *, max_size: int, what: str = "data") -> Any:
    """Decode canonical msgpack of at most `max_size` bytes, rejecting non-canonical input."""
    if len(data) > max_size:
        raise TooLarge(f"{what} is {len(data)} bytes, over the limit of {max_size}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=min(max_size, _MAX_BIN),
            max_str_len=max_size,
            max_array_len=_MAX_CONTAINER,
            max_map_len=_MAX_CONTAINER,
            max_ext_len=0,
        )
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise MalformedData(f"{what} is not valid msgpack: {exc}") from exc
    _check(value, what)
    if encode(value) != data:
        raise MalformedData(f"{what} is not canonically encoded")
    return value
