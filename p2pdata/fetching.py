"""The fetch room: jobs a user owns, from a resolved manifest to landed data.

`FetchMachine` decides: the job's state, why a fetch makes no progress, when to give up,
what to keep after a failure. It is plain, fed with events and a clock. `Fetcher` is the
thin asyncio around it: resolve → reuse what is held → swarm what is missing → land →
record → trigger training, through collaborators passed in and typed by the Protocols
below. Jobs live in SQLite, so a daemon restarted mid-fetch picks them up again.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
import posixpath
import secrets
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Protocol

from p2pdata.catalog import Manifest, parse_ref
from p2pdata.catalog.manifest import FileEntry
from p2pdata.errors import ConfigError, NotFound, P2pdataError, StoreError
from p2pdata.fetch_states import FetchState
from p2pdata.hdfs import HdfsConnectionError, HdfsStore, HdfsTlsError, Store, TierError, resolve_tier
from p2pdata.transfer import JobState, Progress, Staging
from p2pdata.transfer.session import Certificate, SwarmJob

log = logging.getLogger("p2pdata.fetching")

Endpoint = tuple[str, int]
_NEXT: dict[FetchState, tuple[FetchState, ...]] = {
    FetchState.QUEUED: (FetchState.TRANSFERRING, FetchState.LANDED, FetchState.FAILED,
                        FetchState.CANCELLED),
    FetchState.TRANSFERRING: (FetchState.LANDING, FetchState.FAILED, FetchState.CANCELLED,
                              FetchState.QUEUED),
    FetchState.LANDING: (FetchState.LANDED, FetchState.FAILED, FetchState.CANCELLED,
                         FetchState.QUEUED),
    FetchState.FAILED: (FetchState.QUEUED,),  # retried
    FetchState.CANCELLED: (FetchState.QUEUED,),
    FetchState.LANDED: (),
}


@dataclass
class FetchJob:
    id: str
    ref: str
    manifest_id: str
    publisher: str
    total_bytes: int
    tier: str
    to: str | None = None
    train: str | None = None
    files: list[str] = field(default_factory=list)
    verify: str = "v2"  # "sha256": land with a second, whole-file SHA-256 check
    peers: list[str] = field(default_factory=list)  # HOST:PORT seeds named by the user
    state: FetchState = FetchState.QUEUED
    error: str | None = None
    waiting: str | None = None  # why no byte arrives, while that lasts
    done_bytes: int = 0
    reused_files: int = 0  # taken from copies this cluster already held, not swarmed
    landed_files: int = 0
    uri: str | None = None
    runs: list[str] = field(default_factory=list)  # training runs this landing started
    created: int = 0
    updated: int = 0

    def __post_init__(self) -> None:
        self.state = FetchState(self.state)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        data["retryable"] = self.state in (FetchState.FAILED, FetchState.CANCELLED)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FetchJob:
        data.pop("retryable", None)
        return cls(**data)


# What landing checks a fetched file with: v2 piece hashes (the swarm's own), or those
# and the manifest's whole-file SHA-256 too.
VERIFY_MODES = ("v2", "sha256")


def parse_endpoint(text: str) -> tuple[str, int]:
    """HOST:PORT or [IPv6]:PORT, as `fetch --peer` takes a seed's address."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise P2pdataError(f"peer {text!r} is not HOST:PORT (a port from 1 to 65535)")
    return host, int(port)


# ---- the decisions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sources:
    """Where the bytes of a fetch could come from, as the runner last saw it."""

    endpoints: int = 0  # torrent endpoints of synced peers that have the files
    connected: int = 0  # peers the swarm is connected to
    unreachable: int = 0  # known peers whose last sync failed (they might have it)
    banned: int = 0  # peers banned for sending pieces that failed the hash check


def stall_reason(sources: Sources) -> str:
    """Why no byte arrives, in the user's words."""
    if sources.connected:
        return f"connected to {sources.connected} peer(s), but none sends data"
    if sources.banned:
        return (f"the only seed{'s were' if sources.banned > 1 else ' was'} banned for sending "
                "bad pieces (its files changed after publishing?)")
    if sources.endpoints:
        return f"{sources.endpoints} peer endpoint(s) have it, but none accepts a connection"
    if sources.unreachable:
        return (f"no reachable peer has it; {sources.unreachable} known peer(s) are "
                "unreachable (see `p2pdata peers`)")
    return "no peer has this dataset"


class FetchMachine:
    """One fetch job's life cycle and its stall watch. No I/O: the runner reports, it decides.

    A job makes progress when `done` grows. After `hint_after` seconds without progress it
    says why (`job.waiting`); after `stall_timeout` seconds `tick` answers the error to fail
    with. Every failure keeps what was verified (staging, `.incoming`), so `retry` resumes;
    only a cancel throws the staged bytes away.
    """

    def __init__(self, job: FetchJob, *, stall_timeout: float, hint_after: float = 2.0) -> None:
        self.job = job
        self.stall_timeout = stall_timeout
        self.hint_after = hint_after
        self._progress_at: float | None = None  # when bytes last arrived (or the swarm began)
        self._done: int | None = None  # bytes at the last observation

    @property
    def state(self) -> FetchState:
        return self.job.state

    def _move(self, state: FetchState, now: float) -> None:
        if state not in _NEXT[self.job.state]:
            raise P2pdataError(f"fetch job {self.job.id} cannot go from {self.job.state} to {state}")
        self.job.state, self.job.updated = state, int(now)

    def requeue(self, now: float) -> None:
        """The daemon restarted under an active job: run it again from the start."""
        if self.job.state is not FetchState.QUEUED:
            self._move(FetchState.QUEUED, now)

    def start(self, now: float) -> None:
        """Swarming begins: the stall watch starts now."""
        self._move(FetchState.TRANSFERRING, now)
        self._progress_at, self._done = now, None

    def observe(self, now: float, done: int, sources: Sources) -> None:
        self.job.done_bytes = done
        if self._progress_at is None or (self._done is not None and done > self._done):
            self._progress_at = now
        self._done = done  # the first observation counts what was on disk already
        if self.job.state is not FetchState.TRANSFERRING or now - self._progress_at < self.hint_after:
            self.job.waiting = None
        else:
            self.job.waiting = stall_reason(sources)

    def tick(self, now: float) -> str | None:
        """The error to fail with once no progress was made for stall_timeout seconds."""
        if self.job.state is not FetchState.TRANSFERRING or self._progress_at is None:
            return None
        if now - self._progress_at < self.stall_timeout:
            return None
        why = self.job.waiting or "no peer sends data"
        return f"no progress for {self.stall_timeout:.0f} s: {why}"

    def transferred(self, now: float) -> None:
        """Every wanted file is verified in staging; the store may still be writing."""
        if self.job.state is FetchState.TRANSFERRING:
            self._move(FetchState.LANDING, now)
        self.job.waiting = None
        self.job.done_bytes = self.job.total_bytes

    def landed(self, now: float, uri: str) -> None:
        self._move(FetchState.LANDED, now)
        self.job.uri, self.job.waiting, self.job.error = uri, None, None
        self.job.done_bytes = self.job.total_bytes

    def fail(self, now: float, error: str) -> bool:
        """Fail an active job (False if it was over already, e.g. cancelled meanwhile)."""
        if not self.job.state.active:
            return False
        self._move(FetchState.FAILED, now)
        self.job.error, self.job.waiting = error, None
        return True

    def cancel(self, now: float) -> bool:
        """Cancel an active job; True if the runner must stop and delete the staged bytes."""
        if not self.job.state.active:
            return False
        self._move(FetchState.CANCELLED, now)
        self.job.waiting = None
        return True

    def retry(self, now: float) -> None:
        if self.job.state not in (FetchState.FAILED, FetchState.CANCELLED):
            raise P2pdataError(f"fetch job {self.job.id} is {self.job.state}: only a failed or "
                               "cancelled job can be retried")
        self._move(FetchState.QUEUED, now)
        self.job.error = None
        self._progress_at = None


# ---- the record ----------------------------------------------------------------------------


class FetchJobTable:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.execute("CREATE TABLE IF NOT EXISTS fetch_jobs (id TEXT PRIMARY KEY, data TEXT NOT NULL)")

    def new(self, **fields: Any) -> FetchJob:
        job = FetchJob(id="f-" + secrets.token_hex(4), **fields)
        self.save(job)
        return job

    def save(self, job: FetchJob) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO fetch_jobs (id, data) VALUES (?, ?)", (job.id, json.dumps(job.to_dict()))
        )

    def get(self, job_id: str) -> FetchJob:
        row = self.conn.execute("SELECT data FROM fetch_jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no fetch job {job_id!r}")
        return FetchJob.from_dict(json.loads(row["data"]))

    def all(self) -> list[FetchJob]:
        rows = self.conn.execute("SELECT data FROM fetch_jobs").fetchall()
        return sorted((FetchJob.from_dict(json.loads(r["data"])) for r in rows), key=lambda j: j.created)

    def unfinished(self) -> list[FetchJob]:
        return [job for job in self.all() if job.state.active]


# ---- collaborators -------------------------------------------------------------------------


class Catalogs(Protocol):
    def resolve(self, ref: str, *, now: int | None = None) -> Manifest: ...
    def get(self, cluster: str, name: str, version: str) -> Manifest: ...
    def manifests(self, cluster: str | None = None, name: str | None = None) -> list[Manifest]: ...


class RestrictedFetch(Protocol):
    """Restricted datasets: the full manifest behind a stub, a certificate, SSL endpoints."""

    def full(self, manifest: Manifest) -> Manifest: ...
    async def prepare_fetch(self, manifest: Manifest) -> tuple[Manifest, Certificate]: ...
    def endpoints(self, manifest: Manifest) -> list[Endpoint]: ...


class PeerView(Protocol):
    """The peer directory, as far as a fetch needs it."""

    def seeders(self, manifest_ids: set[str]) -> list[Endpoint]: ...
    def unreachable(self) -> list[str]: ...


class Swarm(Protocol):
    """A torrent in the transfer session (a seed, or a fetch's swarm job)."""

    key: str
    folder: Path
    manifest: Manifest


class Transfer(Protocol):
    staging: Staging

    async def fetch(self, manifest: Manifest, peers: Iterable[Endpoint] = (),
                    files: Sequence[str] | None = None, *, download_limit: int = 0,
                    upload_limit: int = 0, certificate: Certificate | None = None) -> SwarmJob: ...
    def swarms(self) -> Sequence[Swarm]: ...


class Events(Protocol):
    def emit(self, kind: str, **data: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Landed:
    """What `on_landed` is told: record the landing, start training, answer the run ids.
    `staging` None: it landed before this job, which only starts the training it names."""

    job: FetchJob
    manifest: Manifest  # the whole dataset's manifest
    landing: Manifest  # what landed (the wanted files)
    uri: str
    staging: Path | None  # a folder holding every landed file, to seed from


OnLanded = Callable[[Landed], Awaitable[list[str]]]
StoreOpener = Callable[[str | None], Store]  # None: the configured store; else a root (--to)
HeldFolders = Callable[[], list[tuple[Manifest, Path]]]  # datasets whose files we hold, and where


class StallError(P2pdataError):
    pass


# ---- the runner ----------------------------------------------------------------------------


class Fetcher:
    """Fetch jobs: start, attach, watch, cancel, retry; one runner task per active job."""

    def __init__(self, *, jobs: FetchJobTable, catalogs: Catalogs, restricted: RestrictedFetch,
                 peers: PeerView, transfer: Transfer, open_store: StoreOpener, events: Events,
                 held: HeldFolders, on_landed: OnLanded, own_cluster: str, store_root: str,
                 default_tier: str, stall_timeout: float,
                 source_label: Callable[[Endpoint], str] = lambda e: f"{e[0]}:{e[1]}",
                 clock: Callable[[], float] = time.time) -> None:
        self.jobs = jobs
        self.catalogs = catalogs
        self.restricted = restricted
        self.peers = peers
        self.transfer = transfer
        self.open_store = open_store
        self.events = events
        self.held = held
        self.on_landed = on_landed
        self.own_cluster = own_cluster
        self.store_root = store_root
        try:  # refused at start, not by every fetch that lands under it
            resolve_tier(default_tier)
        except TierError as exc:
            raise ConfigError(f"store.default_tier: {exc}") from None
        self.default_tier = default_tier
        self.stall_timeout = stall_timeout
        self.source_label = source_label  # a torrent endpoint as the user knows its peer
        self.clock = clock
        self._machines: dict[str, FetchMachine] = {}  # active jobs
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._swarms: dict[str, SwarmJob] = {}
        self._turns: dict[str, str] = {}  # job id -> torrent key, in the order they queued

    # ---- life cycle ---------------------------------------------------------------------------

    def resume_all(self) -> None:
        """After a start: run again every job that was active when the daemon stopped."""
        for job in self.jobs.unfinished():
            log.info("resuming fetch job %s (%s)", job.id, job.ref)
            machine = self._machine(job)
            machine.requeue(self.clock())
            self.jobs.save(job)
            self._spawn(machine)

    async def close(self) -> None:
        """Stop every runner; active jobs stay active in SQLite and resume on the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- what the control API calls ------------------------------------------------------------

    async def fetch(self, ref: str, *, tier: str | None = None, to: str | None = None,
                    train: str | None = None, files: list[str] | None = None,
                    verify: str = "v2", peers: list[str] | None = None) -> dict[str, Any]:
        """A new job; or the running job of the same dataset (`attached` is true); or its
        failed job, run again (its verified bytes are not fetched again).

        `verify`: "v2" lands what passed the swarm's v2 piece hashes; "sha256" also
        re-checks each file's whole-file SHA-256 while landing. `peers`: HOST:PORT seeds
        to use besides the peers we know (any BitTorrent client seeding the same torrent).
        """
        if verify not in VERIFY_MODES:
            raise P2pdataError(f"verify {verify!r} is not one of {', '.join(VERIFY_MODES)}")
        if tier is not None:
            resolve_tier(tier)  # an unknown tier fails now, not once the job runs
        if to is not None and not posixpath.isabs(to):
            # Relative to what? The daemon's working directory is not the caller's.
            raise P2pdataError(f"the store root to land under must be an absolute path, not {to!r}")
        for peer in peers or ():
            parse_endpoint(peer)  # a bad address fails now, not in the background
        manifest = self.catalogs.resolve(ref, now=int(self.clock()))
        if manifest.torrent is None and manifest.access.mode != "restricted":
            raise P2pdataError(f"{manifest.ref} from {manifest.owner} has no torrent to fetch")
        files = sorted(files or [])
        if to is None and len({m.owner for m in self.catalogs.manifests(name=manifest.name)}) > 1:
            # Two publishers use this name: the landed path carries the publisher, so their
            # datasets never meet at one NAME/VERSION.
            to = posixpath.join(self.store_root, manifest.owner)
        for machine in self._machines.values():
            job = machine.job
            if job.manifest_id == manifest.id and job.files == files and job.to == to \
                    and job.state.active:
                return {**job.to_dict(), "attached": True}
        same = [job for job in self.jobs.all()
                if (job.manifest_id, job.files, job.to) == (manifest.id, files, to)]
        if same and same[-1].state is FetchState.FAILED:
            failed = same[-1]
            failed.tier, failed.train = tier or failed.tier, train or failed.train
            self.jobs.save(failed)
            return {**await self.retry(failed.id), "attached": False}
        # Progress counts the selected files only (a stub's files are known once it is granted).
        selected = _subset(manifest, files) if files and manifest.files else manifest
        now = int(self.clock())
        job = self.jobs.new(
            ref=f"{manifest.owner}/{manifest.ref}", manifest_id=manifest.id,
            publisher=manifest.owner, total_bytes=selected.total_size,
            tier=tier or self.default_tier, to=to, train=train, files=files,
            verify=verify, peers=list(peers or ()), created=now, updated=now,
        )
        self.events.emit("fetch.state", job=job.id, state=str(job.state))
        self._spawn(self._machine(job))
        return {**job.to_dict(), "attached": False}

    def listing(self) -> list[dict[str, Any]]:
        live = {job_id: m.job for job_id, m in self._machines.items()}
        return [live.get(job.id, job).to_dict() for job in self.jobs.all()]

    def get(self, job_id: str) -> dict[str, Any]:
        machine = self._machines.get(job_id)
        return (machine.job if machine else self.jobs.get(job_id)).to_dict()

    async def cancel(self, job_id: str) -> dict[str, Any]:
        machine = self._machines.get(job_id) or self._machine(self.jobs.get(job_id))
        if machine.cancel(self.clock()):
            self._changed(machine)
            task = self._tasks.get(job_id)
            if task is not None:
                task.cancel()  # the runner deletes what it staged
                await asyncio.gather(task, return_exceptions=True)
        return machine.job.to_dict()

    async def retry(self, job_id: str) -> dict[str, Any]:
        """Run a failed (or cancelled) job again: what was verified is not fetched again."""
        machine = self._machines.get(job_id) or self._machine(self.jobs.get(job_id))
        machine.retry(self.clock())
        self._changed(machine)
        self._spawn(machine)
        return machine.job.to_dict()

    def peers_changed(self) -> None:
        """A sync learnt who seeds what: every running swarm gets the new endpoints."""
        for swarm in self._swarms.values():
            swarm.add_peers(self._endpoints(swarm.manifest))

    # ---- the runner ----------------------------------------------------------------------------

    def _machine(self, job: FetchJob) -> FetchMachine:
        return FetchMachine(job, stall_timeout=self.stall_timeout)

    def _spawn(self, machine: FetchMachine) -> None:
        job_id = machine.job.id
        self._machines[job_id] = machine
        task = asyncio.create_task(self._run(machine), name=f"fetch {job_id}")
        self._tasks[job_id] = task

        def done(_: asyncio.Task[None]) -> None:
            if self._tasks.get(job_id) is task:
                del self._tasks[job_id]
                if not machine.job.state.active:
                    self._machines.pop(job_id, None)

        task.add_done_callback(done)

    def _changed(self, machine: FetchMachine) -> None:
        job = machine.job
        self.jobs.save(job)
        self.events.emit("fetch.state", job=job.id, state=str(job.state), error=job.error,
                         waiting=job.waiting, runs=job.runs)

    async def _run(self, machine: FetchMachine) -> None:
        job = machine.job
        swarm: SwarmJob | None = None
        store: Store | None = None
        try:
            manifest = self._manifest(job)
            await self._wait_turn(job, manifest)
            certificate = None
            if manifest.access.mode == "restricted" and manifest.owner != self.own_cluster:
                manifest, certificate = await self.restricted.prepare_fetch(manifest)
            store = self.open_store(job.to)
            landing = _subset(manifest, job.files) if job.files else manifest
            job.total_bytes = landing.total_size  # a stub's files are known once it is granted
            if await store.is_landed(landing):
                # Landed before: nothing to fetch, and the trigger rules fired then; only a
                # training job this fetch names (`--train`) starts now.
                job.landed_files = len(landing.files)
                uri = store.uri(landing)
                machine.landed(self.clock(), uri)
                try:
                    if job.train:
                        job.runs = await self.on_landed(Landed(job, manifest, landing, uri, None))
                finally:
                    self._changed(machine)
                return
            await self._widen(store, manifest, landing, job)
            machine.start(self.clock())
            self._changed(machine)
            holder = self._holder(manifest, landing)
            if holder is not None:  # a seed or a finished fetch holds every wanted file
                job.reused_files = len(landing.files)
                folder = holder.folder
                await self._land(machine, store, landing, _files_in(folder, landing.files), None)
            else:
                await self._leave_partial(manifest)
                job.reused_files = await asyncio.to_thread(
                    _link_held, self.held(), landing.files, self._staging(manifest))
                swarm = await self.transfer.fetch(
                    # Seeds the user named (`fetch --peer`, any BitTorrent client) join the
                    # peers we know; the manifest's hashes still decide what lands.
                    manifest, peers=self._endpoints(manifest) + [parse_endpoint(p) for p in job.peers],
                    files=job.files or None, certificate=certificate,
                )
                self._swarms[job.id] = swarm
                await self._land(machine, store, landing, swarm.completed_files(), swarm)
                await swarm.wait()
                swarm.release()  # landed: the staged copy is now an evictable seed
                folder = swarm.folder
            uri = store.uri(landing)
            job.landed_files = len(landing.files)
            machine.landed(self.clock(), uri)
            try:  # recorded and its runs known before anyone is told it landed
                job.runs = await self.on_landed(Landed(job, manifest, landing, uri, folder))
            finally:
                self._changed(machine)
                self.events.emit("dataset.landed", job=job.id, ref=job.ref, uri=uri)
        except asyncio.CancelledError:
            if machine.state is FetchState.CANCELLED and swarm is not None:
                await swarm.cancel()  # asked for: the staged bytes go too
            raise  # shutdown: the job stays active and resumes on the next start
        except Exception as exc:  # every failure ends the job with a message the user can read
            message = describe_failure(exc, store)
            if isinstance(exc, P2pdataError):
                log.warning("fetch job %s failed: %s", job.id, message)
            else:
                log.error("fetch job %s failed: %s", job.id, message, exc_info=exc)
            if swarm is not None:
                await swarm.leave()  # keep what was verified: a retry lands it without fetching
            if machine.fail(self.clock(), message):
                self._changed(machine)
        finally:
            self._swarms.pop(job.id, None)
            self._turns.pop(job.id, None)

    async def _wait_turn(self, job: FetchJob, manifest: Manifest) -> None:
        """One job per torrent at a time (whoever published it): a later one waits for the
        earlier ones to end, then starts from what they left (often a held copy)."""
        key = manifest.torrent.info_hash.hex() if manifest.torrent else manifest.id
        self._turns[job.id] = key  # dicts keep insertion order: this is the queue
        while True:
            ahead = []
            for other, other_key in self._turns.items():
                if other == job.id:
                    break
                if other_key == key and other in self._tasks:
                    ahead.append(self._tasks[other])
            if not ahead:
                return
            await asyncio.gather(*ahead, return_exceptions=True)

    async def _widen(self, store: Store, manifest: Manifest, landing: Manifest, job: FetchJob) -> None:
        """Where an earlier job landed fewer files of this dataset, reopen that landing so
        this one completes it (otherwise the store refuses a second manifest there)."""
        wanted = {entry.path for entry in landing.files}
        for earlier in reversed(self.jobs.all()):
            if (earlier.manifest_id, earlier.to, earlier.state) != (job.manifest_id, job.to,
                                                                    FetchState.LANDED) \
                    or not earlier.files or earlier.files == job.files:
                continue
            partial = _subset(manifest, earlier.files)
            if {entry.path for entry in partial.files} <= wanted and \
                    await store.reopen(manifest.name, manifest.version, partial.id):
                log.info("fetch job %s widens the landing of job %s", job.id, earlier.id)
                return

    def _manifest(self, job: FetchJob) -> Manifest:
        cluster, name, version = parse_ref(job.ref)
        try:
            # A restricted stub becomes the full manifest once we hold it.
            return self.restricted.full(self.catalogs.get(cluster or "", name, version or ""))
        except NotFound:
            raise NotFound(f"{job.ref} is no longer in any verified catalog") from None

    def _endpoints(self, manifest: Manifest) -> list[Endpoint]:
        """Torrent endpoints of every peer seeding these very files, whoever published them."""
        if manifest.access.mode == "restricted":
            return self.restricted.endpoints(manifest)
        return self.peers.seeders(_same_files(self.catalogs, manifest))

    def _sources(self, manifest: Manifest, swarm: SwarmJob, connected: int) -> Sources:
        return Sources(endpoints=len(self._endpoints(manifest)), connected=connected,
                       unreachable=len(self.peers.unreachable()), banned=len(swarm.banned))

    def _staging(self, manifest: Manifest) -> Path:
        assert manifest.torrent is not None
        return self.transfer.staging.path(manifest.torrent.info_hash.hex())

    def _holder(self, manifest: Manifest, landing: Manifest) -> Swarm | None:
        """A swarm in the session already holding every wanted file (a seed or a finished fetch)."""
        key = manifest.torrent.info_hash.hex() if manifest.torrent else None
        for swarm in self.transfer.swarms():
            if swarm.key != key:
                continue
            if not isinstance(swarm, SwarmJob):
                return swarm  # seeds hold the whole dataset
            wanted = {entry.path for entry in landing.files}
            held = {pieces.span.entry.path for pieces in swarm.files.values()}
            if swarm.state is JobState.COMPLETE and wanted <= held:
                return swarm
        return None

    async def _leave_partial(self, manifest: Manifest) -> None:
        """A finished fetch of fewer files holds the torrent: it steps aside, keeping its bytes."""
        key = manifest.torrent.info_hash.hex() if manifest.torrent else None
        for swarm in self.transfer.swarms():
            if swarm.key == key and isinstance(swarm, SwarmJob) and swarm not in self._swarms.values():
                await swarm.leave()

    async def _land(self, machine: FetchMachine, store: Store, landing: Manifest,
                    files: AsyncIterator[tuple[FileEntry, Path]], swarm: SwarmJob | None) -> None:
        """Land while watching the swarm; give up when it stalls."""

        async def delivered() -> AsyncIterator[tuple[FileEntry, Path]]:
            async for item in files:
                yield item
            machine.transferred(self.clock())
            self._changed(machine)

        # A swarm's files passed their v2 piece hashes, which the signed manifest's torrent
        # fixes: a second SHA-256 pass only if asked. Files already held here are re-checked.
        sha256 = swarm is None or machine.job.verify == "sha256"
        landing_task = asyncio.create_task(
            store.land(landing, delivered(), machine.job.tier, sha256=sha256))
        if swarm is None:
            await landing_task
            return
        watch = asyncio.create_task(self._watch(machine, swarm))
        try:
            await asyncio.wait({landing_task, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch.done() and watch.result() is not None:
                raise StallError(watch.result())
            await landing_task
        finally:
            for task in (landing_task, watch):
                task.cancel()
            await asyncio.gather(landing_task, watch, return_exceptions=True)

    async def _watch(self, machine: FetchMachine, swarm: SwarmJob) -> str | None:
        """Progress to the job and its listeners; the stall error when it is time to give up."""
        progress: Progress
        async for progress in swarm.progress_events():
            now = self.clock()
            machine.observe(now, progress.done, self._sources(swarm.manifest, swarm, progress.peers))
            self.jobs.save(machine.job)
            sources: dict[str, int] = {}  # bytes received from each peer so far
            for endpoint, received in progress.sources:
                label = self.source_label(endpoint)
                sources[label] = sources.get(label, 0) + received
            self.events.emit("fetch.progress", job=machine.job.id, done_bytes=progress.done,
                             total_bytes=progress.total, rate=progress.rate, eta=progress.eta,
                             peers=progress.peers, waiting=machine.job.waiting, sources=sources)
            if (error := machine.tick(now)) is not None:
                return error
        return None


# ---- helpers -------------------------------------------------------------------------------


def _subset(manifest: Manifest, globs: list[str]) -> Manifest:
    files = tuple(f for f in manifest.files if any(fnmatchcase(f.path, g) for g in globs))
    if not files:
        raise NotFound(f"no file of {manifest.ref} matches {', '.join(globs)}")
    return replace(manifest, files=files)


def _same_files(catalogs: Catalogs, manifest: Manifest) -> set[str]:
    """Ids of every held manifest with this very torrent: their seeders serve us too."""
    info_hash = manifest.torrent.info_hash if manifest.torrent else None
    return {m.id for m in catalogs.manifests(name=manifest.name)
            if m.torrent and m.torrent.info_hash == info_hash} | {manifest.id}


async def _files_in(folder: Path, entries: Iterable[FileEntry]) -> AsyncIterator[tuple[FileEntry, Path]]:
    """Files a holder has; landing checks each one's SHA-256 as it streams it."""
    for entry in entries:
        yield entry, folder / entry.path


def _link_held(held: list[tuple[Manifest, Path]], wanted: Iterable[FileEntry], staging: Path) -> int:
    """Put files this cluster already holds (same SHA-256, any dataset) into `staging`, where
    the swarm finds them when it checks: a hard link, or a copy across file systems. Each is
    verified first, so the swarm never writes into a held file. Returns how many were put."""
    by_hash: dict[bytes, list[Path]] = {}
    for manifest, folder in held:
        for entry in manifest.files:
            by_hash.setdefault(entry.sha256, []).append(folder / entry.path)
    placed = 0
    for entry in wanted:
        target = staging / entry.path
        if target.exists():
            continue  # staged by an earlier attempt: the swarm's check decides
        for candidate in by_hash.get(entry.sha256, []):
            if not _matches(candidate, entry):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(candidate, target)
            except OSError:
                shutil.copyfile(candidate, target)
            placed += 1
            break
    return placed


def _matches(path: Path, entry: FileEntry) -> bool:
    try:
        if path.stat().st_size != entry.size:
            return False
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return False
    return digest.digest() == entry.sha256


def describe_failure(exc: BaseException, store: Store | None) -> str:
    """An error message naming what failed and where, never a bare Python repr."""
    where = f"{store.kind} store at {store.root}" if store is not None else "the store"
    cause: BaseException | None = exc
    while cause is not None:  # a store may wrap the OSError in its own error
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return f"store disk full at {store.root if store else cause.filename}"
        cause = cause.__cause__
    if isinstance(exc, HdfsConnectionError) and not isinstance(exc, HdfsTlsError) \
            and isinstance(store, HdfsStore):
        why = f": {exc.__cause__}" if exc.__cause__ else ""  # aiohttp's words, not its repr
        return f"HDFS at {store.client.base_url.removesuffix('/webhdfs/v1')} is unreachable{why}"
    if isinstance(exc, OSError):
        return f"{where}: {exc.strerror or exc} ({exc.filename or 'no file named'})"
    if isinstance(exc, StoreError) and store is not None and store.root not in str(exc):
        return f"{where}: {exc}"
    if isinstance(exc, P2pdataError):
        return str(exc)
    return f"internal error ({type(exc).__name__}): {exc}"
