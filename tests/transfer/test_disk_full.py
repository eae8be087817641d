"""A full staging disk: refused up front when known, a clean job failure when it fills later."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pdata.errors import StagingFull, TransferError
from p2pdata.transfer import JobState
from tests.plugins.transfer import MIB, sha256_file


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs (needs root to mount)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                            capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_fetch_larger_than_free_disk_is_refused(small_disk, dataset,
                                                      transfer_session) -> None:
    manifest, _ = dataset({"a.bin": 8 * MIB})
    leecher = await transfer_session("leech", staging_dir=small_disk / "staging")
    with pytest.raises(StagingFull, match=r"only .* MiB free"):
        await leecher.fetch(manifest, [])


async def test_disk_filling_up_fails_the_job_cleanly(small_disk, dataset,
                                                     transfer_session) -> None:
    manifest, source = dataset({"a.bin": 1 * MIB, "b.bin": 4 * MIB})
    seeder = await transfer_session("seed")
    await seeder.seed(manifest, source, upload_limit=2 * MIB)
    leecher = await transfer_session("leech", staging_dir=small_disk / "staging")
    job = await leecher.fetch(manifest, [("127.0.0.1", seeder.listen_port)])
    # Someone else fills the disk after the fetch was admitted.
    with (small_disk / "filler").open("wb", buffering=0) as filler, \
            pytest.raises(OSError, match="No space"):
        while True:
            filler.write(bytes(256 * 1024))
    landed = []
    with pytest.raises(TransferError, match="disk error"):
        async with asyncio.timeout(60):
            async for entry, path in job.completed_files():
                assert sha256_file(path) == entry.sha256  # nothing corrupt is handed on
                landed.append(entry.path)
    assert job.state is JobState.FAILED and "b.bin" not in landed
