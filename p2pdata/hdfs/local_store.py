"""The embedded default store: a local directory with HDFS's layout and guarantees."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from p2pdata.catalog.manifest import FileEntry
from p2pdata.errors import NotFound, StoreError
from p2pdata.hdfs.landing import MARKER, TIER_FILE
from p2pdata.hdfs.store import Store, TierReport
from p2pdata.hdfs.tiers import resolve_tier


class LocalStore(Store):
    kind = "local"

    def __init__(self, root: str | Path, *, concurrency: int = 4) -> None:
        super().__init__(str(Path(root).expanduser().absolute()), concurrency=concurrency)

    def uri_for(self, name: str, version: str) -> str:
        return Path(self.final_path(name, version)).as_uri()

    async def set_tier(self, name: str, version: str, tier: str,
                       move: bool = False) -> TierReport:
        final = self.final_path(name, version)
        if not os.path.exists(os.path.join(final, MARKER)):
            raise NotFound(f"{name}@{version} is not landed in {self.root}")
        policy = resolve_tier(tier)
        await self._apply_tier(final, tier)
        return TierReport(name, version, policy, enforced=False, moved=False,
                          detail="local store: the tier is recorded, not enforced")

    # -- primitives ---------------------------------------------------------------

    def _policy(self, tier: str | None) -> str | None:
        return resolve_tier(tier) if tier is not None else None

    async def _apply_tier(self, path: str, tier: str) -> None:
        await self._write_small(os.path.join(path, TIER_FILE), resolve_tier(tier).encode())

    async def _exists(self, path: str) -> bool:
        return os.path.lexists(path)

    async def _mkdirs(self, path: str) -> None:
        await asyncio.to_thread(os.makedirs, path, exist_ok=True)

    async def _list_dirs(self, path: str) -> list[str]:
        try:
            return [e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []

    async def _read_small(self, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    async def _write_small(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(_write_atomic, Path(path), data)

    async def _write_file(self, path: str, chunks: AsyncIterator[bytes], *, new: bool) -> None:
        await self._forget_verified(path)
        await self._mkdirs(os.path.dirname(path))
        try:
            handle = await asyncio.to_thread(open, path, "wb")
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(handle.write, chunk)
                await asyncio.to_thread(_flush_sync, handle)
            finally:
                handle.close()
        except OSError as exc:
            raise StoreError(f"writing {path}: {exc}") from exc

    # Verified files are recorded in a sidecar next to (not inside) the incoming
    # directory, so it never ends up in the landed dataset.
    def _sidecar(self, path: str) -> Path:
        rel = os.path.relpath(path, os.path.join(self.root, ".incoming"))
        name, version, file_path = rel.split(os.sep, 2)
        key = hashlib.sha256(file_path.encode()).hexdigest()
        return Path(self.root, ".incoming", name, f".{version}.verified", key)

    async def _verified(self, path: str) -> tuple[int, bytes] | None:
        record = await self._read_small(str(self._sidecar(path)))
        if record is None or not os.path.isfile(path):
            return None
        size, digest = record.decode().split()
        if os.path.getsize(path) != int(size):
            return None
        return int(size), bytes.fromhex(digest)

    async def _mark_verified(self, path: str, entry: FileEntry) -> None:
        sidecar = self._sidecar(path)
        await self._mkdirs(str(sidecar.parent))
        await self._write_small(str(sidecar), f"{entry.size} {entry.sha256.hex()}".encode())

    async def _forget_verified(self, path: str) -> None:
        self._sidecar(path).unlink(missing_ok=True)

    async def _delete(self, path: str) -> None:
        await self._forget_verified(path)
        Path(path).unlink(missing_ok=True)

    async def _rename(self, source: str, destination: str) -> None:
        await asyncio.to_thread(os.rename, source, destination)
        await asyncio.to_thread(_fsync_dir, os.path.dirname(destination))

    async def _after_landing(self, name: str, version: str) -> None:
        sidecars = Path(self.root, ".incoming", name, f".{version}.verified")
        await asyncio.to_thread(shutil.rmtree, sidecars, True)


def _flush_sync(handle: object) -> None:
    handle.flush()  # type: ignore[attr-defined]
    os.fsync(handle.fileno())  # type: ignore[attr-defined]


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        _flush_sync(handle)
    os.replace(tmp, path)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
