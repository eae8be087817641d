"""Datasets in HDFS, placed by storage policy (and erasure coding), cached on request.

The data path is HDFS's own protocol (hdfs-native) when the store knows the NameNode's
RPC address, else WebHDFS. Metadata hdfs-native lacks (xattrs, storage and erasure
coding policies, the satisfier) goes over WebHDFS; cache directives, fsck and the Mover
through the cluster's command-line tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from p2pdata.catalog.manifest import FileEntry
from p2pdata.errors import NotFound
from p2pdata.hdfs.client import WebHdfsClient
from p2pdata.hdfs.errors import (
    HdfsError,
    HdfsFileNotFound,
    HdfsRemoteError,
    HdfsUnsupportedOperation,
    TierError,
)
from p2pdata.hdfs.landing import MARKER
from p2pdata.hdfs.native import NativeHdfs
from p2pdata.hdfs.store import Store, TierReport
from p2pdata.hdfs.tiers import (
    POLICY_TYPES,
    FsckBlock,
    parse_fsck_blocks,
    resolve_ec,
    resolve_tier,
    storage_counts,
)

VERIFIED_XATTR = "user.p2pdata.verified"  # "<size> <sha256 hex>" on a verified .incoming file
# Files landing at once. Over hdfs-native each file holds its slot through close, which
# sleeps 500 ms when the DataNode has not yet reported the last block (measured: 0.53 s per
# file, whatever its size), so the native path needs more files in flight (bench_fetch).
NATIVE_CONCURRENCY = 8
WEBHDFS_CONCURRENCY = 4


@dataclass(frozen=True)
class CacheReport:
    """What ``cache()``/``uncache()`` did; ``cached`` False with the reason in ``detail``."""

    name: str
    version: str
    cached: bool
    detail: str


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
        cacheadmin_command: Sequence[str] | None = None,
        cache_pool: str = "p2pdata",
        ec_policy: str | None = None,
        native: bool | None = None,
        native_timeout: float = 120.0,
        tls: bool | ssl_module.SSLContext | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        move_timeout: float = 540.0,
        move_settle: float = 10.0,
        poll_interval: float = 0.5,
        concurrency: int | None = None,
        client: WebHdfsClient | None = None,
    ) -> None:
        """``move_timeout`` bounds ``set_tier(move=True)`` (inside the CLI's 600 s control
        call); ``move_settle`` is how long fsck's placement may stay unchanged after a mover
        run before it counts as final (the NameNode learns of moved replicas from the
        DataNodes' next block reports). ``native`` (default: whenever ``namenode`` is
        given and no delegation token) writes and reads over hdfs-native. ``concurrency``:
        files landing at once (default 8 over hdfs-native, 4 over WebHDFS)."""
        if not root.startswith("/"):
            raise HdfsError(f"the HDFS root {root!r} must be an absolute path")
        if native is None:
            native = bool(namenode) and not delegation
        if concurrency is None:
            concurrency = NATIVE_CONCURRENCY if native else WEBHDFS_CONCURRENCY
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
        self.native: NativeHdfs | None = None
        if native:
            if not namenode:
                raise HdfsError("native HDFS needs the NameNode's address (namenode = "
                                "hdfs://host:port)")
            self.native = NativeHdfs(namenode, user=user, timeout=native_timeout)
        self.mover_command = list(mover_command or [])
        self.cacheadmin_command = list(cacheadmin_command or [])
        self.cache_pool = cache_pool
        self.ec_policy = ec_policy  # instead of an erasure-coded tier's own (XOR-2-1-1024k)
        self.satisfier: bool | None = None  # whether SATISFYSTORAGEPOLICY works, once known
        self._ec_dirs: dict[str, str] = {}  # .incoming dirs landing erasure-coded -> policy
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
        if resolve_ec(tier):
            raise TierError(f"tier {tier!r} erasure-codes files as they land; HDFS cannot "
                            "re-code landed files in place: land a new version with it, "
                            "or choose 'cold' for this one")
        final = self.final_path(name, version)
        await self._landed_path(name, version)
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
        """Let the storage policy satisfier move the blocks where the cluster runs one,
        else the Mover; then report where fsck finds them."""
        if self.satisfier is not False:
            try:
                await self.client.satisfy_storage_policy(path)
            except (HdfsUnsupportedOperation, HdfsRemoteError) as exc:
                if not isinstance(exc, HdfsUnsupportedOperation) \
                        and "satisfier" not in str(exc).lower():
                    raise
                self.satisfier = False  # Hadoop < 3.2, or dfs.storage.policy.satisfier.mode=none
            else:
                self.satisfier = True
                blocks = await self._await_placement(path, policy)
                return blocks, "the storage policy satisfier moved the blocks", 0
        if not self.mover_command:
            raise HdfsError("--move needs the storage policy satisfier "
                            "(dfs.storage.policy.satisfier.mode=external) or the cluster's "
                            "mover command (mover_command)")
        return await self._run_mover(path, policy)

    async def _await_placement(self, path: str, policy: str) -> list[FsckBlock] | None:
        """Poll fsck until every block satisfies ``policy`` or ``move_timeout`` passes."""
        deadline = time.monotonic() + self.move_timeout
        blocks = await self._fsck(path)
        while blocks is not None and _misplaced(blocks, policy) \
                and time.monotonic() < deadline:
            await asyncio.sleep(self.poll_interval)
            blocks = await self._fsck(path)
        return blocks

    async def _run_mover(self, path: str, policy: str
                         ) -> tuple[list[FsckBlock] | None, str, int]:
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
        # Checked before any byte lands: HDFS itself would silently fall back to DISK.
        policy = resolve_tier(tier)
        await self._check_storage(tier, policy)
        ec = resolve_ec(tier)
        if ec is not None:
            ec = self.ec_policy or ec
            await self._check_ec(tier, ec)
            await self.client.set_ec_policy(path, ec)
            self._ec_dirs[path] = ec
        await self.client.set_storage_policy(path, policy)

    async def _check_storage(self, tier: str, policy: str) -> None:
        """The policy's first storage type must be on some DataNode in service."""
        stats = await self.client.jmx("Hadoop:service=NameNode,name=BlockStats")
        if not stats or "StorageTypeStats" not in stats:
            return  # the NameNode does not say (Hadoop < 2.8, or no /jmx): trust it
        offered = sorted(item["key"] for item in stats["StorageTypeStats"]
                         if item.get("value", {}).get("nodesInService", 1) > 0)
        wanted = POLICY_TYPES[policy][0]
        if wanted not in offered:
            raise TierError(
                f"tier {tier!r} (storage policy {policy}) needs {wanted} storage, but this "
                f"cluster's DataNodes offer only {', '.join(offered) or 'no storage'}; "
                "nothing was written")

    async def _check_ec(self, tier: str, ec: str) -> None:
        try:
            policies = await self.client.ec_policies()
        except HdfsUnsupportedOperation as exc:
            raise TierError(f"tier {tier!r} needs erasure coding ({ec}), which this cluster "
                            "does not have (Hadoop 3 and later); nothing was written") from exc
        enabled = sorted(name for name, info in policies.items() if info["state"] == "ENABLED")
        if ec not in enabled:
            raise TierError(
                f"tier {tier!r} needs the erasure coding policy {ec}, which is not enabled on "
                f"this cluster (enabled: {', '.join(enabled) or 'none'}; an administrator "
                f"enables it with 'hdfs ec -enablePolicy -policy {ec}'); nothing was written")
        state = await self.client.jmx("Hadoop:service=NameNode,name=FSNamesystemState")
        live = (state or {}).get("NumLiveDataNodes")
        if live is not None and live < policies[ec]["units"]:
            raise TierError(f"tier {tier!r} ({ec}) needs {policies[ec]['units']} live "
                            f"DataNodes, this cluster has {live}; nothing was written")

    async def _exists(self, path: str) -> bool:
        if self.native:
            return await self.native.exists(path)
        return await self.client.exists(path)

    async def _mkdirs(self, path: str) -> None:
        if self.native:
            await self.native.mkdirs(path)
        elif not await self.client.mkdirs(path):
            raise HdfsError(f"MKDIRS {path} returned false")

    async def _list_dirs(self, path: str) -> list[str]:
        try:
            if self.native:
                return await self.native.list_dirs(path)
            listing = await self.client.list(path)
        except HdfsFileNotFound:
            return []
        return [posixpath.basename(s.path) for s in listing if s.is_dir]

    async def _read_small(self, path: str) -> bytes | None:
        try:
            if self.native:
                return await self.native.read(path)
            return await self.client.read(path)
        except HdfsFileNotFound:
            return None

    async def _write_small(self, path: str, data: bytes) -> None:
        if self.native:
            await self.native.write(path, data, overwrite=True)
        else:
            await self.client.create(path, data, overwrite=True)

    async def _write_file(self, path: str, chunks: AsyncIterator[bytes], *, new: bool) -> None:
        # Delete first: after a crash the old file may still be under another writer's
        # lease, which an overwriting CREATE would fail on for a minute.
        if new or path in self._absent:
            self._absent.discard(path)
        else:
            await self._delete(path)
        if self.native:
            await self.native.write(path, chunks)
        else:
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
        ec = next((p for d, p in self._ec_dirs.items() if path.startswith(d + "/")), None)
        if ec is None and self.native:  # the NameNode's RPC: no HTTP round trip
            length, landed_ec = await self.native.length(path), None
        else:  # only WebHDFS tells the erasure coding policy
            status = await self.client.status(path)
            length, landed_ec = status.length, status.ec_policy
        if length != entry.size:
            await self._delete(path)
            raise HdfsError(f"{path}: HDFS holds {length} bytes after writing {entry.size}")
        if ec is not None and landed_ec != ec:
            await self._delete(path)
            raise HdfsError(f"{path}: landed {landed_ec or 'replicated'}, "
                            f"not erasure-coded with {ec}")
        value = f"{entry.size} {entry.sha256.hex()}".encode()
        await self.client.set_xattr(path, VERIFIED_XATTR, value, flag="CREATE")

    async def _delete(self, path: str) -> None:
        if self.native:
            await self.native.delete(path)
        else:
            await self.client.delete(path, recursive=False)

    async def _rename(self, source: str, destination: str) -> None:
        if self.native:
            await self.native.rename(source, destination)
        elif not await self.client.rename(source, destination):
            raise HdfsError(f"RENAME {source} -> {destination} returned false")
        for directory in [d for d in self._ec_dirs if d == source]:
            del self._ec_dirs[directory]

    # -- centralized cache --------------------------------------------------------

    async def cache(self, name: str, version: str) -> CacheReport:
        """Pin a landed dataset in the DataNodes' memory (HDFS cache directives) while it
        is trained on; ``uncache`` after. Where the cluster has no cache pool (or no
        cacheadmin command is configured) nothing is cached and ``detail`` says why."""
        final = await self._landed_path(name, version)
        if not self.cacheadmin_command:
            return CacheReport(name, version, False, "no cacheadmin command configured "
                               "(store.cacheadmin_command): read uncached")
        pools = await _run_tool([*self.cacheadmin_command, "-listPools"], "cacheadmin")
        if not re.search(rf"^\s*{re.escape(self.cache_pool)}\s", pools, re.MULTILINE):
            return CacheReport(
                name, version, False,
                f"the cluster has no cache pool {self.cache_pool!r}: read uncached (an "
                f"administrator adds it with 'hdfs cacheadmin -addPool {self.cache_pool}')")
        # A directive on a directory caches the files directly in it: one per directory.
        have = await self._directives(final)
        for directory in await self._directories(final):
            if directory not in have:
                await _run_tool([*self.cacheadmin_command, "-addDirective", "-path",
                                 directory, "-pool", self.cache_pool], "cacheadmin")
        return CacheReport(name, version, True,
                           f"cache directives on {final} in pool {self.cache_pool!r}")

    async def uncache(self, name: str, version: str) -> CacheReport:
        final = await self._landed_path(name, version)
        have = await self._directives(final) if self.cacheadmin_command else {}
        for directory in have:
            await _run_tool([*self.cacheadmin_command, "-removeDirectives", "-path",
                             directory], "cacheadmin")
        return CacheReport(name, version, False, f"cache directives on {final} removed"
                           if have else f"no cache directive on {final}")

    async def cached_bytes(self, name: str, version: str) -> tuple[int, int] | None:
        """(bytes needed, bytes cached) by the dataset's cache directives; None if none."""
        have = await self._directives(self.final_path(name, version))
        if not have:
            return None
        return sum(n for n, _ in have.values()), sum(c for _, c in have.values())

    async def _directives(self, final: str) -> dict[str, tuple[int, int]]:
        """{directory: (bytes needed, bytes cached)} of the directives at or under final."""
        text = await _run_tool([*self.cacheadmin_command, "-listDirectives", "-stats",
                                "-pool", self.cache_pool], "cacheadmin")
        found = {}
        for line in text.splitlines():
            fields = line.split()
            # ID POOL REPL EXPIRY PATH BYTES_NEEDED BYTES_CACHED FILES_NEEDED FILES_CACHED
            if len(fields) >= 9 and fields[0].isdigit() and \
                    (fields[4] == final or fields[4].startswith(final + "/")):
                found[fields[4]] = (int(fields[5]), int(fields[6]))
        return found

    async def _directories(self, top: str) -> list[str]:
        found, queue = [], [top]
        while queue:
            directory = queue.pop()
            found.append(directory)
            queue += [posixpath.join(directory, d) for d in await self._list_dirs(directory)]
        return found

    async def _landed_path(self, name: str, version: str) -> str:
        final = self.final_path(name, version)
        if await self._read_small(posixpath.join(final, MARKER)) is None:
            raise NotFound(f"{name}@{version} is not landed under {self.root}")
        return final


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
