"""Storage policies are set, reported and really decide which tier holds the blocks."""

from __future__ import annotations

import asyncio
import getpass
import time

import pytest

from p2pdata.hdfs import WebHdfsClient
from p2pdata.hdfs.localcluster import LocalHdfs

pytestmark = pytest.mark.hdfs


async def poll(predicate, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


@pytest.mark.parametrize(("tier", "policy", "storage"), [
    ("ssd", "ALL_SSD", "ssd"),
    ("hot", "HOT", "disk"),
    ("cold", "COLD", "archive"),
    ("memory", "LAZY_PERSIST", "ram_disk"),
])
async def test_policy_places_blocks_on_its_tier(
        hdfs_cluster: LocalHdfs, unique: str, tier: str, policy: str, storage: str) -> None:
    async with WebHdfsClient(hdfs_cluster.webhdfs_url, user=getpass.getuser(),
                             storagepolicy_command=hdfs_cluster.storagepolicy_command) as c:
        directory = f"/{unique}"
        await c.mkdirs(directory)
        await c.set_storage_policy(directory, tier)
        assert await c.get_storage_policy(directory) == policy
        before = set(hdfs_cluster.block_files(storage))
        await c.create(f"{directory}/f", b"x" * 4096)
    # The DataNode finalises the block asynchronously after the write returns.
    assert await poll(lambda: len(set(hdfs_cluster.block_files(storage)) - before) == 1), \
        f"no new block under {hdfs_cluster.data_dir(storage)}"
    placement = hdfs_cluster.fsck(directory)
    assert f",{'RAM_DISK' if storage == 'ram_disk' else storage.upper()}]" in placement
