"""Datasets in HDFS over WebHDFS, placed by storage policy."""

from __future__ import annotations

import asyncio
import posixpath
import ssl as ssl_module
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

from p2pdata.catalog.manifest import FileEntry
from p2pdata.errors import NotFound
from p2pdata.hdfs.client import WebHdfsClient
from p2pdata.hdfs.errors import HdfsError, HdfsFileNotFound, HdfsRemoteError
from p2pdata.hdfs.landing import MARKER
from p2pdata.hdfs.store import Store, TierReport
from p2pdata.hdfs.tiers import parse_fsck, resolve_tier

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
        concurrency: int = 4,
        client: WebHdfsClient | None = None,
    ) -> None:
        if not root.startswith("/"):
            raise HdfsError(f"the HDFS root {root!r} must be an absolute path")
        super().__init__(root, concurrency=concurrency)
        if tls and webhdfs_url.startswith("http://"):
            webhdfs_url = "https://" + webhdfs_url.removeprefix("http://")
        self.client = client or WebHdfsClient(
            webhdfs_url, user=user, delegation=delegation,
            storagepolicy_command=storagepolicy_command,
            ssl=tls if isinstance(tls, ssl_module.SSLContext) else None,
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

    def uri_for(self, name: str, version: str) -> str:
        return self._uri_base + self.final_path(name, version)

    async def close(self) -> None:
        await self.client.close()

    async def set_tier(self, name: str, version: str, tier: str,
                       move: bool = False) -> TierReport:
        """Set the policy of a landed dataset; ``move`` runs the mover so old blocks follow."""
        final = self.final_path(name, version)
        if await self._read_small(posixpath.join(final, MARKER)) is None:
            raise NotFound(f"{name}@{version} is not landed under {self.root}")
        policy = resolve_tier(tier)
        await self._apply_tier(final, policy)
        detail = ""
        if move:
            if not self.mover_command:
                raise HdfsError("--move needs the cluster's mover command (mover_command)")
            detail = await _run_tool([*self.mover_command, "-p", final], "mover")
        placement: Counter[str] = Counter()
        if self.fsck_command:
            report = await _run_tool(
                [*self.fsck_command, final, "-files", "-blocks", "-locations"], "fsck")
            for counts in parse_fsck(report).values():
                placement.update(counts)
        return TierReport(name, version, policy, enforced=True, moved=move,
                          placement=dict(placement), detail=detail.strip()[-2000:])

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


async def _run_tool(argv: list[str], what: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise HdfsRemoteError(what, f"exited {proc.returncode}: {text.strip()[-1500:]}", 500)
    return text
