"""Datasets in HDFS over WebHDFS, placed by storage policy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

from p2pdata.catalog.manifest import FileEntry
from p2pdata.errors import NotFound
from p2pdata.hdfs.client import WebHdfsClient
from p2pdata.hdfs.errors import HdfsError, HdfsFileNotFound, HdfsRemoteError
from p2pdata.hdfs.landing import MARKER
from p2pdata.hdfs.store import Store, TierReport
from p2pdata.hdfs.tiers import FsckBlock, parse_fsck_blocks, resolve_tier, storage_counts

VERIFIED_XATTR = "user.p2pdata.verified"  # "<size> <sha256 hex>" on a verified .incoming file


class HdfsStore(Store):
    kind = "hdfs"

    def __init__(
        self,
        root: str,
        *,
        webhdfs_url: str,
        user: str | None = None,
        delegation: str | None = None,
        namenode: str | None = None,
        storagepolicy_command: Sequence[str] | None = None,
        mover_command: Sequence[str] | None = None,
        fsck_command: Sequence[str] | None = None,
        tls: bool | ssl_module.SSLContext | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        move_timeout: float = 540.0,
        move_settle: float = 10.0,
        poll_interval: float = 0.5,
        concurrency: int = 4,
        client: WebHdfsClient | None = None,
    ) -> None:
        """``move_timeout`` bounds ``set_tier(move=True)`` (inside the CLI's 600 s control
        call); ``move_settle`` is how long fsck's placement may stay unchanged after a mover
        run before it counts as final (the NameNode learns of moved replicas from the
        DataNodes' next block reports)."""
        if not root.startswith("/"):
            raise HdfsError(f"the HDFS root {root!r} must be an absolute path")
        super().__init__(root, concurrency=concurrency)
        if (tls or ca_file) and webhdfs_url.startswith("http://"):
            webhdfs_url = "https://" + webhdfs_url.removeprefix("http://")
        self.client = client or WebHdfsClient(
            webhdfs_url, user=user, delegation=delegation,
            storagepolicy_command=storagepolicy_command,
            ssl=tls if isinstance(tls, ssl_module.SSLContext) else None,
            ca_file=ca_file,
        )
        # URIs name the NameNode's RPC address when known, else WebHDFS (which fsspec reads).
        if namenode:
            self._uri_base = namenode.rstrip("/")
        else:
            parts = urlsplit(webhdfs_url)
            scheme = "swebhdfs" if parts.scheme in ("https", "swebhdfs") else "webhdfs"
            self._uri_base = f"{scheme}://{parts.netloc}"
        self.mover_command = list(mover_command or [])
        # .incoming files _verified() found absent: writing them needs no delete first.
        self._absent: set[str] = set()
        self.fsck_command = list(fsck_command or [])
        self.move_timeout = move_timeout
        self.move_settle = move_settle
        self.poll_interval = poll_interval

    def uri_for(self, name: str, version: str) -> str:
        return self._uri_base + self.final_path(name, version)

    async def close(self) -> None:
        await self.client.close()

    async def set_tier(self, name: str, version: str, tier: str,
                       move: bool = False) -> TierReport:
        """Set the policy of a landed dataset; ``move`` runs the mover so old blocks follow.

        The report says where fsck finds the blocks and whether that satisfies the policy:
        after the mover, fsck is polled until it does or ``move_timeout`` passes.
        """
        policy = resolve_tier(tier)
        if move and not self.mover_command:
            raise HdfsError("--move needs the cluster's mover command (mover_command)")
        final = self.final_path(name, version)
        if await self._read_small(posixpath.join(final, MARKER)) is None:
            raise NotFound(f"{name}@{version} is not landed under {self.root}")
        await self._apply_tier(final, policy)
        detail, runs = "", 0
        if move:
            blocks, detail, runs = await self._move(final, policy)
        else:
            blocks = await self._fsck(final)
        misplaced = None if blocks is None else [b for b in blocks if not b.satisfies(policy)]
        return TierReport(
            name, version, policy, enforced=True, moved=move,
            placement=storage_counts(blocks or []), detail=detail.strip()[-2000:],
            satisfied=None if misplaced is None else not misplaced,
            misplaced=len(misplaced or []), mover_runs=runs)

    async def _fsck(self, path: str) -> list[FsckBlock] | None:
        if not self.fsck_command:
            return None
        text = await _run_tool([*self.fsck_command, path, "-files", "-blocks", "-locations"],
                               "fsck")
        return parse_fsck_blocks(text)

    async def _move(self, path: str, policy: str) -> tuple[list[FsckBlock] | None, str, int]:
        """Run the mover until fsck finds the policy satisfied, a run moves nothing more,
        or the deadline passes. Returns the last placement, the mover's output and runs.

        Reruns are needed: the Hadoop 2.7 mover ends successfully while skipping blocks it
        could not queue on a busy DataNode.
        """
        deadline = time.monotonic() + self.move_timeout
        blocks = await self._fsck(path)
        if blocks is not None and not _misplaced(blocks, policy):
            return blocks, "every block is already where the policy wants it", 0
        output, runs = "", 0
        while True:
            before = _misplaced(blocks, policy)
            try:
                output = await _run_tool([*self.mover_command, "-p", path], "mover",
                                         timeout=deadline - time.monotonic())
            except TimeoutError:
                return (await self._fsck(path), f"the mover did not finish within "
                        f"{self.move_timeout:.0f} s and was stopped; run it again to go on", runs)
            runs += 1
            if not self.fsck_command:
                return None, output, runs
            blocks = await self._settle(path, policy, deadline)
            after = _misplaced(blocks, policy)
            if not after or after >= before or time.monotonic() >= deadline:
                return blocks, output, runs

    async def _settle(self, path: str, policy: str, deadline: float) -> list[FsckBlock] | None:
        """Poll fsck until the placement satisfies ``policy``, stays the same for
        ``move_settle`` seconds, or the deadline passes."""
        blocks = await self._fsck(path)
        changed = time.monotonic()
        while _misplaced(blocks, policy):
            now = time.monotonic()
            if now - changed >= self.move_settle or now >= deadline:
                break
            await asyncio.sleep(self.poll_interval)
            latest = await self._fsck(path)
            if latest != blocks:
                blocks, changed = latest, time.monotonic()
        return blocks

    # -- primitives ---------------------------------------------------------------

    def _policy(self, tier: str | None) -> str | None:
        return resolve_tier(tier) if tier is not None else None

    async def _apply_tier(self, path: str, tier: str) -> None:
        await self.client.set_storage_policy(path, resolve_tier(tier))

    async def _exists(self, path: str) -> bool:
        return await self.client.exists(path)

    async def _mkdirs(self, path: str) -> None:
        if not await self.client.mkdirs(path):
            raise HdfsError(f"MKDIRS {path} returned false")

    async def _list_dirs(self, path: str) -> list[str]:
        try:
            listing = await self.client.list(path)
        except HdfsFileNotFound:
            return []
        return [posixpath.basename(s.path) for s in listing if s.is_dir]

    async def _read_small(self, path: str) -> bytes | None:
        try:
            return await self.client.read(path)
        except HdfsFileNotFound:
            return None

    async def _write_small(self, path: str, data: bytes) -> None:
        await self.client.create(path, data, overwrite=True)

    async def _write_file(self, path: str, chunks: AsyncIterator[bytes]) -> None:
        # Delete first: after a crash the old file may still be under another writer's
        # lease, which an overwriting CREATE would fail on for a minute.
        if path in self._absent:
            self._absent.discard(path)
        else:
            await self.client.delete(path)
        await self.client.create(path, chunks, overwrite=False)

    async def _verified(self, path: str) -> tuple[int, bytes] | None:
        try:
            xattrs = await self.client.get_xattrs(path)
        except HdfsFileNotFound:
            self._absent.add(path)
            return None
        record = xattrs.get(VERIFIED_XATTR)
        if record is None:
            return None
        size, digest = record.decode().split()
        return int(size), bytes.fromhex(digest)

    async def _mark_verified(self, path: str, entry: FileEntry) -> None:
        # Check what HDFS holds, not only what was sent: a short write must not pass.
        length = (await self.client.status(path)).length
        if length != entry.size:
            await self.client.delete(path)
            raise HdfsError(f"{path}: HDFS holds {length} bytes after writing {entry.size}")
        value = f"{entry.size} {entry.sha256.hex()}".encode()
        await self.client.set_xattr(path, VERIFIED_XATTR, value, flag="CREATE")

    async def _delete(self, path: str) -> None:
        await self.client.delete(path, recursive=False)

    async def _rename(self, source: str, destination: str) -> None:
        if not await self.client.rename(source, destination):
            raise HdfsError(f"RENAME {source} -> {destination} returned false")


def _misplaced(blocks: list[FsckBlock] | None, policy: str) -> int:
    return sum(not b.satisfies(policy) for b in blocks or [])


async def _run_tool(argv: list[str], what: str, timeout: float | None = None) -> str:
    """Run a cluster tool; TimeoutError after ``timeout`` s. It never outlives the call."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:  # a timeout or the caller's cancellation
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise HdfsRemoteError(what, f"exited {proc.returncode}: {text.strip()[-1500:]}", 500)
    return text
