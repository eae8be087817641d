"""BitTorrent v2 torrents for datasets, and the map from pieces to manifest files."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt

from p2pdata.catalog.manifest import FileEntry, Torrent
from p2pdata.catalog.merkle import V2Hashes
from p2pdata.catalog.publish import hash_files_v2
from p2pdata.errors import TransferError

MIN_PIECE = 256 * 1024
MAX_PIECE = 16 * 1024 * 1024
_TARGET_PIECES = 2000
# Root folder inside the torrent when none is given (the daemon names it NAME-VERSION;
# older catalogs hold "dataset"). Every add renames files out of it, so data lives at
# <save_path>/<manifest path> whatever the root is called.
TORRENT_ROOT = "dataset"


def choose_piece_size(total_size: int) -> int:
    """A power of two giving about 2000 pieces, within 256 KiB..16 MiB.

    Piece size barely changes throughput on a LAN; fewer pieces keep the
    torrent small and the per-piece work (alerts, resume data) cheap.
    """
    size = MIN_PIECE
    while size < MAX_PIECE and size * _TARGET_PIECES < total_size:
        size *= 2
    return size


def make_torrent(manifest_files: Iterable[FileEntry], data_dir: Path | str,
                 *, piece_size: int | None = None, root_cert: bytes | None = None,
                 name: str = TORRENT_ROOT, v2: Mapping[str, V2Hashes] | None = None,
                 hybrid: bool = False) -> Torrent:
    """Create a v2 torrent covering exactly `manifest_files` under `data_dir`.

    v2-only by default; `hybrid` adds the v1 side (file list with pad files, SHA-1
    piece hashes) for clients that read only v1, at the cost of a third hash per byte.
    `v2` holds each file's hashes from publish's single read (scan_for_publish);
    without them every file is read and hashed here, so call this off the event
    loop. With `root_cert` (PEM) it is an SSL torrent: only peers holding a
    certificate from that root whose DNS name is `name` can join its swarm.
    """
    files = list(manifest_files)
    if not files:
        raise TransferError("cannot make a torrent of a dataset without files")
    root = Path(data_dir)
    for entry in files:
        actual = (root / entry.path).stat().st_size
        if actual != entry.size:
            raise TransferError(
                f"{entry.path}: manifest says {entry.size} bytes, {root} has {actual}"
            )
    # Without a piece size, that of the hashes given (they were made at choose_piece_size).
    given = {hashes.piece_size for hashes in (v2 or {}).values()}
    size = piece_size or (given.pop() if len(given) == 1 else
                          choose_piece_size(sum(entry.size for entry in files)))
    if v2 is None or any(v2.get(e.path) is None or v2[e.path].piece_size != size
                         or (hybrid and v2[e.path].v1_pieces is None) for e in files):
        v2 = hash_files_v2(root, [entry.path for entry in files], piece_size_for=lambda _: size,
                           v1=hybrid)[1]
    # The BEP 52 metainfo, built here because libtorrent's Python bindings cannot
    # take precomputed v2 hashes (no set_hash2); libtorrent parses it below.
    tree: dict[bytes, Any] = {}
    layers: dict[bytes, bytes] = {}
    for entry in files:
        hashes = v2[entry.path]
        node = tree
        for part in entry.path.split("/"):
            node = node.setdefault(part.encode(), {})
        node[b""] = {b"length": entry.size, **({b"pieces root": hashes.root} if entry.size else {})}
        if hashes.piece_layer:
            layers[hashes.root] = hashes.piece_layer
    info: dict[bytes, Any] = {b"file tree": tree, b"meta version": 2, b"name": name.encode(),
                              b"piece length": size}
    if hybrid:
        info[b"files"], info[b"pieces"] = _v1_side(tree, files, v2, size)
    if root_cert is not None:
        info[b"ssl-cert"] = root_cert
    data = lt.bencode({b"created by": b"p2pdata", b"creation date": int(time.time()),
                       b"info": info, b"piece layers": layers})
    try:
        parsed = lt.torrent_info(data)
    except RuntimeError as exc:
        raise TransferError(f"libtorrent rejects the torrent made for {root}: {exc}") from exc
    return Torrent(info_hash=parsed.info_hashes().v2.to_bytes(), data=bytes(data))


def _v1_side(tree: dict[bytes, Any], files: list[FileEntry], v2: Mapping[str, V2Hashes],
             piece_size: int) -> tuple[list[dict[bytes, Any]], bytes]:
    """A hybrid torrent's v1 file list and pieces, in the order of the v2 file tree.

    BEP 52 wants both sides in one order: the tree's, keys sorted at each level
    ("a/x" before "a-b"). libtorrent 2.1's own creator sorts whole paths instead
    ("a-b" first) and then refuses its own torrent for such names. Every non-empty
    file is followed by a pad file up to the next piece boundary, so each file's
    v1 pieces are its own; as libtorrent does, a torrent of one file has no pad.
    """
    listed: list[dict[bytes, Any]] = []
    pieces: list[bytes] = []
    if len(files) == 1:
        [entry] = files
        v1, tail = v2[entry.path].v1_pieces or b"", v2[entry.path].v1_tail
        path = [part.encode() for part in entry.path.split("/")]
        return [{b"length": entry.size, b"path": path}], v1 if tail is None else v1[:-20] + tail

    def walk(node: dict[bytes, Any], parts: list[bytes]) -> None:
        for key in sorted(node):
            if key:
                walk(node[key], [*parts, key])
                continue
            length = node[key][b"length"]
            listed.append({b"length": length, b"path": parts})
            pieces.append(v2[b"/".join(parts).decode()].v1_pieces or b"")
            if pad := -length % piece_size:
                listed.append({b"attr": b"p", b"length": pad, b"path": [b".pad", str(pad).encode()]})

    walk(tree, [])
    return listed, b"".join(pieces)


def with_trackers(data: bytes, urls: Iterable[str]) -> bytes:
    """The .torrent with announce URLs added: outside the info dict, so the info hash stays."""
    decoded = lt.bdecode(data)
    urls = list(urls)
    if urls:
        decoded[b"announce"] = urls[0].encode()
        decoded[b"announce-list"] = [[url.encode()] for url in urls]
    return bytes(lt.bencode(decoded))


def magnet_link(info_hash_v2: bytes, name: str, trackers: Iterable[str] = (),
                peers: Iterable[tuple[str, int]] = ()) -> str:
    """A BEP 9/52 magnet: v2 info hash (btmh), display name, trackers (tr) and seeds (x.pe)."""
    quote = urllib.parse.quote
    parts = [f"xt=urn:btmh:1220{info_hash_v2.hex()}", f"dn={quote(name, safe='')}"]
    parts += [f"tr={quote(url, safe='')}" for url in trackers]
    parts += [f"x.pe={f'[{host}]' if ':' in host else host}:{port}" for host, port in peers]
    return "magnet:?" + "&".join(parts)


@dataclass(frozen=True)
class FileSpan:
    """One real (non-pad) file of a torrent and the pieces that hold it."""

    index: int  # libtorrent file index
    entry: FileEntry
    first_piece: int
    num_pieces: int
    piece_length: int


class Layout:
    """Piece and file geometry of a dataset torrent, matched to its manifest."""

    def __init__(self, info: lt.torrent_info, files: Iterable[FileEntry]) -> None:
        by_path = {entry.path: entry for entry in files}
        storage = info.layout()
        self.piece_length: int = info.piece_length()
        self.num_pieces: int = info.num_pieces()
        self.num_files: int = storage.num_files()
        self.spans: list[FileSpan] = []
        self.renamed: dict[int, str] = {}
        prefix = f"{storage.name()}/"
        for index in range(storage.num_files()):
            if storage.file_flags(index) & lt.file_storage.flag_pad_file:
                continue
            path = storage.file_path(index)
            rel = path[len(prefix):] if path.startswith(prefix) else path
            entry = by_path.pop(rel, None)
            if entry is None or entry.size != storage.file_size(index):
                raise TransferError(f"torrent file {rel!r} does not match the manifest")
            # v2 pads every file to a piece boundary, so pieces never span files.
            first = storage.file_offset(index) // self.piece_length
            count = -(-entry.size // self.piece_length)
            self.spans.append(FileSpan(index, entry, first, count, self.piece_length))
            self.renamed[index] = rel
        if by_path:
            raise TransferError(f"torrent lacks manifest files: {sorted(by_path)[:5]}")
        self._by_piece: dict[int, FileSpan] = {}
        for span in self.spans:
            for piece in range(span.first_piece, span.first_piece + span.num_pieces):
                self._by_piece[piece] = span

    def span_of_piece(self, piece: int) -> FileSpan | None:
        return self._by_piece.get(piece)
