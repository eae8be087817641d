"""Decisions of a swarm job, free of I/O: its state, its progress, its file checks.

The asyncio code in session.py feeds these classes what libtorrent reports
and a clock, and acts on what they answer.
"""

from __future__ import annotations

import enum
import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from p2pdata.errors import TransferError
from p2pdata.transfer.torrents import FileSpan


class JobState(enum.Enum):
    CHECKING = "checking"  # libtorrent is reading what is already on disk
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    COMPLETE = "complete"  # every wanted file verified and handed on; now seeding
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETE, JobState.FAILED, JobState.CANCELLED)


class JobMachine:
    """The swarm job's life cycle. Events on a finished job are ignored."""

    def __init__(self) -> None:
        self.state = JobState.CHECKING
        self.error: str | None = None
        self._paused = False

    def checked(self) -> None:
        if self.state is JobState.CHECKING:
            self.state = JobState.PAUSED if self._paused else JobState.DOWNLOADING

    def pause(self) -> None:
        if self.state.terminal:
            raise TransferError(f"cannot pause a job that is {self.state.value}")
        self._paused = True
        if self.state is JobState.DOWNLOADING:
            self.state = JobState.PAUSED

    def resume(self) -> None:
        if self.state.terminal:
            raise TransferError(f"cannot resume a job that is {self.state.value}")
        self._paused = False
        if self.state is JobState.PAUSED:
            self.state = JobState.DOWNLOADING

    def all_files_delivered(self) -> None:
        if not self.state.terminal:
            self.state = JobState.COMPLETE

    def fail(self, reason: str) -> bool:
        """Record the first failure; True if this call ended the job."""
        if self.state.terminal:
            return False
        self.state = JobState.FAILED
        self.error = reason
        return True

    def cancel(self) -> bool:
        if self.state.terminal:
            return False
        self.state = JobState.CANCELLED
        return True


@dataclass(frozen=True)
class FileProgress:
    path: str
    done: int
    size: int
    verified: bool


@dataclass(frozen=True)
class Progress:
    state: JobState
    done: int  # verified bytes on disk of the wanted files
    total: int  # size of the wanted files
    rate: float  # bytes/s over the last few seconds
    eta: float | None  # seconds, None while the rate is 0
    peers: int
    downloaded: int  # payload bytes received by this process (includes re-downloads)
    files: tuple[FileProgress, ...] = ()
    error: str | None = None

    @property
    def fraction(self) -> float:
        return 1.0 if self.total == 0 else self.done / self.total


class RateMeter:
    """Transfer rate over a sliding window of (time, cumulative bytes) samples."""

    def __init__(self, window: float = 5.0) -> None:
        self._window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, total_bytes: int) -> None:
        self._samples.append((now, total_bytes))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()

    @property
    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return 0.0 if t1 <= t0 else max(0, b1 - b0) / (t1 - t0)

    def eta(self, remaining: int) -> float | None:
        if remaining <= 0:
            return 0.0
        rate = self.rate
        return None if rate <= 0 else remaining / rate


@dataclass
class FileVerifier:
    """Hashes one file's pieces in order as libtorrent finishes them.

    Pieces arrive in any order; the verifier asks for a piece (by read_piece)
    only once it has passed libtorrent's hash check, so the SHA-256 of the
    whole file is built from data still in the page cache while the download
    goes on, instead of reading the file again at the end. Up to `window`
    reads are out at once: one at a time, the read-back round trip, not the
    hashing, set the pace. Reads may come back in any order; `take_ready`
    hands them over in piece order, one batch at a time.
    """

    span: FileSpan
    window: int = 1  # reads out at once
    _have: set[int] = field(default_factory=set)
    _next: int = 0  # offset (in pieces) of the next piece to hash
    _requested: int = 0  # offset of the next piece to read
    _read: dict[int, bytes] = field(default_factory=dict)  # read back, not hashed yet
    _hashing: bool = False  # a batch from take_ready is being hashed
    _hasher: Any = field(default_factory=hashlib.sha256)

    @property
    def path(self) -> str:
        return self.span.entry.path

    @property
    def hashed_pieces(self) -> int:
        return self._next

    @property
    def finished(self) -> bool:
        return self._next >= self.span.num_pieces

    def piece_done(self, piece: int) -> None:
        self._have.add(piece - self.span.first_piece)

    def next_read(self) -> int | None:
        """The next piece to read, or None if it is not there yet (or the window is full)."""
        if self._requested >= self.span.num_pieces or self._requested not in self._have \
                or self._requested - self._next >= self.window:
            return None
        self._requested += 1
        return self.span.first_piece + self._requested - 1

    def received(self, piece: int, data: bytes) -> None:
        """Keep a piece read back until the pieces before it are hashed."""
        self._read[piece] = data

    def take_ready(self) -> list[tuple[int, bytes]]:
        """The received pieces that are next in order; [] while a batch is being hashed."""
        if self._hashing:
            return []
        batch = []
        piece = self.span.first_piece + self._next
        while piece in self._read:
            batch.append((piece, self._read.pop(piece)))
            piece += 1
        self._hashing = bool(batch)
        return batch

    def consume_batch(self, batch: list[tuple[int, bytes]]) -> None:
        """Hash a batch from take_ready. CPU-bound: run it off the event loop."""
        try:
            for piece, data in batch:
                self.consume(piece, data)
        finally:
            self._hashing = False

    def piece_bytes(self, piece: int) -> int:
        """How many bytes of `piece` belong to the file (the last one is short)."""
        offset = (piece - self.span.first_piece) * self.span.piece_length
        return min(self.span.piece_length, self.span.entry.size - offset)

    def consume(self, piece: int, data: bytes) -> None:
        """Hash the next piece in order (one that next_read asked for)."""
        if piece != self.span.first_piece + self._next or self._next >= self._requested:
            raise TransferError(f"{self.path}: piece {piece} read out of order")
        expected = self.piece_bytes(piece)
        if len(data) < expected:
            raise TransferError(f"{self.path}: piece {piece} read back short")
        self._hasher.update(memoryview(data)[:expected])
        self._next += 1

    def matches(self) -> bool:
        if not self.finished:
            raise TransferError(f"{self.path}: not all pieces hashed yet")
        return self._hasher.digest() == self.span.entry.sha256
