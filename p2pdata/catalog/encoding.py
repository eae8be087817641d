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


# Bytes that follow a msgpack type byte before the next object (scalars), or the width of
# the length field that follows it (str, bin, ext, array, map); see count_objects.
_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
          0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
_SIZED = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
_EXT = {0xC7: 1, 0xC8: 2, 0xC9: 4}
_ARRAY = {0xDC: 2, 0xDD: 4}
_MAP = {0xDE: 2, 0xDF: 4}


def count_objects(data: bytes, budget: int, what: str = "data") -> int:
    """Count the msgpack objects in `data` without building them; TooLarge past `budget`.

    A few MiB of one-byte empty lists decode into hundreds of MiB of Python objects: this
    walk allocates nothing per object, so the real decode only runs on bounded input.
    Malformed input is left for the decoder to name.
    """
    count, pos, end = 0, 0, len(data)
    pending = 1  # objects still to read, over all open containers
    while pending and pos < end:
        pending -= 1
        count += 1
        if count > budget:
            raise TooLarge(f"{what} holds over {budget} objects")
        byte = data[pos]
        pos += 1
        if byte <= 0x7F or byte >= 0xE0:
            continue
        if byte <= 0x8F:
            pending += 2 * (byte & 0x0F)
        elif byte <= 0x9F:
            pending += byte & 0x0F
        elif byte <= 0xBF:
            pos += byte & 0x1F
        elif byte in _FIXED:
            pos += _FIXED[byte]
        else:
            width = _SIZED.get(byte) or _EXT.get(byte) or _ARRAY.get(byte) or _MAP.get(byte)
            if width is None:
                break  # 0xC1, never used: the decoder refuses it
            length = int.from_bytes(data[pos:pos + width], "big")
            pos += width
            if byte in _SIZED:
                pos += length
            elif byte in _EXT:
                pos += 1 + length
            else:
                pending += length * (2 if byte in _MAP else 1)
    return count


def decode(data: bytes, *, max_size: int, what: str = "data", max_objects: int | None = None) -> Any:
    """Decode canonical msgpack of at most `max_size` bytes (and `max_objects` objects),
    rejecting non-canonical input."""
    if len(data) > max_size:
        raise TooLarge(f"{what} is {len(data)} bytes, over the limit of {max_size}")
    if max_objects is not None:
        count_objects(data, max_objects, what)
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
