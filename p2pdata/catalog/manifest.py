"""Dataset manifests: what a dataset is, file by file, and how to swarm it."""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from p2pdata.catalog.encoding import encode
from p2pdata.catalog.fields import field as get
from p2pdata.catalog.fields import require_map, str_list
from p2pdata.errors import MalformedData, UnsafePath

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
FORMATS = ("parquet", "tfrecord", "csv", "files")
ACCESS_MODES = ("public", "restricted")
_MAX_NAME = 128


def check_name(name: str, what: str = "dataset name") -> str:
    if len(name) > _MAX_NAME or not NAME_PATTERN.fullmatch(name):
        raise MalformedData(
            f"{what} {name!r} must match [a-z0-9][a-z0-9._-]* (at most {_MAX_NAME} characters)"
        )
    return name


RESERVED_PREFIX = ".p2pdata-"  # the store's own files in a landed dataset (marker, tier)
MAX_FILE_SIZE = 2**50  # 1 PiB: beyond any real file, far inside SQLite's 64-bit integers
MAX_TOTAL_SIZE = 2**56


def _unsafe_character(char: str) -> bool:
    """Control characters (escape sequences start with ESC) and format characters: bidi
    overrides and isolates, zero-width joiners, which make a name show as another."""
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def check_relative_path(path: str) -> str:
    """Accept only a normalised relative POSIX path without `..`, reserved or deceptive names."""
    if not path or "\x00" in path:
        raise UnsafePath(f"file path {path!r} is empty or has a NUL byte")
    bad = next((c for c in path if _unsafe_character(c)), None)
    if bad is not None:
        raise UnsafePath(f"file path {path!r} has the control or formatting character "
                         f"U+{ord(bad):04X} ({unicodedata.name(bad, 'unnamed')})")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path) or "\\" in path:
        raise UnsafePath(f"file path {path!r} is absolute")
    parts = path.split("/")
    if ".." in parts:
        raise UnsafePath(f"file path {path!r} contains '..'")
    # normpath keeps a lone "." as it is, so check components too.
    if posixpath.normpath(path) != path or "." in parts:
        raise UnsafePath(f"file path {path!r} is not normalised")
    if any(part.startswith(RESERVED_PREFIX) for part in parts):
        raise UnsafePath(f"file path {path!r}: names starting {RESERVED_PREFIX!r} are reserved "
                         "for the store's own files")
    return path


def check_distinct_paths(paths: Iterable[str], where: str = "files") -> None:
    """Refuse two paths that are one name after Unicode normalisation (NFKC): they would
    show as one, and land as one on a file system that normalises."""
    seen: dict[str, str] = {}
    for path in paths:
        key = unicodedata.normalize("NFKC", path)
        if key in seen and seen[key] != path:
            raise UnsafePath(f"{where}: {seen[key]!r} and {path!r} are the same name after "
                             "Unicode normalisation")
        seen[key] = path


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, value: Any, where: str) -> FileEntry:
        data = require_map(value, where)
        path = check_relative_path(get(data, "path", str, where))
        size = get(data, "size", int, where)
        digest = get(data, "sha256", bytes, where)
        if not 0 <= size <= MAX_FILE_SIZE:
            raise MalformedData(f"{where}.size: {size} is not a file size (0 to {MAX_FILE_SIZE})")
        if len(digest) != 32:
            raise MalformedData(f"{where}.sha256: expected 32 bytes, got {len(digest)}")
        return cls(path, size, digest)


@dataclass(frozen=True)
class Torrent:
    """A BitTorrent v2 torrent: its info hash (SHA-256, 32 bytes) and the .torrent bytes."""

    info_hash: bytes
    data: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"info_hash": self.info_hash, "data": self.data}

    @classmethod
    def from_dict(cls, value: Any, where: str) -> Torrent:
        data = require_map(value, where)
        info_hash = get(data, "info_hash", bytes, where)
        if len(info_hash) != 32:
            raise MalformedData(f"{where}.info_hash: expected 32 bytes, got {len(info_hash)}")
        return cls(info_hash, get(data, "data", bytes, where))


@dataclass(frozen=True)
class Access:
    mode: str = "public"
    allow: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "allow": list(self.allow)}

    @classmethod
    def from_dict(cls, value: Any, where: str) -> Access:
        data = require_map(value, where)
        mode = get(data, "mode", str, where)
        if mode not in ACCESS_MODES:
            raise MalformedData(f"{where}.mode: expected one of {ACCESS_MODES}, got {mode!r}")
        return cls(mode, str_list(data, "allow", where))


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    owner: str  # cluster id of the publisher
    created: int
    format: str
    files: tuple[FileEntry, ...]
    description: str = ""
    tags: tuple[str, ...] = ()
    license: str = ""
    schema: tuple[Column, ...] = ()
    torrent: Torrent | None = None
    access: Access = field(default_factory=Access)
    # Fields a newer version added: kept so re-encoding keeps the signature valid.
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def id(self) -> str:
        """Content id: SHA-256 of the canonical encoding, hex."""
        return hashlib.sha256(encode(self.to_dict())).hexdigest()

    def with_torrent(self, torrent: Torrent) -> Manifest:
        return replace(self, torrent=torrent)

    def file(self, path: str) -> FileEntry:
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(path)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.extra)
        data.update(
            name=self.name,
            version=self.version,
            owner=self.owner,
            created=self.created,
            format=self.format,
            description=self.description,
            tags=list(self.tags),
            license=self.license,
            schema=[{"name": c.name, "type": c.type} for c in self.schema],
            files=[entry.to_dict() for entry in self.files],
            total_size=self.total_size,
            access=self.access.to_dict(),
        )
        if self.torrent is not None:
            data["torrent"] = self.torrent.to_dict()
        return data

    @classmethod
    def from_dict(cls, value: Any, where: str = "manifest") -> Manifest:
        data = require_map(value, where)
        name = check_name(get(data, "name", str, where))
        where = f"{where}[{name}]"
        version = get(data, "version", str, where)
        check_name(version, f"{where}.version")
        fmt = get(data, "format", str, where)
        if fmt not in FORMATS:
            raise MalformedData(f"{where}.format: expected one of {FORMATS}, got {fmt!r}")
        files = tuple(
            FileEntry.from_dict(item, f"{where}.files[{index}]")
            for index, item in enumerate(get(data, "files", list, where))
        )
        if not files:
            raise MalformedData(f"{where}.files: a dataset has at least one file")
        seen: set[str] = set()
        for entry in files:
            if entry.path in seen:
                raise UnsafePath(f"{where}.files: path {entry.path!r} repeats")
            seen.add(entry.path)
        check_distinct_paths(seen, f"{where}.files")
        if sum(entry.size for entry in files) > MAX_TOTAL_SIZE:
            raise MalformedData(f"{where}.files: sizes add up to over {MAX_TOTAL_SIZE} bytes")
        # A path cannot be both a file and a directory ("a" and "a/b"): it could never land.
        for entry in files:
            parent = posixpath.dirname(entry.path)
            while parent:
                if parent in seen:
                    raise UnsafePath(
                        f"{where}.files: {parent!r} is a file and the directory of {entry.path!r}"
                    )
                parent = posixpath.dirname(parent)
        schema = []
        for index, item in enumerate(get(data, "schema", list, where, default=[])):
            column = require_map(item, f"{where}.schema[{index}]")
            schema.append(
                Column(
                    get(column, "name", str, f"{where}.schema[{index}]"),
                    get(column, "type", str, f"{where}.schema[{index}]"),
                )
            )
        torrent = data.get("torrent")
        manifest = cls(
            name=name,
            version=version,
            owner=get(data, "owner", str, where),
            created=get(data, "created", int, where),
            format=fmt,
            files=files,
            description=get(data, "description", str, where, default=""),
            tags=str_list(data, "tags", where),
            license=get(data, "license", str, where, default=""),
            schema=tuple(schema),
            torrent=None if torrent is None else Torrent.from_dict(torrent, f"{where}.torrent"),
            access=Access.from_dict(
                get(data, "access", dict, where, default={"mode": "public"}), f"{where}.access"
            ),
            extra={k: v for k, v in data.items() if k not in _KNOWN_FIELDS},
        )
        declared = get(data, "total_size", int, where, default=manifest.total_size)
        if declared != manifest.total_size:
            raise MalformedData(f"{where}.total_size: says {declared}, files add up to {manifest.total_size}")
        return manifest


_KNOWN_FIELDS = frozenset(
    [
        "name",
        "version",
        "owner",
        "created",
        "format",
        "files",
        "description",
        "tags",
        "license",
        "schema",
        "torrent",
        "access",
        "total_size",
    ]
)


def parse_ref(ref: str) -> tuple[str | None, str, str | None]:
    """Split `[CLUSTER/]NAME[@VERSION]` into (cluster, name, version)."""
    cluster, _, rest = ref.rpartition("/")
    name, _, version = rest.partition("@")
    check_name(name)
    if version:
        check_name(version, "version")
    return cluster or None, name, version or None
