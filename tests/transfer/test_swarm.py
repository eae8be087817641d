"""Real libtorrent sessions moving real bytes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
import types
from pathlib import Path

import libtorrent as lt
import pytest

from p2pdata.errors import StagingFull, TransferError
from p2pdata.hdfs import HashMismatch, LocalStore
from p2pdata.transfer import JobState, Progress, SwarmJob, make_torrent
from tests.plugins.transfer import MIB, sha256_file

LOCAL = "127.0.0.1"


async def land_all(job: SwarmJob, timeout: float = 60) -> dict[str, Path]:
    """Consume completed_files within a deadline, checking every file handed on."""
    landed: dict[str, Path] = {}

    async def consume() -> None:
        async for entry, path in job.completed_files():
            assert sha256_file(path) == entry.sha256
            landed[entry.path] = path

    await asyncio.wait_for(consume(), timeout)
    return landed


async def test_bytes_the_manifest_disagrees_with_never_land(
        dataset, transfer_session, tmp_path) -> None:
    # A publisher whose torrent and file hashes disagree: every piece passes its v2 hash, but
    # the manifest's SHA-256 of a.bin is not a.bin's. Landing, the one reader, refuses it.
    manifest, source = dataset({"a.bin": MIB, "b.bin": 2 * MIB})
    wrong = dataclasses.replace(manifest.files[0], sha256=hashlib.sha256(b"other").digest())
    lying = dataclasses.replace(manifest, files=(wrong, *manifest.files[1:]))
    seeder, leecher = await transfer_session("seed"), await transfer_session("leech")
    await seeder.seed(lying, source)
    job = await leecher.fetch(lying, [(LOCAL, seeder.listen_port)])
    store = LocalStore(tmp_path / "store")
    with pytest.raises(HashMismatch, match=r"a\.bin"):
        await asyncio.wait_for(store.land(lying, job.completed_files()), 60)
    assert not await store.is_landed(lying)
    assert not Path(store.final_path(lying.name, lying.version)).exists()


async def test_swarm_files_land_without_a_second_sha256_pass(
        dataset, transfer_session, tmp_path, monkeypatch) -> None:
    # What `fetch` does by default (--verify v2): the pieces passed their v2 hashes, so
    # landing computes no SHA-256; the bytes landed are still exactly the manifest's.
    manifest, source = dataset({"a.bin": 3 * MIB + 5, "b.bin": 1000})
    seeder, leecher = await transfer_session("seed"), await transfer_session("leech")
    await seeder.seed(manifest, source)
    job = await leecher.fetch(manifest, [(LOCAL, seeder.listen_port)])
    store = LocalStore(tmp_path / "store")
    hashed: list[int] = []
    # Only the landing code's own name for hashlib: the store's bookkeeping may hash paths.
    monkeypatch.setattr("p2pdata.hdfs.store.hashlib", types.SimpleNamespace(
        sha256=lambda *a: hashed.append(1) or hashlib.sha256(*a)))
    await asyncio.wait_for(store.land(manifest, job.completed_files(), sha256=False), 60)
    assert hashed == []
    final = Path(store.final_path(manifest.name, manifest.version))
    for entry in manifest.files:
        assert sha256_file(final / entry.path) == entry.sha256


async def test_hybrid_torrent_swarms_and_lands_checked_by_both_sides(
        dataset, transfer_session, tmp_path) -> None:
    manifest, source = dataset({"a.bin": 2 * MIB + 3, "dir/b.bin": 5000, "empty": 0})
    hybrid = manifest.with_torrent(make_torrent(manifest.files, source, hybrid=True))
    assert lt.torrent_info(hybrid.torrent.data).info_hashes().has_v1()
    seeder, leecher = await transfer_session("seed"), await transfer_session("leech")
    await seeder.seed(hybrid, source)
    job = await leecher.fetch(hybrid, [(LOCAL, seeder.listen_port)])
    store = LocalStore(tmp_path / "store")
    await asyncio.wait_for(store.land(hybrid, job.completed_files(), sha256=False), 60)
    final = Path(store.final_path(hybrid.name, hybrid.version))
    for entry in hybrid.files:
        assert sha256_file(final / entry.path) == entry.sha256


async def test_a_file_handed_on_is_on_disk_byte_for_byte(dataset, transfer_session) -> None:
    # Landing reads a file the moment it is handed on, while the rest still downloads. A
    # backend that hashes pieces from a write cache could hand on a file part of which is
    # not written yet (zeros when read back); ours hashes what it reads back from the file.
    sizes = {f"part-{index:02d}.bin": MIB + index * 4099 for index in range(24)}
    manifest, source = dataset(sizes | {"big.bin": 40 * MIB})
    seeder, leecher = await transfer_session("seed"), await transfer_session("leech")
    await seeder.seed(manifest, source)
    job = await leecher.fetch(manifest, [(LOCAL, seeder.listen_port)])
    assert len(await land_all(job)) == len(manifest.files)  # each checked when handed on


async def test_one_seed_to_one_leecher(dataset, transfer_session) -> None:
    manifest, source = dataset({"big.bin": 6 * MIB + 7, "dir/small.csv": 1000, "empty": 0})
    seeder, leecher = await transfer_session("seed"), await transfer_session("leech")
    await seeder.seed(manifest, source)
    job = await leecher.fetch(manifest, [(LOCAL, seeder.listen_port)])
    events: list[Progress] = []
    job.subscribe(events.append)
    landed = await land_all(job)
    assert sorted(landed) == ["big.bin", "dir/small.csv", "empty"]
    final = await job.wait()
    assert final.state is JobState.COMPLETE and final.done == final.total == manifest.total_size
    assert all(f.verified for f in final.files)
    assert events and events[-1].state is JobState.COMPLETE


async def test_two_seeds_to_one_leecher_both_used(dataset, transfer_session) -> None:
    manifest, source = dataset({"a.bin": 4 * MIB, "b.bin": 4 * MIB})
    seeds = [await transfer_session(f"seed{i}") for i in range(2)]
    for seeder in seeds:
        # Capped so neither seed can serve the whole dataset before the other joins.
        await seeder.seed(manifest, source, upload_limit=2 * MIB)
    leecher = await transfer_session("leech")
    job = await leecher.fetch(manifest, [(LOCAL, s.listen_port) for s in seeds])
    job.subscribe(lambda progress: None)  # ticks sample the per-peer counters
    await land_all(job)
    for seeder in seeds:
        assert job.peer_bytes.get((LOCAL, seeder.listen_port), 0) > MIB


async def test_three_peers_at_once(dataset, transfer_session) -> None:
    manifest, source = dataset({"a.bin": 3 * MIB, "b.bin": 3 * MIB})
    seeder = await transfer_session("seed")
    await seeder.seed(manifest, source, upload_limit=4 * MIB)
    first, second = await transfer_session("l1"), await transfer_session("l2")
    job1 = await first.fetch(manifest, [(LOCAL, seeder.listen_port)])
    job2 = await second.fetch(manifest, [(LOCAL, seeder.listen_port), (LOCAL, first.listen_port)])
    job1.add_peers([(LOCAL, second.listen_port)])
    results = await asyncio.gather(land_all(job1), land_all(job2))
    assert all(sorted(r) == ["a.bin", "b.bin"] for r in results)


async def test_files_come_in_file_order_priority_windows(dataset, transfer_session) -> None:
    # libtorrent gets FileOrder's window: the smallest file first, then the biggest, then the
    # rest; nothing stays on top once all are in.
    manifest, source = dataset({"big.bin": 3 * MIB, "mid.bin": 2 * MIB, "small.bin": MIB // 2})
    seeder, leecher = await transfer_session("seed"), await transfer_session("leech")
    await seeder.seed(manifest, source, upload_limit=4 * MIB)
    job = await leecher.fetch(manifest, [(LOCAL, seeder.listen_port)])
    index = {file.path: i for i, file in job.files.items()}
    priorities = job.handle.get_file_priorities()
    assert [priorities[index[p]] for p in ("small.bin", "big.bin", "mid.bin")] == [7, 4, 4]
    assert list(await land_all(job)) == ["small.bin", "big.bin", "mid.bin"]
    assert [job.handle.get_file_priorities()[i] for i in index.values()] == [4, 4, 4]


async def test_partial_fetch_by_glob(dataset, transfer_session) -> None:
    manifest, source = dataset({"train/1.bin": MIB, "train/2.bin": MIB, "test/1.bin": 2 * MIB})
    seeder, leecher = await transfer_session("seed"), await transfer_session("leech")
    await seeder.seed(manifest, source)
    job = await leecher.fetch(manifest, [(LOCAL, seeder.listen_port)], files=["train/*"])
    assert sorted(await land_all(job)) == ["train/1.bin", "train/2.bin"]
    progress = await job.wait()
    assert progress.total == 2 * MIB
    assert not (job.folder / "test/1.bin").exists() or \
        (job.folder / "test/1.bin").stat().st_blocks == 0
    with pytest.raises(TransferError, match="no file"):
        await leecher.fetch(manifest, [], files=["nothing/*"])


async def test_download_limit_holds_within_20_percent(dataset, transfer_session) -> None:
    limit = 3 * MIB
    manifest, source = dataset({"a.bin": 16 * MIB})
    seeder, leecher = await transfer_session("seed"), await transfer_session("leech")
    await seeder.seed(manifest, source)
    job = await leecher.fetch(manifest, [(LOCAL, seeder.listen_port)], download_limit=limit)
    marks: list[tuple[float, int]] = []

    def watch(progress: Progress) -> None:
        # Steady state only: past the first MiB (the limiter starts with a burst allowance) and
        # before the last byte (a sample taken after completion would stretch the window).
        if MIB <= progress.downloaded < manifest.total_size:
            marks.append((time.monotonic(), progress.downloaded))

    job.subscribe(watch)
    await land_all(job)
    assert len(marks) >= 5, marks
    # The limiter lets bytes through in bursts up to a second apart: the slope of a line
    # fitted to every sample, not two end points that may fall either side of a burst.
    mean_t = sum(t for t, _ in marks) / len(marks)
    mean_b = sum(b for _, b in marks) / len(marks)
    rate = sum((t - mean_t) * (b - mean_b) for t, b in marks) / sum((t - mean_t) ** 2 for t, _ in marks)
    assert 0.8 * limit <= rate <= 1.2 * limit, f"{rate / MIB:.2f} MiB/s against {limit / MIB}"


async def test_corrupt_peer_is_banned_and_fetch_completes(dataset, transfer_session,
                                                          tmp_path) -> None:
    manifest, source = dataset({"a.bin": 4 * MIB, "b.bin": 4 * MIB})
    bad_copy = tmp_path / "bad"
    bad_copy.mkdir()
    for entry in manifest.files:
        (bad_copy / entry.path).write_bytes((source / entry.path).read_bytes())
    good, bad = await transfer_session("good"), await transfer_session("bad")
    await good.seed(manifest, source, upload_limit=2 * MIB)
    bad_seed = await bad.seed(manifest, bad_copy, verify=True)
    await asyncio.wait_for(bad_seed.ready(), 30)
    # Corrupt the files after the check: the bad peer now serves wrong bytes as good.
    for entry in manifest.files:
        (bad_copy / entry.path).write_bytes(bytes(entry.size))
    leecher = await transfer_session("leech")
    job = await leecher.fetch(manifest, [(LOCAL, bad.listen_port), (LOCAL, good.listen_port)])
    await land_all(job)
    assert job.hash_failures > 0
    assert (LOCAL, bad.listen_port) in job.banned


async def test_pause_resume_cancel(dataset, transfer_session) -> None:
    manifest, source = dataset({"a.bin": 6 * MIB})
    seeder, leecher = await transfer_session("seed"), await transfer_session("leech")
    await seeder.seed(manifest, source, upload_limit=2 * MIB)
    job = await leecher.fetch(manifest, [(LOCAL, seeder.listen_port)])
    await job.ready()
    job.pause()
    assert job.progress().state is JobState.PAUSED
    job.resume()
    assert job.state is JobState.DOWNLOADING
    await job.cancel()
    with pytest.raises(TransferError, match="cancelled"):
        await land_all(job)
    assert not job.folder.exists()


async def test_staging_budget_exceeded_is_refused(dataset, transfer_session) -> None:
    manifest, _ = dataset({"a.bin": 3 * MIB})
    leecher = await transfer_session("leech", budget=2 * MIB)
    with pytest.raises(StagingFull, match=r"demo@1 needs 3\.0 MiB of staging.*budget is 2\.0"):
        await leecher.fetch(manifest, [])


async def test_fetch_evicts_least_recently_used_seed(dataset, transfer_session) -> None:
    one, source_one = dataset({"a.bin": 2 * MIB}, name="one")
    two, source_two = dataset({"b.bin": 2 * MIB}, name="two")
    seeder = await transfer_session("seed")
    await seeder.seed(one, source_one)
    await seeder.seed(two, source_two)
    leecher = await transfer_session("leech", budget=3 * MIB)
    job = await leecher.fetch(one, [(LOCAL, seeder.listen_port)])
    await land_all(job)
    job.release()  # landed: now an idle seed
    job2 = await leecher.fetch(two, [(LOCAL, seeder.listen_port)])
    assert not job.folder.exists()
    await land_all(job2)
