"""One store test suite, run against LocalStore and HdfsStore (real HDFS)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from p2pdata.catalog.manifest import FileEntry
from p2pdata.errors import LandingError, NotFound, StoreError
from p2pdata.hdfs import HashMismatch, LandingProgress, Store, open_store
from p2pdata.hdfs.landing import MARKER
from tests.hdfs.conftest import hdfs_options, make_dataset, source_of


@pytest.fixture(params=["local", pytest.param("hdfs", marks=pytest.mark.hdfs)])
async def store(request: pytest.FixtureRequest, tmp_path: Path,
                unique: str) -> AsyncIterator[Store]:
    if request.param == "local":
        opened = open_store("local", str(tmp_path / "store"))
    else:
        cluster = request.getfixturevalue("hdfs_cluster")
        opened = open_store("hdfs", f"/{unique}/store", **hdfs_options(cluster))
    async with opened:
        yield opened


async def read(store: Store, path: str) -> bytes:
    if store.kind == "local":
        return Path(path).read_bytes()
    return await store.client.read(path)  # type: ignore[attr-defined]


async def exists(store: Store, path: str) -> bool:
    return await store._exists(path)


async def test_land_happy_path(store: Store, tmp_path: Path) -> None:
    manifest, files = make_dataset(tmp_path / "src", "imagenet", [1000, 0, 300_000, 5])
    events: list[LandingProgress] = []
    result = await store.land(manifest, source_of(manifest, files), "ssd",
                              progress=events.append)
    final = store.final_path("imagenet", "1")
    assert (result.status, result.path, result.policy) == ("landed", final, "ALL_SSD")
    assert (result.files_written, result.files_resumed, result.bytes_written) == \
        (4, 0, manifest.total_size)
    assert result.uri == store.uri(manifest) and result.uri.endswith("/imagenet/1")
    for entry in manifest.files:
        assert await read(store, f"{final}/{entry.path}") == files[entry.path].read_bytes()
    assert await read(store, f"{final}/{MARKER}") == manifest.id.encode()
    assert not await exists(store, store.incoming_path("imagenet", "1"))
    assert events[-1].files_done == 4 and events[-1].bytes_done == manifest.total_size
    assert await store.is_landed(manifest)
    [landed] = await store.list_landed()
    assert (landed.name, landed.version, landed.manifest_id) == ("imagenet", "1", manifest.id)

    again = await store.land(manifest, source_of(manifest, files), "ssd")
    assert again.already_landed and again.files_written == 0


async def test_hash_mismatch_lands_nothing_then_resumes(store: Store, tmp_path: Path) -> None:
    manifest, files = make_dataset(tmp_path / "src", "ds", [2000, 3000, 4000])
    good = files["data/part-001.bin"].read_bytes()
    files["data/part-001.bin"].write_bytes(b"corrupt" + good[7:])
    store.concurrency = 1  # deterministic: files before the bad one are verified

    with pytest.raises(HashMismatch, match="part-001"):
        await store.land(manifest, source_of(manifest, files), "hot")
    assert not await exists(store, store.final_path("ds", "1"))
    assert not await store.is_landed(manifest)

    files["data/part-001.bin"].write_bytes(good)
    result = await store.land(manifest, source_of(manifest, files), "hot")
    assert result.status == "landed"
    assert (result.files_resumed, result.files_written) == (1, 2)


async def test_source_ending_early_lands_nothing(store: Store, tmp_path: Path) -> None:
    manifest, files = make_dataset(tmp_path / "src", "ds", [10, 20])

    async def short() -> AsyncIterator[tuple[FileEntry, Path]]:
        entry = manifest.files[0]
        yield entry, files[entry.path]

    with pytest.raises(LandingError, match="ended before 1 file"):
        await store.land(manifest, short())
    assert not await exists(store, store.final_path("ds", "1"))


async def test_two_datasets_land_at_once(store: Store, tmp_path: Path) -> None:
    first, first_files = make_dataset(tmp_path / "a", "first", [50_000] * 5)
    second, second_files = make_dataset(tmp_path / "b", "second", [70_000] * 5)
    results = await asyncio.gather(
        store.land(first, source_of(first, first_files), "hot"),
        store.land(second, source_of(second, second_files), "cold"),
    )
    assert [r.status for r in results] == ["landed", "landed"]
    assert sorted(d.name for d in await store.list_landed()) == ["first", "second"]
    for manifest, files in ((first, first_files), (second, second_files)):
        final = store.final_path(manifest.name, "1")
        for entry in manifest.files:
            data = await read(store, f"{final}/{entry.path}")
            assert hashlib.sha256(data).digest() == entry.sha256
            assert data == files[entry.path].read_bytes()


async def test_set_tier(store: Store, tmp_path: Path) -> None:
    manifest, files = make_dataset(tmp_path / "src", "ds", [4096])
    await store.land(manifest, source_of(manifest, files), "hot")
    report = await store.set_tier("ds", "1", "ssd")
    assert report.policy == "ALL_SSD" and not report.moved
    if store.kind == "local":
        assert not report.enforced and "not enforced" in report.detail
    else:
        assert report.enforced
        assert await store.client.get_storage_policy(  # type: ignore[attr-defined]
            store.final_path("ds", "1")) == "ALL_SSD"
        # Without --move the existing blocks stay where HOT put them.
        assert report.placement == {"DISK": 2}
    with pytest.raises(NotFound):
        await store.set_tier("nope", "1", "ssd")


def test_open_store_rejects_unknown_kind() -> None:
    with pytest.raises(StoreError, match="unknown store kind 's3'"):
        open_store("s3", "/x")
