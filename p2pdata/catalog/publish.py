"""Turning a directory into a manifest: walk, hash, detect the format and schema.

Links: symbolic links are refused. One to a file inside the dataset would be
published (and land) as a second copy of that file, so a table would be read
with its rows twice; one that leaves the directory, dangles, or points at a
directory would publish something other than the tree under the directory.
Special files (fifos, sockets, devices) are rejected.

Format: every file is classified by extension (parquet, csv, tfrecord, or
other files); the dataset has that format when all its data files agree. A mix
(Parquet beside CSV, images beside a labels.csv) is refused with the counts of
each, unless the publisher names the format (`files` publishes anything as
plain files). Names starting with `_` or `.` (Hadoop/Spark markers such as
`_SUCCESS`, `.crc`) and notes (README.md, *.txt) are published but do not count
towards the format, as readers skip them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from p2pdata.catalog.catalog import Limits
from p2pdata.catalog.manifest import (
    FORMATS,
    Access,
    Column,
    FileEntry,
    Manifest,
    check_distinct_paths,
    check_name,
    check_relative_path,
)
from p2pdata.catalog.merkle import V2Hasher, V2Hashes
from p2pdata.errors import MalformedData, PublishError

# hashlib releases the GIL on updates this large, so threads hash in parallel.
# A whole number of v2 blocks, so each read feeds V2Hasher whole blocks.
HASH_CHUNK = 1024 * 1024

_EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tfrecord": "tfrecord",
    ".tfrecords": "tfrecord",
    ".tfrec": "tfrecord",
}
_MAX_TAG = 64
# Files that describe the data rather than hold it: they never decide the format.
NOTES = (".md", ".txt", ".rst", ".json", ".yaml", ".yml", ".html", ".pdf")


@dataclass(frozen=True)
class Scan:
    """A manifest and, from the same read, each file's BitTorrent v2 hashes (by path)."""

    manifest: Manifest
    v2: Mapping[str, V2Hashes]


def scan_dataset(
    directory: Path | str,
    *,
    name: str,
    version: str,
    owner: str,
    now: int,
    description: str = "",
    tags: Iterable[str] = (),
    license: str = "",
    access: Access | None = None,
    workers: int | None = None,
    format: str | None = None,
) -> Manifest:
    """Build the manifest of the dataset in `directory`; raise PublishError naming the culprit.

    `format` overrides the one the file names suggest (and a mix of them is then no error).
    """
    return scan_for_publish(
        directory, name=name, version=version, owner=owner, now=now, description=description,
        tags=tags, license=license, access=access, workers=workers, format=format,
    ).manifest


def scan_for_publish(
    directory: Path | str,
    *,
    name: str,
    version: str,
    owner: str,
    now: int,
    description: str = "",
    tags: Iterable[str] = (),
    license: str = "",
    access: Access | None = None,
    workers: int | None = None,
    format: str | None = None,
    piece_size_for: Callable[[int], int] | None = None,
    hybrid: bool = False,
) -> Scan:
    """scan_dataset, plus v2 hashes at `piece_size_for(total size)` when that is given.

    The v2 hashes come from the same read as the SHA-256, so a torrent made
    from them (transfer.make_torrent's `v2=`) needs no second pass over the data.
    `hybrid`: also the v1 piece hashes a hybrid v1+v2 torrent needs.
    """
    try:
        check_name(name)
        check_name(version, "version")
    except MalformedData as exc:
        raise PublishError(str(exc)) from exc
    tag_list = tuple(_check_tag(tag) for tag in tags)
    root = Path(directory)
    if not root.is_dir():
        raise PublishError(f"{root} is not a directory")
    paths = list_files(root)
    try:
        check_distinct_paths(paths, str(root))
    except MalformedData as exc:
        raise PublishError(str(exc)) from exc
    if not paths:
        raise PublishError(f"{root} holds no files: a dataset needs at least one")
    limit = Limits().max_files_per_dataset
    if len(paths) > limit:
        raise PublishError(f"{root} holds {len(paths)} files, over the limit of {limit}")
    if format is not None and format not in FORMATS:
        raise PublishError(f"format {format!r} is not one of {', '.join(FORMATS)}")
    fmt = format or detect_format(paths, root)
    files, v2 = hash_files_v2(root, paths, workers=workers, piece_size_for=piece_size_for,
                              v1=hybrid)
    schema, rows = read_schema(root, paths, fmt)
    manifest = Manifest(
        name=name,
        version=version,
        owner=owner,
        created=now,
        format=fmt,
        files=files,
        description=description,
        tags=tag_list,
        license=license,
        schema=schema,
        access=access or Access(),
        extra={} if rows is None else {"rows": rows},  # `p2pdata info` shows it before any fetch
    )
    return Scan(manifest, v2)


def _check_tag(tag: str) -> str:
    if not 0 < len(tag) <= _MAX_TAG or not tag.isprintable() or any(c.isspace() for c in tag):
        raise PublishError(f"tag {tag!r} must be 1 to {_MAX_TAG} printable characters, no spaces")
    return tag


def list_files(root: Path) -> list[str]:
    """Relative POSIX paths of every file under `root`, sorted; rejects what cannot be published."""
    real_root = os.path.realpath(root)
    found: list[str] = []

    def walk(directory: str, prefix: str) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                relative = prefix + entry.name
                where = os.path.join(root, relative)
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if os.path.commonpath([real_root, target]) != real_root:
                        raise PublishError(f"{where} is a link that leaves the dataset (to {target})")
                    if not os.path.exists(target):
                        raise PublishError(f"{where} is a dangling link (to {target})")
                    if not os.path.isfile(target):
                        raise PublishError(f"{where} links to a directory or special file (to {target})")
                    inside = os.path.relpath(target, real_root)
                    raise PublishError(
                        f"{where} is a link to {inside}, which the dataset already holds: it would "
                        "be published as a second copy (a table would have its rows twice); "
                        "remove the link, or replace it with a copy if two copies are meant"
                    )
                elif entry.is_dir(follow_symlinks=False):
                    walk(entry.path, relative + "/")
                elif entry.is_file(follow_symlinks=False):
                    found.append(_checked(relative, where))
                else:
                    kind = _special_kind(entry.stat(follow_symlinks=False).st_mode)
                    raise PublishError(f"{where} is a {kind}; only regular files can be published")

    try:
        walk(str(root), "")
    except OSError as exc:
        raise PublishError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    return sorted(found)


def _checked(relative: str, where: str) -> str:
    try:
        relative.encode("utf-8")
        return check_relative_path(relative)
    except UnicodeEncodeError as exc:
        raise PublishError(f"{where}: file name is not valid UTF-8") from exc
    except MalformedData as exc:
        raise PublishError(f"{where}: {exc}") from exc


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def hash_file(path: Path, v2: V2Hasher | None = None,
              helper: ThreadPoolExecutor | None = None) -> tuple[int, bytes]:
    """(size, SHA-256) of a regular file, read once in large chunks; `v2` is fed the same bytes.

    With a `helper` thread pool the v2 hashes of each chunk are computed there while
    this thread does the SHA-256, so even a single file keeps two cores busy.
    """
    # O_NONBLOCK: if the file was swapped for a fifo since the walk, open must not hang.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb", buffering=0) as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PublishError(f"{path} is no longer a regular file")
        digest = hashlib.sha256()
        # Two buffers: the helper hashes one while the next chunk is read into the other.
        buffers = [bytearray(HASH_CHUNK), bytearray(HASH_CHUNK)]
        pending: Future[None] | None = None
        size = 0
        while count := handle.readinto(buffers[0]):
            view = memoryview(buffers[0])[:count]
            if v2 is not None and helper is not None:
                if pending is not None:
                    pending.result()  # in order, and the other buffer is free again
                pending = helper.submit(v2.update, view)
            elif v2 is not None:
                v2.update(view)
            digest.update(view)
            size += count
            buffers.reverse()
        if pending is not None:
            pending.result()
    return size, digest.digest()


def hash_files_v2(
    root: Path, paths: list[str], *, workers: int | None = None,
    piece_size_for: Callable[[int], int] | None = None, v1: bool = False,
) -> tuple[tuple[FileEntry, ...], dict[str, V2Hashes]]:
    """Each file's entry (size, SHA-256), hashed in parallel threads, biggest first so the
    cores finish together; plus its v2 hashes at `piece_size_for(total size)` from the same read.

    `v1`: the v1 piece hashes of a hybrid torrent too (a third hash per byte).
    """
    try:
        sizes = {path: (root / path).stat().st_size for path in paths}
    except OSError as exc:
        raise PublishError(f"cannot read {exc.filename}: {exc.strerror}") from exc
    piece_size = None if piece_size_for is None else piece_size_for(sum(sizes.values()))
    order = sorted(paths, key=lambda path: -sizes[path])
    cores = workers or os.cpu_count() or 1
    # Fewer files than cores: each file's v2 hashing gets a thread of its own as well.
    helper = ThreadPoolExecutor(cores) if piece_size and len(paths) < cores else None
    try:
        with ThreadPoolExecutor(max_workers=cores) as pool:
            results = dict(zip(order, pool.map(
                lambda path: _hash_one(root, path, piece_size, v1, helper), order), strict=True))
    finally:
        if helper is not None:
            helper.shutdown()
    entries = []
    v2 = {}
    for path in paths:
        size, digest, hashes = results[path]
        if size != sizes[path]:
            raise PublishError(f"{root / path} changed size while it was being hashed")
        entries.append(FileEntry(path, size, digest))
        if hashes is not None:
            v2[path] = hashes
    return tuple(entries), v2


def _hash_one(root: Path, path: str, piece_size: int | None, v1: bool = False,
              helper: ThreadPoolExecutor | None = None) -> tuple[int, bytes, V2Hashes | None]:
    v2 = None if piece_size is None else V2Hasher(piece_size, v1=v1)
    try:
        size, digest = hash_file(root / path, v2, helper)
    except OSError as exc:
        raise PublishError(f"cannot read {root / path}: {exc.strerror}") from exc
    return size, digest, None if v2 is None else v2.finish()


def file_kind(path: str) -> str | None:
    """The format one file's name suggests, or None for markers and notes."""
    base = path.rsplit("/", 1)[-1].lower()
    if base.startswith(("_", ".")) or base.endswith(NOTES) or base.startswith(("readme", "license")):
        return None
    for extension, kind in _EXTENSIONS.items():
        if base.endswith(extension):
            return kind
    return "files"


def detect_format(paths: list[str], root: Path | str = ".") -> str:
    """The one format all data files agree on (`files` when none is tabular); a mix is an error."""
    kinds: dict[str, list[str]] = {}
    for path in paths:
        if (kind := file_kind(path)) is not None:
            kinds.setdefault(kind, []).append(path)
    if len(kinds) <= 1:
        return next(iter(kinds), "files")
    mix = ", ".join(
        f"{len(found)} {kind} ({found[0]}{', …' if len(found) > 1 else ''})" for kind, found in sorted(kinds.items())
    )
    raise PublishError(
        f"{root} mixes formats: {mix}; publish each format as its own dataset, "
        "or pass --format files to publish them all as plain files"
    )


def read_schema(root: Path, paths: list[str], fmt: str) -> tuple[tuple[Column, ...], int | None]:
    """The Arrow schema of tabular data (all Parquet footers unified, or the first CSV block),
    and the row count where the format tells it without reading the data (Parquet footers)."""
    data = [path for path in paths if file_kind(path) == fmt]
    rows: int | None = None
    if fmt == "parquet":
        schema: pa.Schema | None = None
        rows = 0
        for path in data:
            try:
                metadata = pq.read_metadata(root / path)
                found = metadata.schema.to_arrow_schema()
                rows += metadata.num_rows
                schema = found if schema is None else pa.unify_schemas([schema, found])
            except (pa.ArrowException, OSError) as exc:
                raise PublishError(f"{root / path}: cannot read its Parquet schema: {exc}") from exc
    elif fmt == "csv":
        # Only the first file's first block: types are inferred, reading more costs time.
        try:
            with pa_csv.open_csv(root / data[0]) as reader:
                schema = reader.schema
        except (pa.ArrowException, OSError) as exc:
            raise PublishError(f"{root / data[0]}: cannot read it as CSV: {exc}") from exc
    else:
        return (), None
    if schema is None:
        return (), rows
    return tuple(Column(field.name, str(field.type)) for field in schema), rows
