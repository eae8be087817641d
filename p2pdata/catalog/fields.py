"""Strict readers for decoded maps: a wrong type or a missing field names itself."""

from __future__ import annotations

from typing import Any, TypeVar

from p2pdata.errors import MalformedData

T = TypeVar("T")


def require_map(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedData(f"{where}: expected a map, got {type(value).__name__}")
    return value


def field(data: dict[str, Any], key: str, kind: type[T], where: str, default: Any = ...) -> T:
    """Return data[key], checked to be a `kind`; missing is an error unless a default is given."""
    if key not in data:
        if default is ...:
            raise MalformedData(f"{where}: missing field {key!r}")
        return default
    value = data[key]
    # bool is an int subclass; never accept one for the other.
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise MalformedData(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def str_list(data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    items = field(data, key, list, where, default=[])
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise MalformedData(f"{where}.{key}[{index}]: expected str, got {type(item).__name__}")
    return tuple(items)
