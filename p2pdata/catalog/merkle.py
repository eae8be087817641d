"""BitTorrent v2 (BEP 52) file hashes: SHA-256 over 16 KiB blocks, a merkle tree per file.

Publishing computes these in the same read as each file's SHA-256 (see
publish.hash_file), so a torrent is made without reading the data again.
The tree's leaves are the blocks' hashes; leaves past the end of the file are
zero. A piece's hash is the root of its subtree; a file's `pieces root` is
the root of the whole tree, padded to a power of two pieces with the hash of
an all-zero piece. For hybrid torrents it also keeps the v1 piece hashes:
SHA-1 of each piece, the file's last one padded with zeros (hybrid torrents
pad every file to a piece boundary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha1, sha256

BLOCK = 16 * 1024
_ZERO = bytes(32)


@dataclass(frozen=True)
class V2Hashes:
    """One file's v2 hashes at one piece size: what a torrent's info and piece layers hold."""

    piece_size: int
    root: bytes  # `pieces root`; empty for an empty file
    piece_layer: bytes  # piece hashes concatenated; empty unless the file spans pieces
    v1_pieces: bytes | None = None  # SHA-1 per zero-padded piece, for hybrid torrents
    v1_tail: bytes | None = None  # SHA-1 of the last piece unpadded (a one-file torrent's)


def merkle_root(leaves: Sequence[bytes], width: int, pad: bytes = _ZERO) -> bytes:
    """Root of a tree over `leaves` filled with `pad` up to `width` (a power of two) leaves."""
    layer = list(leaves)
    while width > 1:
        if len(layer) % 2:
            layer.append(pad)
        layer = [sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
        pad = sha256(pad + pad).digest()
        width //= 2
    return layer[0] if layer else pad


def _pow2(count: int) -> int:
    return 1 << max(count - 1, 0).bit_length()


class V2Hasher:
    """Feeds on a file's bytes in order and yields its v2 hashes at `piece_size`.

    Chunks given to `update` must be whole blocks except the file's last one,
    so callers read in multiples of BLOCK.
    """

    def __init__(self, piece_size: int, *, v1: bool = False) -> None:
        if piece_size < BLOCK or piece_size & (piece_size - 1):
            raise ValueError(f"piece size {piece_size} is not a power of two of at least {BLOCK}")
        self.piece_size = piece_size
        self._v1: list[bytes] | None = [] if v1 else None
        self._sha1 = sha1()
        self._sha1_fill = 0
        self._per_piece = piece_size // BLOCK
        self._leaves: list[bytes] = []  # of the piece being filled
        self._pieces: list[bytes] = []
        self._size = 0
        self._ended = False

    def update(self, chunk: memoryview | bytes) -> None:
        if self._ended:
            raise ValueError("a short block was not the file's last")
        view = memoryview(chunk)
        # hashlib releases the GIL for blocks this size, so threads hash in parallel;
        # the comprehension keeps the Python work between two blocks small.
        leaves = self._leaves + [sha256(view[i:i + BLOCK]).digest()
                                 for i in range(0, len(view), BLOCK)]
        self._ended = len(view) % BLOCK != 0
        per = self._per_piece
        full = len(leaves) - len(leaves) % per
        self._pieces += [merkle_root(leaves[i:i + per], per) for i in range(0, full, per)]
        self._leaves = leaves[full:]
        self._size += len(view)
        if self._v1 is not None:
            self._update_v1(view)

    def _update_v1(self, view: memoryview) -> None:
        offset = 0
        while offset < len(view):
            take = min(self.piece_size - self._sha1_fill, len(view) - offset)
            self._sha1.update(view[offset:offset + take])
            self._sha1_fill += take
            offset += take
            if self._sha1_fill == self.piece_size:
                self._end_v1_piece()

    def _end_v1_piece(self) -> None:
        assert self._v1 is not None
        self._v1.append(self._sha1.digest())
        self._sha1, self._sha1_fill = sha1(), 0

    def finish(self) -> V2Hashes:
        v1 = tail = None
        if self._v1 is not None:
            if self._sha1_fill:  # the pad file after it fills the last piece with zeros
                tail = self._sha1.copy().digest()
                self._sha1.update(bytes(self.piece_size - self._sha1_fill))
                self._end_v1_piece()
            v1 = b"".join(self._v1)
        if self._size == 0:
            return V2Hashes(self.piece_size, b"", b"", v1, tail)
        if not self._pieces:  # one piece or less: the tree is only as wide as the file
            root = merkle_root(self._leaves, _pow2(len(self._leaves)))
            return V2Hashes(self.piece_size, root, b"", v1, tail)
        pieces = list(self._pieces)
        if self._leaves:
            pieces.append(merkle_root(self._leaves, self._per_piece))
        pad = merkle_root((), self._per_piece)
        root = merkle_root(pieces, _pow2(len(pieces)), pad)
        return V2Hashes(self.piece_size, root, b"".join(pieces) if len(pieces) > 1 else b"", v1,
                        tail)
