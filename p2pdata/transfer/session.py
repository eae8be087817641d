"""The daemon's libtorrent session: swarm jobs, seeds, resume data, an alert pump.

libtorrent runs its own threads. It signals new alerts by writing a byte to a
pipe (`set_alert_fd`) that the event loop watches, which wakes the pump; every
decision is made by the plain classes in state.py and staging.py.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt

from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.errors import TransferError
from p2pdata.transfer.alerts import AlertPump
from p2pdata.transfer.staging import Staging
from p2pdata.transfer.state import (
    FileOrder,
    FilePieces,
    FileProgress,
    JobMachine,
    JobState,
    Progress,
    RateMeter,
    UploadTally,
)
from p2pdata.transfer.torrents import Layout

log = logging.getLogger(__name__)

Peer = tuple[str, int]
Certificate = tuple[Path, Path, Path]  # PEM files: certificate, private key, DH parameters
_MIB = 1024 * 1024
_DIRTY_MARKER = ".session-running"  # present while a session runs: absent after a clean close
_RESUME_DIR = ".resume"


class JobCancelled(TransferError):
    pass


@dataclass(frozen=True)
class TransferSettings:
    staging_dir: Path
    staging_budget: int  # bytes
    listen_interfaces: str = "127.0.0.1:0"  # libtorrent syntax: "IP:PORT[,IP:PORT...]"
    upload_limit: int = 0  # bytes/s over all swarms, 0 = unlimited
    download_limit: int = 0
    resume_interval: float = 5.0  # seconds between resume-data saves
    progress_interval: float = 0.5  # seconds between progress events
    # Bounds what a crash loses (pieces received but not yet written).
    max_queued_disk_bytes: int = 256 * _MIB


def _lt_settings(s: TransferSettings) -> dict[str, Any]:
    cat = lt.alert_category
    return {
        "listen_interfaces": s.listen_interfaces,
        "user_agent": "p2pdata",
        # TCP only: uTP's congestion control caps a LAN at a few MB/s.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        # The daemon is the tracker; nothing should broadcast or map ports.
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        # Obfuscating the handshake costs a round trip (a tick when capped) and hides
        # nothing on a LAN; incoming obfuscated handshakes are still accepted.
        "out_enc_policy": int(lt.enc_policy.disabled),
        "send_buffer_watermark": 8 * _MIB,
        "send_buffer_low_watermark": _MIB,
        "max_out_request_queue": 1000,
        "max_queued_disk_bytes": s.max_queued_disk_bytes,
        "allow_multiple_connections_per_ip": True,
        # Rate limits hand out quota once per tick: 50 ms ticks (default 500) keep capped
        # peers from idling for most of a tick once their quota is spent (bench_swarm: three
        # seeds capped at C give 0.95 * 3C with 50 ms, 0.84 with 100 ms).
        "tick_interval": 50,
        "upload_rate_limit": s.upload_limit,
        "download_rate_limit": s.download_limit,
        "alert_queue_size": 100_000,
        "alert_mask": cat.error | cat.peer | cat.storage | cat.status | cat.piece_progress
        | cat.ip_block,
    }


def _key(handle: lt.torrent_handle) -> str:
    return handle.info_hashes().v2.to_bytes().hex()


class _Swarm:
    """A torrent in the session: what fetches and seeds share."""

    def __init__(self, session: TransferSession, manifest: Manifest, folder: Path) -> None:
        if manifest.torrent is None:
            raise TransferError(f"{manifest.ref} has no torrent")
        self.session = session
        self.manifest = manifest
        self.folder = folder
        self.key = manifest.torrent.info_hash.hex()
        self.info = lt.torrent_info(manifest.torrent.data)
        if self.info.info_hashes().v2.to_bytes() != manifest.torrent.info_hash:
            raise TransferError(f"{manifest.ref}: torrent bytes do not match its info hash")
        self.layout = Layout(self.info, manifest.files)
        self.handle: lt.torrent_handle | None = None
        self.banned: list[Peer] = []
        self.hash_failures = 0
        self.peer_bytes: dict[Peer, int] = {}  # payload each peer has sent us (max seen)
        self._checked = asyncio.Event()

    def _params(self, priorities: list[int] | None, flags: int) -> lt.add_torrent_params:
        params = lt.add_torrent_params()
        params.ti = self.info
        params.save_path = str(self.folder)
        params.renamed_files = self.layout.renamed
        if priorities is not None:
            params.file_priorities = priorities
        params.flags = flags
        return params

    def add_peers(self, peers: Iterable[Peer]) -> None:
        assert self.handle is not None
        for host, port in peers:
            self.handle.connect_peer((host, port))

    async def ready(self) -> None:
        """Wait until libtorrent has checked (or trusted) what is on disk."""
        await self._checked.wait()

    def on_alert(self, alert: lt.alert) -> None:
        if isinstance(alert, lt.torrent_checked_alert):
            self._checked.set()
        elif isinstance(alert, lt.peer_ban_alert):
            self.banned.append((alert.ip[0], alert.ip[1]))
            log.warning("%s: banned peer %s:%s", self.manifest.ref, *alert.ip)
        elif isinstance(alert, lt.hash_failed_alert):
            self.hash_failures += 1

    def sample_peers(self) -> int:
        assert self.handle is not None
        peers = self.handle.get_peer_info()
        for peer in peers:
            endpoint = (peer.ip[0], peer.ip[1])
            self.peer_bytes[endpoint] = max(self.peer_bytes.get(endpoint, 0),
                                            peer.total_download)
        return len(peers)


class Seed(_Swarm):
    """Serves a dataset from a directory holding its files (staged or landed)."""

    async def stop(self) -> None:
        self.session._remove(self)


class SwarmJob(_Swarm):
    """Downloads (some of) a dataset into staging and hands on verified files."""

    def __init__(self, session: TransferSession, manifest: Manifest, folder: Path,
                 wanted: Sequence[FileEntry]) -> None:
        super().__init__(session, manifest, folder)
        wanted_paths = {entry.path for entry in wanted}
        self.machine = JobMachine()
        self.files = {s.index: FilePieces(s) for s in self.layout.spans
                      if s.entry.path in wanted_paths}
        self.total = sum(entry.size for entry in wanted)
        self.order = FileOrder({index: file.span.entry.size for index, file in self.files.items()})
        self._complete: set[int] = set()  # wanted files whose every piece passed
        self._top = set(self.order.top(self._complete))  # those with libtorrent's top priority
        wanted = self.order.priorities(self._complete)
        # libtorrent's file priorities when the torrent is added: 0 for unwanted files.
        self.priorities = [wanted.get(index, 0) for index in range(self.layout.num_files)]
        self._meter = RateMeter()
        self._delivered: set[int] = set()
        self._queue: asyncio.Queue[tuple[FileEntry, Path] | None] = asyncio.Queue()
        self._subscribers: list[Callable[[Progress], None]] = []
        self._done = asyncio.get_running_loop().create_future()

    # --- the caller's side -------------------------------------------------

    @property
    def state(self) -> JobState:
        return self.machine.state

    def progress(self) -> Progress:
        now = self.session.clock()
        if self.handle is None or (self.state.terminal and self.state is not JobState.COMPLETE):
            return Progress(self.state, 0, self.total, 0.0, None, 0, 0, error=self.machine.error)
        status = self.handle.status()
        per_file = self.handle.file_progress(flags=lt.torrent_handle.piece_granularity)
        files = tuple(
            FileProgress(v.path, per_file[i], v.span.entry.size, i in self._delivered)
            for i, v in self.files.items()
        )
        done = sum(f.done for f in files)
        self._meter.add(now, status.total_payload_download)
        peers = self.sample_peers()
        return Progress(
            state=self.state,
            done=done,
            total=self.total,
            rate=self._meter.rate,
            eta=self._meter.eta(self.total - done),
            peers=peers,
            downloaded=status.total_payload_download,
            files=files,
            error=self.machine.error,
            sources=tuple(sorted(self.peer_bytes.items())),
        )

    def subscribe(self, callback: Callable[[Progress], None]) -> Callable[[], None]:
        """Call `callback` with a Progress every progress_interval; returns an unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    async def progress_events(self) -> AsyncIterator[Progress]:
        """Progress snapshots until the job ends (the last one is the final state)."""
        queue: asyncio.Queue[Progress] = asyncio.Queue(maxsize=64)

        def put(progress: Progress) -> None:
            if queue.full():
                queue.get_nowait()  # a slow reader only misses stale snapshots
            queue.put_nowait(progress)

        unsubscribe = self.subscribe(put)
        try:
            while True:
                progress = await queue.get()
                yield progress
                if progress.state.terminal:
                    return
        finally:
            unsubscribe()

    async def completed_files(self) -> AsyncIterator[tuple[FileEntry, Path]]:
        """Each wanted file once every piece passed the v2 hash check and is on disk.

        v2 piece hashes tie the bytes to the signed manifest (see FilePieces); the
        reader checks the manifest's SHA-256 as it streams the file.

        Ends when all are handed on; raises TransferError if the job fails and
        JobCancelled if it is cancelled. One consumer per job.
        """
        while True:
            item = await self._queue.get()
            if item is None:
                self._queue.put_nowait(None)  # later calls end at once too
                self._raise_if_failed()
                return
            yield item

    async def wait(self) -> Progress:
        """Wait for every wanted file to be verified; raise if the job fails."""
        await asyncio.shield(self._done)
        self._raise_if_failed()
        return self.progress()

    def add_peers(self, peers: Iterable[Peer]) -> None:
        if self.handle is not None and not self.state.terminal:
            super().add_peers(peers)

    def set_limits(self, download: int | None = None, upload: int | None = None) -> None:
        """Per-job rate limits in bytes/s (0 = unlimited)."""
        assert self.handle is not None
        if download is not None:
            self.handle.set_download_limit(download)
        if upload is not None:
            self.handle.set_upload_limit(upload)

    def pause(self) -> None:
        self.machine.pause()
        assert self.handle is not None
        self.handle.pause()

    def resume(self) -> None:
        self.machine.resume()
        assert self.handle is not None
        self.handle.resume()

    async def cancel(self) -> None:
        """Stop the job and delete its staged data."""
        if self.machine.cancel():
            self._finish()
        self.session._remove(self)
        await asyncio.to_thread(self.session.staging.remove, self.key)
        self.session._resume_path(self.key).unlink(missing_ok=True)

    async def leave(self) -> None:
        """Leave the session keeping the staged data and fresh resume data, so a later fetch of
        the same torrent (a retry, more files) starts from what is verified here."""
        if self.handle is not None and self.session._ses is not None \
                and self.state is not JobState.CANCELLED:
            saved = asyncio.get_running_loop().create_future()
            self.session._resume_waiters[self.key] = saved
            self.handle.save_resume_data(lt.torrent_handle.flush_disk_cache)
            await asyncio.wait([saved], timeout=10.0)
        if self.machine.cancel():  # nothing is handed on any more
            self._finish()
        self.session._remove(self)
        self.release()

    def release(self) -> None:
        """Landing no longer needs the staged files: they may be evicted (LRU)."""
        self.session.staging.ledger.release(self.key, self.session.clock())

    # --- libtorrent's side -------------------------------------------------

    def on_alert(self, alert: lt.alert) -> None:
        super().on_alert(alert)
        if isinstance(alert, lt.save_resume_data_alert):
            self.session._write_resume(self.key, alert.params)
            return
        if self.state.terminal and self.state is not JobState.COMPLETE:
            return
        if isinstance(alert, lt.piece_finished_alert):
            span = self.layout.span_of_piece(alert.piece_index)
            if span is not None and span.index in self.files:
                file = self.files[span.index]
                file.piece_done(alert.piece_index)
                if file.complete:
                    self._completed(span.index)
        elif isinstance(alert, lt.torrent_checked_alert):
            self.machine.checked()
            if self.state is JobState.DOWNLOADING and self.handle is not None:
                # libtorrent connects to the peers it knows at once only when a torrent
                # resumes ("connect boost"); otherwise on its next one-second tick.
                self.handle.pause()
                self.handle.resume()
            self._sync_pieces()
        elif isinstance(alert, lt.file_error_alert):
            self.fail(f"disk error on {alert.filename()}: {alert.error.message()}"
                      " (is the staging disk full?)")
        elif isinstance(alert, lt.torrent_error_alert):
            self.fail(f"torrent error: {alert.error.message()}")

    def tick(self) -> None:
        if not self._subscribers or self.handle is None:
            return
        progress = self.progress()
        for callback in list(self._subscribers):
            callback(progress)

    def fail(self, reason: str, *, level: int = logging.ERROR) -> None:
        if self.machine.fail(f"{self.manifest.ref}: {reason}"):
            log.log(level, "%s", self.machine.error)
            if self.handle is not None:
                self.handle.pause()
            self.session.staging.ledger.release(self.key, self.session.clock())
            self._finish()

    def _sync_pieces(self) -> None:
        """Count the pieces already on disk (resumed or rechecked)."""
        assert self.handle is not None
        have = self.handle.status(lt.torrent_handle.query_pieces).pieces
        for file in self.files.values():
            span = file.span
            for piece in range(span.first_piece, span.first_piece + span.num_pieces):
                if have[piece]:
                    file.piece_done(piece)
            if span.num_pieces == 0:
                path = self.folder / span.entry.path
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()  # libtorrent has no piece to write an empty file with
            if file.complete:
                self._complete.add(span.index)
                self._deliver(span.index)
        self._move_top()

    def _completed(self, index: int) -> None:
        """A wanted file is whole: the top priority moves on if it held it; it is handed on."""
        self._complete.add(index)
        if index in self._top:
            self._move_top()
        self._deliver(index)

    def _move_top(self) -> None:
        """libtorrent's top priority to the files FileOrder now puts on top, the default back to
        those that left: a call per file that changed, not the whole list per file completed."""
        assert self.handle is not None
        top = set(self.order.top(self._complete))
        for index in self._top - top:
            self.handle.file_priority(index, FileOrder.DEFAULT)
        for index in top - self._top:
            self.handle.file_priority(index, FileOrder.TOP)
        self._top = top

    def _deliver(self, index: int) -> None:
        if self.state in (JobState.FAILED, JobState.CANCELLED) or index in self._delivered:
            return
        self._delivered.add(index)
        file = self.files[index]
        self._queue.put_nowait((file.span.entry, self.folder / file.path))
        if len(self._delivered) == len(self.files):
            self.machine.all_files_delivered()
            self._finish()

    def _finish(self) -> None:
        self._queue.put_nowait(None)
        if not self._done.done():
            self._done.set_result(None)
        self.tick()

    def _raise_if_failed(self) -> None:
        if self.state is JobState.FAILED:
            raise TransferError(self.machine.error or "transfer failed")
        if self.state is JobState.CANCELLED:
            raise JobCancelled(f"{self.manifest.ref}: fetch cancelled")


class TransferSession:
    """One per daemon: owns the libtorrent session and the staging area."""

    def __init__(self, settings: TransferSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.staging = Staging(settings.staging_dir, settings.staging_budget)
        self._ses: lt.session | None = None
        self._swarms: dict[str, _Swarm] = {}
        self._alerts: AlertPump | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._resume_waiters: dict[str, asyncio.Future[None]] = {}
        self._crashed = False
        self._fresh_resume: set[str] = set()  # resume data this session wrote itself
        self.uploads = UploadTally()

    # --- life cycle --------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.staging.open, self.clock())
        (self.settings.staging_dir / _RESUME_DIR).mkdir(exist_ok=True)
        marker = self.settings.staging_dir / _DIRTY_MARKER
        # A marker left behind means the last session died: its resume data may
        # claim fewer pieces than are on disk, or be missing; recheck instead.
        self._crashed = marker.exists()
        marker.write_text(str(os.getpid()))
        params = lt.session_params(_lt_settings(self.settings))
        # pread/pwrite in libtorrent's network thread, and piece hashes computed over the
        # bytes read back from the file: a piece that passed is on disk, so a complete file
        # is handed to landing at once. The default backend hashes from its write cache and
        # writes later; knowing a file was written then took a flush of the whole torrent,
        # a fence on its disk jobs (bench_fetch: 5.2-5.9 s against 6.4-6.9 s, 15 % less CPU).
        params.disk_io_constructor = "posix_disk_io_constructor"
        self._ses = lt.session(params)
        everyone = lt.ip_filter()
        # By default loopback and LAN peers skip rate limits; limits must hold for all.
        everyone.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        everyone.add_rule("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                          1 << lt.session.global_peer_class_id)
        self._ses.set_peer_class_filter(everyone)

        self._alerts = AlertPump(self._ses, self._dispatch)
        self._tasks = [loop.create_task(self._timers())]

    @property
    def listen_port(self) -> int:
        assert self._ses is not None, "start() the session first"
        return self._ses.listen_port()

    @property
    def ssl_listen_port(self) -> int:
        """Port of the SSL listen entry (`IP:PORTs`), 0 without one: restricted swarms use it."""
        assert self._ses is not None, "start() the session first"
        return self._ses.ssl_listen_port()

    async def close(self) -> None:
        """Save resume data for every job, then shut libtorrent down."""
        if self._ses is None:
            return
        await self._save_all_resume(timeout=10.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._alerts is not None:
            await self._alerts.stop()
        for swarm in self._swarms.values():
            if isinstance(swarm, SwarmJob) and not swarm.state.terminal:
                swarm.fail("the transfer session closed", level=logging.INFO)  # a stop, not an error
        ses, self._ses = self._ses, None
        self._swarms.clear()
        holder = [ses]
        del ses
        await asyncio.to_thread(holder.clear)  # the destructor blocks while it disconnects
        if self._alerts is not None:  # only now: libtorrent may write to it until it is gone
            self._alerts.close()
            self._alerts = None
        (self.settings.staging_dir / _DIRTY_MARKER).unlink(missing_ok=True)

    async def __aenter__(self) -> TransferSession:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- jobs --------------------------------------------------------------

    async def fetch(self, manifest: Manifest, peers: Iterable[Peer] = (),
                    files: Sequence[str] | None = None, *, download_limit: int = 0,
                    upload_limit: int = 0, certificate: Certificate | None = None) -> SwarmJob:
        """Start swarming `manifest` into staging from `peers` (more via add_peers).

        `files` are glob patterns on the manifest's paths (None: every file).
        Raises StagingFull if the wanted files cannot fit in staging.
        """
        ses = self._session()
        wanted = _select(manifest, files)
        if manifest.torrent is None:
            raise TransferError(f"{manifest.ref} has no torrent to swarm")
        key = manifest.torrent.info_hash.hex()
        existing = self._swarms.get(key)
        if existing is not None:
            raise TransferError(f"{manifest.ref} is already being "
                                f"{'fetched' if isinstance(existing, SwarmJob) else 'seeded'}")
        size = sum(entry.size for entry in wanted)
        evict = await asyncio.to_thread(self.staging.reserve, key, size, self.clock(),
                                        manifest.ref)
        for victim in evict:
            await self._evict(victim)
        job = SwarmJob(self, manifest, self.staging.path(key), wanted)
        priorities = job.priorities
        flags = (lt.torrent_flags.default_flags & ~lt.torrent_flags.auto_managed
                 & ~lt.torrent_flags.paused) | lt.torrent_flags.sequential_download
        params = job._params(priorities, flags)
        resume = self._resume_path(key)
        if resume.exists() and (not self._crashed or key in self._fresh_resume):
            try:
                saved = lt.read_resume_data(resume.read_bytes())
                params.have_pieces = saved.have_pieces
                params.verified_pieces = saved.verified_pieces
                params.unfinished_pieces = saved.unfinished_pieces
            except RuntimeError as exc:
                log.warning("%s: ignoring unreadable resume data (%s)", manifest.ref, exc)
        job.folder.mkdir(parents=True, exist_ok=True)
        self._add(job, ses, params, certificate)
        job.set_limits(download_limit, upload_limit)
        job.add_peers(peers)
        return job

    async def seed(self, manifest: Manifest, data_dir: Path, *, upload_limit: int = 0,
                   verify: bool = False, certificate: Certificate | None = None) -> Seed:
        """Serve `manifest` from `data_dir` (files at data_dir/<path>).

        verify=False trusts the data (landed data was verified against the
        manifest); verify=True reads and checks everything before serving.
        """
        ses = self._session()
        seed = Seed(self, manifest, Path(data_dir))
        if seed.key in self._swarms:
            raise TransferError(f"{manifest.ref} is already in the transfer session")
        flags = lt.torrent_flags.default_flags & ~lt.torrent_flags.auto_managed \
            & ~lt.torrent_flags.paused
        params = seed._params(None, flags)
        if not verify:
            # Claim every piece instead of seed_mode: libtorrent 2.1.1's lazy seed-mode
            # check fails good v2 pieces (short last pieces of files) and stops the torrent.
            params.have_pieces = [True] * seed.layout.num_pieces
        self._add(seed, ses, params, certificate)
        assert seed.handle is not None
        seed.handle.set_upload_limit(upload_limit)
        return seed

    def swarms(self) -> list[_Swarm]:
        return list(self._swarms.values())

    def upload_stats(self) -> dict[str, Any]:
        """Bytes sent since start, per dataset and per remote peer, and the current rate."""
        for swarm in self._swarms.values():
            self._sample_uploads(swarm)  # up to date now, not as of the last tick
        rate = sum(s.handle.status().upload_payload_rate for s in self._swarms.values()
                   if s.handle is not None)
        return {
            "uploaded": self.uploads.total,
            "upload_rate": rate,
            "datasets": [{"dataset": d, "sent": n} for d, n in sorted(self.uploads.by_dataset.items())],
            "peers": [{"address": a, "client": c, "sent": n}
                      for (a, c), n in sorted(self.uploads.by_peer.items(), key=lambda i: -i[1])],
        }

    def _sample_uploads(self, swarm: _Swarm) -> None:
        if swarm.handle is None or not swarm.handle.is_valid():
            return
        status = swarm.handle.status()
        peers = swarm.handle.get_peer_info() if status.num_peers else []
        self.uploads.sample(
            f"{swarm.manifest.owner}/{swarm.manifest.ref}", status.total_payload_upload,
            [((p.ip[0], p.ip[1]), _client_name(p.client), p.total_upload) for p in peers])

    # --- internals ---------------------------------------------------------

    def _session(self) -> lt.session:
        if self._ses is None:
            raise TransferError("the transfer session is not running")
        return self._ses

    def _add(self, swarm: _Swarm, ses: lt.session, params: lt.add_torrent_params,
             certificate: Certificate | None = None) -> None:
        try:
            swarm.handle = ses.add_torrent(params)
        except RuntimeError as exc:
            raise TransferError(f"{swarm.manifest.ref}: libtorrent refused it: {exc}") from exc
        self._swarms[swarm.key] = swarm
        if certificate is not None:
            self.set_certificate(swarm.key, certificate)

    def set_certificate(self, key: str, certificate: Certificate) -> bool:
        """Give an SSL torrent's swarm (by info-hash hex) the certificate for new connections."""
        swarm = self._swarms.get(key)
        if swarm is None or swarm.handle is None:
            return False
        cert, private_key, dh_params = certificate
        swarm.handle.set_ssl_certificate(str(cert), str(private_key), str(dh_params))
        return True

    def _remove(self, swarm: _Swarm) -> None:
        if self._swarms.get(swarm.key) is swarm:
            del self._swarms[swarm.key]
            if self._ses is not None and swarm.handle is not None:
                self._ses.remove_torrent(swarm.handle)

    async def _evict(self, key: str) -> None:
        swarm = self._swarms.get(key)
        if swarm is not None:
            self._remove(swarm)
        log.info("staging: evicting seed %s to make room", key)
        await asyncio.to_thread(self.staging.remove, key)
        self._resume_path(key).unlink(missing_ok=True)

    def _resume_path(self, key: str) -> Path:
        return self.settings.staging_dir / _RESUME_DIR / f"{key}.resume"

    def _write_resume(self, key: str, params: lt.add_torrent_params) -> None:
        path = self._resume_path(key)
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(lt.write_resume_data_buf(params))
            os.replace(tmp, path)  # never leave a torn file behind
            self._fresh_resume.add(key)
        except OSError as exc:  # e.g. a full disk: a later save or a recheck covers it
            log.warning("cannot save resume data to %s: %s", path, exc)
        self._resume_saved(key)

    def _resume_saved(self, key: str) -> None:
        waiter = self._resume_waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _save_all_resume(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        waiters = []
        for swarm in self._swarms.values():
            if isinstance(swarm, SwarmJob) and swarm.handle is not None \
                    and swarm.state is not JobState.CANCELLED:
                future = loop.create_future()
                self._resume_waiters[swarm.key] = future
                swarm.handle.save_resume_data(lt.torrent_handle.flush_disk_cache)
                waiters.append(future)
        if waiters:
            await asyncio.wait(waiters, timeout=timeout)

    def _dispatch(self, alert: lt.alert) -> None:
        if isinstance(alert, lt.save_resume_data_failed_alert):
            self._resume_saved(_key(alert.handle))  # e.g. nothing changed; not an error
        elif isinstance(alert, lt.torrent_alert):
            handle = alert.handle
            if handle.is_valid():
                swarm = self._swarms.get(_key(handle))
                if swarm is not None:
                    swarm.on_alert(alert)
        elif isinstance(alert, lt.listen_failed_alert):
            log.error("libtorrent: %s", alert.message())

    async def _timers(self) -> None:
        """Progress events and periodic resume data: timers, not polling for work."""
        interval = self.settings.progress_interval
        next_resume = self.clock() + self.settings.resume_interval
        while True:
            await asyncio.sleep(interval)
            for swarm in list(self._swarms.values()):
                if isinstance(swarm, SwarmJob):
                    swarm.tick()
                self._sample_uploads(swarm)
            if self.clock() >= next_resume:
                next_resume = self.clock() + self.settings.resume_interval
                for swarm in list(self._swarms.values()):
                    if isinstance(swarm, SwarmJob) and swarm.handle is not None \
                            and swarm.handle.need_save_resume_data():
                        swarm.handle.save_resume_data(lt.torrent_handle.flush_disk_cache)


def _client_name(client: str | bytes) -> str:
    """The remote's client name from its handshake (bytes in some libtorrent builds)."""
    return client.decode(errors="replace") if isinstance(client, bytes) else client


def _select(manifest: Manifest, patterns: Sequence[str] | None) -> list[FileEntry]:
    if patterns is None:
        return list(manifest.files)
    wanted = [e for e in manifest.files if any(fnmatch.fnmatchcase(e.path, p) for p in patterns)]
    if not wanted:
        raise TransferError(f"no file of {manifest.ref} matches {list(patterns)}")
    return wanted
