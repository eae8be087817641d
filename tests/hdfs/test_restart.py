"""HDFS stopped in the middle of a landing, then restarted: the landing completes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from p2pdata.errors import StoreError
from p2pdata.hdfs import LandingProgress, open_store
from p2pdata.hdfs.localcluster import LocalHdfs
from tests.hdfs.conftest import hdfs_options, make_dataset, source_of

pytestmark = pytest.mark.hdfs


async def test_landing_survives_hdfs_restart(hdfs_cluster: LocalHdfs, tmp_path: Path,
                                             unique: str) -> None:
    manifest, files = make_dataset(tmp_path, "ds", [200_000] * 4)
    root = f"/{unique}"
    two_done = asyncio.Event()
    hdfs_down = asyncio.Event()

    def progress(event: LandingProgress) -> None:
        if event.files_done == 2:
            two_done.set()

    async def crash_after_two() -> None:
        await two_done.wait()
        pid = hdfs_cluster._proc.pid  # type: ignore[union-attr]
        await asyncio.to_thread(hdfs_cluster.stop, yarn=False)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        hdfs_down.set()

    store = open_store("hdfs", root, **hdfs_options(hdfs_cluster))
    store.concurrency = 1
    async with store:
        crash = asyncio.create_task(crash_after_two())
        with pytest.raises(StoreError):
            await store.land(manifest, source_of(
                manifest, files, gate=lambda i: hdfs_down if i == 2 else None),
                "hot", progress=progress)
        await crash

    await asyncio.to_thread(hdfs_cluster.start)  # same directories and ports
    async with open_store("hdfs", root, **hdfs_options(hdfs_cluster)) as store:
        assert not await store.is_landed(manifest)
        result = await store.land(manifest, source_of(manifest, files), "hot")
        assert result.status == "landed"
        assert (result.files_resumed, result.files_written) == (2, 2)
        assert await store.is_landed(manifest)
