"""The dataset store interface and the landing both stores share.

Layout under a store's root: ``.incoming/<name>/<version>/`` while landing,
``<name>/<version>/`` once landed (one rename), with a ``.p2pdata-manifest`` marker.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import posixpath
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.errors import LandingError, StoreError
from p2pdata.hdfs.landing import MARKER, LandingPlan, LandingProgress

Source = AsyncIterable[tuple[FileEntry, Path]]
ProgressCallback = Callable[[LandingProgress], None]

READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class LandingResult:
    name: str
    version: str
    status: str  # "landed" or "already_landed"
    path: str  # final path inside the store (HDFS path or local directory)
    uri: str
    policy: str | None  # the storage policy asked for (None: the store's default)
    files_written: int = 0
    files_resumed: int = 0  # verified in .incoming by an earlier attempt, not rewritten
    bytes_written: int = 0

    @property
    def already_landed(self) -> bool:
        return self.status == "already_landed"


@dataclass(frozen=True)
class LandedDataset:
    name: str
    version: str
    manifest_id: str
    path: str
    uri: str


@dataclass(frozen=True)
class TierReport:
    name: str
    version: str
    policy: str
    enforced: bool  # False for LocalStore: the tier is only recorded
    moved: bool  # the HDFS mover ran
    placement: dict[str, int] = field(default_factory=dict)  # storage type -> block replicas
    detail: str = ""
    # Whether fsck found every block replica on a storage type the policy wants
    # (None: not enforced, or no fsck command to ask).
    satisfied: bool | None = None
    misplaced: int = 0  # blocks with a replica elsewhere
    mover_runs: int = 0


class Store(abc.ABC):
    """A place datasets land in: HdfsStore or LocalStore."""

    kind: str
    root: str

    def __init__(self, root: str, *, concurrency: int = 4) -> None:
        self.root = root.rstrip("/") or "/"
        self.concurrency = concurrency
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    # -- what the daemon calls ----------------------------------------------------

    @abc.abstractmethod
    def uri_for(self, name: str, version: str) -> str:
        """The URI a reader (training) uses for a landed dataset."""

    def uri(self, manifest: Manifest) -> str:
        return self.uri_for(manifest.name, manifest.version)

    def final_path(self, name: str, version: str) -> str:
        return posixpath.join(self.root, name, version)

    def incoming_path(self, name: str, version: str) -> str:
        return posixpath.join(self.root, ".incoming", name, version)

    async def is_landed(self, manifest: Manifest) -> bool:
        final = self.final_path(manifest.name, manifest.version)
        return await self._read_small(posixpath.join(final, MARKER)) == manifest.id.encode()

    async def reopen(self, name: str, version: str, manifest_id: str) -> bool:
        """Move the landing of `manifest_id` back to ``.incoming``, so that a landing of more
        files of the same dataset (a partial fetch widened) can complete it. False, and
        nothing moved, when something else is at the final path."""
        final = self.final_path(name, version)
        if await self._read_small(posixpath.join(final, MARKER)) != manifest_id.encode():
            return False
        incoming = self.incoming_path(name, version)
        if await self._exists(incoming):
            raise LandingError(f"{incoming} exists beside the landed {final}: remove one of them")
        await self._mkdirs(posixpath.dirname(incoming))
        await self._rename(final, incoming)
        return True

    async def list_landed(self) -> list[LandedDataset]:
        landed = []
        for name in sorted(await self._list_dirs(self.root)):
            if name.startswith("."):
                continue
            for version in sorted(await self._list_dirs(posixpath.join(self.root, name))):
                path = self.final_path(name, version)
                marker = await self._read_small(posixpath.join(path, MARKER))
                if marker:
                    landed.append(LandedDataset(name, version, marker.decode().strip(), path,
                                                self.uri_for(name, version)))
        return landed

    @abc.abstractmethod
    async def set_tier(self, name: str, version: str, tier: str,
                       move: bool = False) -> TierReport:
        """Change a landed dataset's tier; ``move`` also migrates existing blocks."""

    async def close(self) -> None:  # noqa: B027 - stores without resources need nothing
        pass

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def land(self, manifest: Manifest, source: Source, tier: str | None = None,
                   progress: ProgressCallback | None = None, *, sha256: bool = True) -> LandingResult:
        """Land a dataset: stream files from ``source`` as they come, verify, rename.

        ``source`` yields ``(FileEntry, local path)`` when a file is ready. A failure
        leaves nothing at the final path; calling again resumes from ``.incoming``.
        ``sha256=False`` when the source has checked the content already (a swarm's
        files passed v2 piece hashes under the signed manifest's torrent): sizes are
        still compared, the SHA-256 is not computed again.
        """
        key = (manifest.name, manifest.version)
        async with self._locks.setdefault(key, asyncio.Lock()):
            return await self._land(manifest, source, tier, progress, sha256)

    # -- landing ------------------------------------------------------------------

    async def _land(self, manifest: Manifest, source: Source, tier: str | None,
                    progress: ProgressCallback | None, sha256: bool) -> LandingResult:
        final = self.final_path(manifest.name, manifest.version)
        incoming = self.incoming_path(manifest.name, manifest.version)
        marker = await self._read_small(posixpath.join(final, MARKER))
        plan = LandingPlan(manifest, marker.decode().strip() if marker else None,
                           marker is not None or await self._exists(final))
        policy = self._policy(tier)
        if plan.already_landed:
            return self._result(manifest, plan, "already_landed", policy)

        # Without an .incoming left by an earlier attempt there is nothing to resume: no
        # look-up per file (a round trip each on HDFS).
        fresh = not await self._exists(incoming)
        await self._mkdirs(incoming)
        if tier is not None:
            # Set before writing, so new blocks go to the tier's storage at once.
            await self._apply_tier(incoming, tier)
        # The marker goes in beside the files: in .incoming it means nothing, and written
        # last it would add a file close to every landing (HDFS clients wait 0.4-0.5 s for
        # the DataNode's block report). Never cancelled: a write cut off holds a lease
        # that blocks rewriting the marker for a minute.
        marker = asyncio.create_task(
            self._write_small(posixpath.join(incoming, MARKER), manifest.id.encode()))
        try:
            await self._write_all(plan, incoming, source, progress, sha256, fresh)
        finally:
            await asyncio.shield(asyncio.gather(marker, return_exceptions=True))
        marker.result()  # its error, once the files are in
        plan.check_complete()

        await self._mkdirs(posixpath.dirname(final))
        if await self._exists(final):
            raise LandingError(f"{final} appeared while {manifest.ref} was landing")
        await self._rename(incoming, final)  # the one step that makes the dataset visible
        await self._after_landing(manifest.name, manifest.version)
        return self._result(manifest, plan, "landed", policy)

    async def _write_all(self, plan: LandingPlan, incoming: str, source: Source,
                         progress: ProgressCallback | None, sha256: bool, fresh: bool) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        failures: list[BaseException] = []

        async def one(entry: FileEntry, local: Path) -> None:
            try:
                await self._land_file(plan, incoming, entry, local, sha256, fresh)
                if progress is not None:
                    progress(plan.progress())
            except BaseException as exc:
                failures.append(exc)
                raise
            finally:
                slots.release()

        try:
            async for offered, local in source:
                entry = plan.entry(offered)
                await slots.acquire()  # bounded: at most `concurrency` files in flight
                if failures:
                    slots.release()
                    break
                task = asyncio.create_task(one(entry, local))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if failures:
            raise failures[0]

    async def _land_file(self, plan: LandingPlan, incoming: str, entry: FileEntry,
                         local: Path, sha256: bool, fresh: bool) -> None:
        target = posixpath.join(incoming, entry.path)
        if not fresh and plan.resume(entry, await self._verified(target)):
            return
        hasher = hashlib.sha256() if sha256 else None
        counter = [0]
        await self._write_file(target, _hashing_reader(local, hasher, counter), new=fresh)
        try:
            plan.finished(entry, counter[0], None if hasher is None else hasher.digest())
        except LandingError:
            await self._delete(target)  # never keep bytes that are not the dataset's
            raise
        await self._mark_verified(target, entry)

    def _result(self, manifest: Manifest, plan: LandingPlan, status: str,
                policy: str | None) -> LandingResult:
        return LandingResult(
            manifest.name, manifest.version, status,
            self.final_path(manifest.name, manifest.version), self.uri(manifest), policy,
            plan.written, plan.resumed, plan.bytes_written,
        )

    # -- what each store provides -------------------------------------------------

    @abc.abstractmethod
    def _policy(self, tier: str | None) -> str | None: ...

    @abc.abstractmethod
    async def _apply_tier(self, path: str, tier: str) -> None: ...

    @abc.abstractmethod
    async def _exists(self, path: str) -> bool: ...

    @abc.abstractmethod
    async def _mkdirs(self, path: str) -> None: ...

    @abc.abstractmethod
    async def _list_dirs(self, path: str) -> list[str]:
        """Names of the sub-directories of ``path`` (empty if it does not exist)."""

    @abc.abstractmethod
    async def _read_small(self, path: str) -> bytes | None:
        """A small file's bytes, or None if it does not exist."""

    @abc.abstractmethod
    async def _write_small(self, path: str, data: bytes) -> None: ...

    @abc.abstractmethod
    async def _write_file(self, path: str, chunks: AsyncIterator[bytes], *, new: bool) -> None:
        """Replace ``path`` with the streamed bytes (``new``: nothing is there, its landing's
        folder was just made)."""

    @abc.abstractmethod
    async def _verified(self, path: str) -> tuple[int, bytes] | None:
        """The (size, sha256) recorded when ``path`` was verified, if it was."""

    @abc.abstractmethod
    async def _mark_verified(self, path: str, entry: FileEntry) -> None: ...

    @abc.abstractmethod
    async def _delete(self, path: str) -> None: ...

    @abc.abstractmethod
    async def _rename(self, source: str, destination: str) -> None: ...

    async def _after_landing(self, name: str, version: str) -> None:  # noqa: B027
        """Clean-up once a dataset is in place (optional)."""


async def _hashing_reader(path: Path, hasher: Any, counter: list[int]) -> AsyncIterator[bytes]:
    """Read a local file in chunks, hashing in a thread (unless hasher is None), one chunk ahead.

    The read-ahead lets reading and hashing chunk n+1 overlap sending chunk n, so
    verification costs (almost) no extra time; memory stays at two chunks.
    """
    try:
        handle = await asyncio.to_thread(open, path, "rb")
    except OSError as exc:
        raise LandingError(f"cannot read {path}: {exc}") from exc

    def read() -> bytes:
        chunk = handle.read(READ_CHUNK)
        if hasher is not None:
            hasher.update(chunk)
        counter[0] += len(chunk)
        return chunk

    pending = asyncio.ensure_future(asyncio.to_thread(read))
    try:
        while chunk := await pending:
            pending = asyncio.ensure_future(asyncio.to_thread(read))
            yield chunk
    finally:
        with contextlib.suppress(BaseException):
            await pending  # a thread cannot be cancelled; let it finish before closing
        handle.close()


def open_store(kind: str, root: str, **options: Any) -> Store:
    """Make a store from config values.

    ``kind`` "local": ``root`` is a directory. ``kind`` "hdfs": ``root`` is an HDFS path
    and options are ``webhdfs_url`` (required: metadata), ``user``, ``delegation``,
    ``namenode`` (hdfs://host:port: data over the native protocol, and URIs), ``native``
    (False: data over WebHDFS too), ``storagepolicy_command``, ``mover_command``,
    ``fsck_command``, ``cacheadmin_command`` (lists of strings), ``cache_pool``, ``tls`` (bool or ssl.SSLContext), ``ca_file`` (PEM
    CAs for https), ``move_timeout`` (seconds for ``set_tier(move=True)``), ``concurrency``.
    """
    if kind == "local":
        from p2pdata.hdfs.local_store import LocalStore

        return LocalStore(root, **options)
    if kind == "hdfs":
        from p2pdata.hdfs.hdfs_store import HdfsStore

        return HdfsStore(root, **options)
    raise StoreError(f"unknown store kind {kind!r}: use 'local' or 'hdfs'")
