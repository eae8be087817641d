"""Fixtures for transfer tests: small random datasets and libtorrent sessions that get closed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from p2pdata.catalog.manifest import FileEntry, Manifest

MIB = 1024 * 1024


def write_dataset(folder: Path, sizes: dict[str, int], name: str = "demo") -> Manifest:
    """Random files of the given sizes under `folder`, and their manifest with a torrent."""
    from p2pdata.transfer import make_torrent

    entries = []
    for path, size in sizes.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        target.write_bytes(data)
        entries.append(FileEntry(path, size, hashlib.sha256(data).digest()))
    manifest = Manifest(name=name, version="1", owner="test", created=0, format="files",
                        files=tuple(entries))
    return manifest.with_torrent(make_torrent(manifest.files, folder))


def sha256_file(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.digest()


@pytest.fixture
def dataset(tmp_path: Path) -> Callable[..., tuple[Manifest, Path]]:
    def make(sizes: dict[str, int], name: str = "demo") -> tuple[Manifest, Path]:
        folder = tmp_path / f"src-{name}"
        return write_dataset(folder, sizes, name), folder

    return make


@pytest.fixture
async def transfer_session(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Factory for started TransferSessions on 127.0.0.1:0; all are closed afterwards."""
    from p2pdata.transfer import TransferSession, TransferSettings

    sessions: list[TransferSession] = []

    async def make(name: str, budget: int = 512 * MIB, **options: Any) -> TransferSession:
        options.setdefault("staging_dir", tmp_path / f"staging-{name}")
        settings = TransferSettings(staging_budget=budget, **options)
        session = TransferSession(settings)
        await session.start()
        sessions.append(session)
        return session

    yield make
    for session in reversed(sessions):
        await session.close()
