"""Hadoop 3 on the real cluster: native landing, erasure coding, cache, clear refusals, faults."""

from __future__ import annotations

import asyncio
import getpass
import time
from pathlib import Path

import pytest

from p2pdata.errors import StoreError
from p2pdata.hdfs import (
    HdfsConnectionError,
    HdfsPermissionDenied,
    HdfsStore,
    LandingProgress,
    TierError,
    WebHdfsClient,
    open_store,
)
from p2pdata.hdfs.localcluster import EC_POLICY, KerberosNameNode, LocalHdfs
from p2pdata.hdfs.tiers import parse_fsck_blocks
from tests.hdfs.conftest import hdfs_options, make_dataset, source_of

pytestmark = pytest.mark.hdfs
MiB = 1 << 20


def hdfs_store(cluster: LocalHdfs, root: str, **options: object) -> HdfsStore:
    store = open_store("hdfs", root, **{**hdfs_options(cluster), **options})
    assert isinstance(store, HdfsStore)
    return store


async def test_hdfs_stores_land_over_the_native_protocol(
        hdfs_cluster: LocalHdfs, tmp_path: Path, unique: str) -> None:
    manifest, files = make_dataset(tmp_path, "ds", [3 * MiB, 10, 0])
    async with hdfs_store(hdfs_cluster, f"/{unique}") as store:
        assert store.native is not None
        result = await store.land(manifest, source_of(manifest, files), "hot")
        assert (result.status, result.files_written) == ("landed", 3)
        assert result.uri == f"{hdfs_cluster.namenode_address}/{unique}/ds/1"
        # What the native client wrote is what WebHDFS reads, owned by the store's user.
        final = store.final_path("ds", "1")
        for entry in manifest.files:
            path = f"{final}/{entry.path}"
            assert await store.client.read(path) == files[entry.path].read_bytes()
            assert (await store.client.status(path)).owner == getpass.getuser()
        assert await store.is_landed(manifest)


async def test_cold_ec_lands_erasure_coded_on_archive(
        hdfs_cluster: LocalHdfs, tmp_path: Path, unique: str) -> None:
    manifest, files = make_dataset(tmp_path, "ec", [5 * MiB, 100_000])
    async with hdfs_store(hdfs_cluster, f"/{unique}") as store:
        result = await store.land(manifest, source_of(manifest, files), "cold-ec")
        final = store.final_path("ec", "1")
        for entry in manifest.files:
            status = await store.client.status(f"{final}/{entry.path}")
            assert status.ec_policy == EC_POLICY
            assert await store.native.read(f"{final}/{entry.path}") == \
                files[entry.path].read_bytes()  # type: ignore[union-attr]
        assert result.policy == "COLD"
        with pytest.raises(TierError, match="cannot re-code"):
            await store.set_tier("ec", "1", "cold-ec")
    # A block group: two data blocks (one for a file under a 1 MiB cell) and a parity
    # block, each on its own DataNode's ARCHIVE.
    # DataNodes report finished blocks asynchronously: wait for all of them.
    wanted = {"part-000.bin": ("ARCHIVE",) * 3, "part-001.bin": ("ARCHIVE",) * 2}
    deadline = time.monotonic() + 30
    while (blocks := {b.path.rsplit("/", 1)[1]: b.storages
                      for b in parse_fsck_blocks(hdfs_cluster.fsck(final))
                      if "/data/" in b.path}) != wanted:
        assert time.monotonic() < deadline, blocks
        await asyncio.sleep(0.3)


async def test_an_ec_policy_not_enabled_is_refused_before_writing(
        hdfs_cluster: LocalHdfs, tmp_path: Path, unique: str) -> None:
    manifest, files = make_dataset(tmp_path, "rs", [1000])
    async with hdfs_store(hdfs_cluster, f"/{unique}", ec_policy="RS-3-2-1024k") as store:
        with pytest.raises(TierError, match=r"RS-3-2-1024k, which is not enabled.*"
                                            rf"enabled: .*{EC_POLICY}"):
            await store.land(manifest, source_of(manifest, files), "cold-ec")
        assert await store.client.list(store.incoming_path("rs", "1")) == []


async def test_tiers_the_cluster_lacks_are_refused_before_writing(
        hdfs_tls_cluster: LocalHdfs, tmp_path: Path, unique: str) -> None:
    """The small cluster: one DataNode with DISK and ARCHIVE, no cache pool."""
    manifest, files = make_dataset(tmp_path, "ds", [1000])
    async with hdfs_store(hdfs_tls_cluster, f"/{unique}") as store:
        with pytest.raises(TierError, match=r"'ssd' \(storage policy ALL_SSD\) needs SSD "
                                            r"storage.*offer only ARCHIVE, DISK"):
            await store.land(manifest, source_of(manifest, files), "ssd")
        with pytest.raises(TierError, match=r"needs 3 live DataNodes, this cluster has 1"):
            await store.land(manifest, source_of(manifest, files), "cold-ec")
        assert await store.client.list(store.incoming_path("ds", "1")) == []
        await store.land(manifest, source_of(manifest, files), "cold")
        report = await store.cache("ds", "1")
        assert not report.cached and "no cache pool 'p2pdata'" in report.detail


async def test_cache_directive_while_training_then_removed(
        hdfs_cluster: LocalHdfs, tmp_path: Path, unique: str) -> None:
    manifest, files = make_dataset(tmp_path, "hot", [2 * MiB, 4096])
    async with hdfs_store(hdfs_cluster, f"/{unique}") as store:
        await store.land(manifest, source_of(manifest, files), "hot")
        assert await store.cached_bytes("hot", "1") is None
        report = await store.cache("hot", "1")
        assert report.cached, report
        deadline = time.monotonic() + 60
        while True:  # the DataNodes cache the blocks and report them within seconds
            needed, cached = await store.cached_bytes("hot", "1") or (0, -1)
            if needed and cached == needed:
                break
            assert time.monotonic() < deadline, (needed, cached)
            await asyncio.sleep(0.3)
        assert needed >= manifest.total_size
        assert (await store.cache("hot", "1")).cached  # twice: still one directive
        assert not (await store.uncache("hot", "1")).cached
        assert await store.cached_bytes("hot", "1") is None


async def test_a_path_the_user_cannot_write_fails_clearly(
        hdfs_cluster: LocalHdfs, tmp_path: Path, unique: str) -> None:
    async with WebHdfsClient(hdfs_cluster.webhdfs_url, user=getpass.getuser()) as admin:
        await admin.mkdirs(f"/{unique}/private", permission="755")
    manifest, files = make_dataset(tmp_path, "ds", [1000])
    async with hdfs_store(hdfs_cluster, f"/{unique}/private", user="mallory") as store:
        started = time.monotonic()
        with pytest.raises(HdfsPermissionDenied, match="mallory"):
            await store.land(manifest, source_of(manifest, files), "hot")
        assert time.monotonic() - started < 30


async def test_datanode_killed_mid_landing_then_resumed(
        hdfs_cluster: LocalHdfs, tmp_path: Path, unique: str) -> None:
    manifest, files = make_dataset(tmp_path, "dn", [300_000] * 6)
    two_done, node_down = asyncio.Event(), asyncio.Event()

    def progress(event: LandingProgress) -> None:
        if event.files_done == 2:
            two_done.set()

    async def kill_datanodes() -> None:
        await two_done.wait()
        # Every DataNode: whichever one the next block goes to is gone.
        for i in range(hdfs_cluster.datanodes):
            await asyncio.to_thread(hdfs_cluster.stop_datanode, i)
        node_down.set()

    store = hdfs_store(hdfs_cluster, f"/{unique}", native_timeout=30.0)
    store.concurrency = 1
    try:
        async with store:
            killer = asyncio.create_task(kill_datanodes())
            started = time.monotonic()
            with pytest.raises(StoreError):
                await store.land(manifest, source_of(
                    manifest, files, gate=lambda i: node_down if i == 2 else None),
                    "hot", progress=progress)
            await killer
            assert time.monotonic() - started < 120
            assert not await store.is_landed(manifest)
    finally:
        for i in range(hdfs_cluster.datanodes):
            await asyncio.to_thread(hdfs_cluster.start_datanode, i)
    async with hdfs_store(hdfs_cluster, f"/{unique}") as store:
        result = await store.land(manifest, source_of(manifest, files), "hot")
        assert (result.status, result.files_resumed, result.files_written) == ("landed", 2, 4)


async def test_training_reads_landed_data_over_the_native_protocol(
        hdfs_cluster: LocalHdfs, tmp_path: Path, unique: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from p2pdata.catalog.manifest import FileEntry, Manifest
    from p2pdata.training.data import open_dataset

    local = tmp_path / "part-0.parquet"
    pq.write_table(pa.table({"x": list(range(1000)), "label": [i % 2 for i in range(1000)]}),
                   local)
    data = local.read_bytes()
    manifest = Manifest(name="pq", version="1", owner="test", created=0, format="parquet",
                        files=(FileEntry("part-0.parquet", len(data),
                                         hashlib.sha256(data).digest()),))
    async with hdfs_store(hdfs_cluster, f"/{unique}") as store:
        result = await store.land(manifest, source_of(manifest, {"part-0.parquet": local}))
    assert result.uri.startswith("hdfs://127.0.0.1:")
    monkeypatch.setenv("P2PDATA_HDFS_USER", getpass.getuser())
    dataset = await asyncio.to_thread(open_dataset, result.uri)
    assert dataset.count_rows() == 1000


async def test_a_full_datanode_fails_the_landing_which_resumes_once_there_is_room(
        hdfs_tls_cluster: LocalHdfs, tmp_path: Path, unique: str) -> None:
    """The small cluster's only DataNode, restarted with all its space reserved."""
    manifest, files = make_dataset(tmp_path, "full", [1000, 2000])
    cluster = hdfs_tls_cluster
    await asyncio.to_thread(cluster.stop_datanode, 0)
    try:
        await asyncio.to_thread(cluster.start_datanode, 0,
                                {"dfs.datanode.du.reserved": str(1 << 60)})
        async with hdfs_store(cluster, f"/{unique}", native_timeout=60.0) as store:
            started = time.monotonic()
            with pytest.raises(StoreError, match="could only be written to 0"):
                await store.land(manifest, source_of(manifest, files), "hot")
            assert time.monotonic() - started < 60
            assert not await store.is_landed(manifest)
    finally:
        await asyncio.to_thread(cluster.stop_datanode, 0)
        await asyncio.to_thread(cluster.start_datanode, 0)
    async with hdfs_store(cluster, f"/{unique}") as store:
        result = await store.land(manifest, source_of(manifest, files), "hot")
        assert (result.status, result.files_written) == ("landed", 2)


async def test_a_kerberos_cluster_the_client_cannot_authenticate_to_fails_at_once(
        hdfs_tls_cluster: LocalHdfs, tmp_path: Path, unique: str) -> None:
    manifest, files = make_dataset(tmp_path, "krb", [1000])
    with KerberosNameNode(tmp_path / "kerberos-nn.log") as secure:
        started = time.monotonic()
        async with hdfs_store(hdfs_tls_cluster, f"/{unique}", native_timeout=30.0,
                              namenode=secure.namenode_address) as store:
            with pytest.raises(HdfsConnectionError, match=rf"{secure.namenode_address}.*Kerberos"):
                await store.land(manifest, source_of(manifest, files), "hot")
        assert time.monotonic() - started < 40
