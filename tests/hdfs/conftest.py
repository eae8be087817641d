"""Helpers for the HDFS room's tests: manifests of real local files and sources."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.hdfs.localcluster import LocalHdfs


def make_dataset(directory: Path, name: str, sizes: Sequence[int],
                 version: str = "1") -> tuple[Manifest, dict[str, Path]]:
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    entries = []
    for i, size in enumerate(sizes):
        path = directory / f"{name}-{version}-part{i}.bin"
        data = os.urandom(size)
        path.write_bytes(data)
        rel = f"data/part-{i:03d}.bin"
        files[rel] = path
        entries.append(FileEntry(rel, size, hashlib.sha256(data).digest()))
    manifest = Manifest(name=name, version=version, owner="test", created=0,
                        format="files", files=tuple(entries))
    return manifest, files


async def source_of(manifest: Manifest, files: dict[str, Path],
                    gate: Callable[[int], asyncio.Event | None] = lambda i: None,
                    ) -> AsyncIterator[tuple[FileEntry, Path]]:
    """Yield files one by one; ``gate(i)`` may return an event to wait for before file i."""
    for i, entry in enumerate(manifest.files):
        event = gate(i)
        if event is not None:
            await event.wait()
        await asyncio.sleep(0)
        yield entry, files[entry.path]


def hdfs_options(cluster: LocalHdfs) -> dict[str, object]:
    return {
        "webhdfs_url": cluster.webhdfs_url,
        "user": getpass.getuser(),
        "namenode": cluster.namenode_address,
        "storagepolicy_command": cluster.storagepolicy_command,
        "mover_command": cluster.mover_command,
        "fsck_command": cluster.fsck_command,
        "cacheadmin_command": cluster.cacheadmin_command,
    }


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A name unique to this test (HDFS is shared by the whole session)."""
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:10]
    return f"t{digest}"
