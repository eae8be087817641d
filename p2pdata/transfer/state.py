"""Decisions of a swarm job, free of I/O: its state, its progress, its finished files.

The asyncio code in session.py feeds these classes what libtorrent reports
and a clock, and acts on what they answer.
"""

from __future__ import annotations

import enum
import itertools
from collections import deque
from collections.abc import Container
from dataclasses import dataclass, field

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
    # Payload each peer endpoint has sent us so far: which peer is slow, at a glance.
    sources: tuple[tuple[tuple[str, int], int], ...] = ()

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
class FilePieces:
    """Which pieces of one wanted file have passed libtorrent's v2 hash check.

    v2 hashes every 16 KiB block up a Merkle tree to a per-file root held in
    the torrent, and the torrent's info hash is in the signed manifest: a file
    whose pieces all passed is the publisher's file, byte for byte. The
    manifest's whole-file SHA-256 is then checked by whoever reads the file
    next (landing hashes while it streams), so nothing reads it twice.
    """

    span: FileSpan
    _have: set[int] = field(default_factory=set)

    @property
    def path(self) -> str:
        return self.span.entry.path

    @property
    def complete(self) -> bool:
        return len(self._have) >= self.span.num_pieces

    def piece_done(self, piece: int) -> None:
        if not self.span.first_piece <= piece < self.span.first_piece + self.span.num_pieces:
            raise TransferError(f"{self.path}: piece {piece} is not one of its pieces")
        self._have.add(piece)


class FileOrder:
    """Which wanted files a swarm job fetches first, so landing overlaps the download.

    Landing takes a file once all of it is verified, so the order files complete in
    decides how much landing runs beside the download: the smallest file first (landing
    starts at once), then the biggest (the longest landings get the most download to
    overlap), the small ones last (little is left to land once the download ends). The
    first `window` files of that order not yet complete get libtorrent's top priority;
    the rest keep the default one and come in piece order (sequential download), so the
    pipeline to the peers stays full while the window moves. One file by default: files
    sharing the top priority come in piece order too, so with two the smallest came last
    of the pair and landing waited (bench_fetch: 4.96 s against 5.09 on average).
    """

    TOP = 7  # libtorrent's top_priority: picked before the sequential order
    DEFAULT = 4

    def __init__(self, sizes: dict[int, int], window: int = 1) -> None:
        """`sizes`: file index -> size of every wanted file."""
        if window < 1:
            raise ValueError("the window must hold at least one file")
        by_size = sorted(sizes, key=lambda index: (sizes[index], index))
        first = by_size[:1]
        self.order = first + sorted(by_size[1:], key=lambda index: (-sizes[index], index))
        self.window = window
        self._start = 0  # for top(): every file before it in the order is complete

    def priorities(self, complete: set[int]) -> dict[int, int]:
        """File index -> libtorrent priority for every wanted file, given those complete."""
        waiting = [index for index in self.order if index not in complete]
        top = set(waiting[: self.window])
        return {index: self.TOP if index in top else self.DEFAULT for index in self.order}

    def top(self, complete: Container[int]) -> list[int]:
        """The files on top: the first `window` of the order not complete. For a job's files,
        which only ever complete, it starts past the complete ones found before, so moving
        the window along a whole job costs one pass over the order, not one per file."""
        while self._start < len(self.order) and self.order[self._start] in complete:
            self._start += 1
        top: list[int] = []
        for index in itertools.islice(self.order, self._start, None):
            if len(top) == self.window:
                break
            if index not in complete:
                top.append(index)
        return top


PeerSample = tuple[tuple[str, int], str, int]  # (connection endpoint, client name, payload sent)
UNSAMPLED = ("?", "connections closed between samples")


class UploadTally:
    """Payload bytes sent, per dataset and per remote peer (p2pdata or any client).

    Fed every progress tick with each torrent's payload-sent counter (exact: it
    spans closed connections) and its open connections' counters. A counter
    lower than last time restarted (torrent re-added, new connection on the same
    endpoint). Bytes a connection sent after its last sample are given to it if
    it is the only one that closed since, else to UNSAMPLED. A connection's counter
    can run a few blocks ahead of its torrent's (bytes queued to send), so the
    per-peer sum may exceed the per-dataset total by that much, never fall short.
    """

    def __init__(self) -> None:
        self.by_dataset: dict[str, int] = {}
        self.by_peer: dict[tuple[str, str], int] = {}  # (address, client) -> bytes
        self._total: dict[str, int] = {}  # dataset -> its torrent's counter last time
        self._open: dict[str, dict[tuple[str, int], tuple[tuple[str, str], int]]] = {}

    def sample(self, dataset: str, sent: int, peers: list[PeerSample]) -> None:
        before = self._total.get(dataset, 0)
        delta = sent - before if sent >= before else sent
        self._total[dataset] = sent
        last = self._open.get(dataset, {})
        now: dict[tuple[str, int], tuple[tuple[str, str], int]] = {}
        counted = 0
        for endpoint, client, count in peers:
            key = (endpoint[0], client)
            was = last.get(endpoint, (key, 0))[1]
            step = count - was if count >= was else count
            counted += step
            self._add_peer(key, step)
            now[endpoint] = (key, count)
        closed = {key for endpoint, (key, _) in last.items() if endpoint not in now}
        if delta > counted:
            self._add_peer(closed.pop() if len(closed) == 1 else UNSAMPLED, delta - counted)
        if delta:
            self.by_dataset[dataset] = self.by_dataset.get(dataset, 0) + delta
        self._open[dataset] = now

    def _add_peer(self, key: tuple[str, str], count: int) -> None:
        if count > 0:
            self.by_peer[key] = self.by_peer.get(key, 0) + count

    @property
    def total(self) -> int:
        return sum(self.by_dataset.values())
