"""BitTorrent v2 torrents for datasets, and the map from pieces to manifest files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import libtorrent as lt

from p2pdata.catalog.manifest import FileEntry, Torrent
from p2pdata.errors import TransferError

MIN_PIECE = 256 * 1024
MAX_PIECE = 16 * 1024 * 1024
_TARGET_PIECES = 2000
# Root folder inside the torrent. Every add renames files out of it, so data
# lives at <save_path>/<manifest path> whatever directory it was published from.
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
                 name: str = TORRENT_ROOT) -> Torrent:
    """Create a v2-only torrent covering exactly `manifest_files` under `data_dir`.

    v2-only because hybrid torrents hash everything twice (about 25 % slower).
    Hashing reads every file once, so call it off the event loop. With
    `root_cert` (PEM) it is an SSL torrent: only peers holding a certificate
    from that root whose DNS name is `name` can join its swarm.
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
    total = sum(entry.size for entry in files)
    entries = [lt.create_file_entry(f"{name}/{e.path}", e.size) for e in files]
    creator = lt.create_torrent(entries, piece_size or choose_piece_size(total),
                                lt.create_torrent.v2_only)
    creator.set_creator("p2pdata")
    if root_cert is not None:
        creator.set_root_cert(root_cert.decode())
    # set_piece_hashes resolves paths as <parent>/<name>/<path>: point it
    # at a private folder holding one link to data_dir.
    with _linked_root(root, name) as parent:
        lt.set_piece_hashes(creator, str(parent))
    data = lt.bencode(creator.generate())
    info = lt.torrent_info(data)
    return Torrent(info_hash=info.info_hashes().v2.to_bytes(), data=bytes(data))


@contextmanager
def _linked_root(data_dir: Path, name: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="p2pdata-torrent-") as tmp:
        os.symlink(data_dir.resolve(), Path(tmp) / name)
        yield Path(tmp)


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
