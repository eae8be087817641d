"""`tier --move`: the storage policy satisfier, else the Mover, moves the blocks until fsck
finds them where the new policy wants them."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from p2pdata.cli import _tier_summary
from p2pdata.hdfs import HdfsStore, open_store
from p2pdata.hdfs.localcluster import LocalHdfs
from p2pdata.hdfs.tiers import parse_fsck_blocks
from tests.hdfs.conftest import hdfs_options, make_dataset, source_of


@pytest.mark.hdfs
@pytest.mark.parametrize("satisfier", [True, False], ids=["satisfier", "mover"])
async def test_move_to_cold_puts_every_block_on_archive(
        hdfs_cluster: LocalHdfs, tmp_path: Path, unique: str, satisfier: bool) -> None:
    manifest, files = make_dataset(tmp_path, "clicks", [4096, 10_000, 1, 70_000, 5000])
    store = open_store("hdfs", f"/{unique}", **hdfs_options(hdfs_cluster))
    assert isinstance(store, HdfsStore)
    if not satisfier:
        store.satisfier = False  # as on a cluster without one: the Mover's way
    async with store:
        await store.land(manifest, source_of(manifest, files), "hot")
        final = store.final_path("clicks", "1")

        unmoved = await store.set_tier("clicks", "1", "cold")
        assert (unmoved.policy, unmoved.moved, unmoved.satisfied) == ("COLD", False, False)
        assert unmoved.placement == {"DISK": 6} and unmoved.misplaced == 6  # 5 files + marker

        started = time.monotonic()
        report = await store.set_tier("clicks", "1", "cold", move=True)
        took = time.monotonic() - started

    assert (report.moved, report.satisfied, report.misplaced) == (True, True, 0), report
    assert report.placement == {"ARCHIVE": 6}
    assert report.mover_runs == (0 if satisfier else 1) and took < 60, (report, took)
    assert store.satisfier is satisfier
    if satisfier:
        assert "satisfier" in report.detail
    # What `p2pdata tier` prints from the daemon's JSON of these reports.
    assert _tier_summary(asdict(unmoved)) == (
        "clicks@1: storage policy COLD; block replicas: 6 on DISK; "
        "6 block(s) not where COLD wants them (use --move to move them)")
    assert _tier_summary(asdict(report)) == (
        "clicks@1: storage policy COLD; block replicas: 6 on ARCHIVE; all where COLD wants them")
    # The DataNode's own directories agree with fsck.
    blocks = parse_fsck_blocks(hdfs_cluster.fsck(final))
    archived = {p.name for p in hdfs_cluster.block_files("archive")}
    on_disk = {p.name for p in hdfs_cluster.block_files("disk")}
    for block in blocks:
        name = block.block.rsplit("_", 1)[0]  # blk_<id>_<genstamp> -> file blk_<id>
        assert name in archived and name not in on_disk, block


# The mover's loop against stand-in tools: a NameNode's view that changes one block per
# mover run (as the 2.7.3 mover does on a busy DataNode), none, or a mover that hangs.
FAKE_TOOL = '''
import json, os, signal, sys
tool, state_file = sys.argv[1], sys.argv[2]
with open(state_file) as f:
    state = json.load(f)
if tool == "mover":
    state["runs"] += 1
    if state["hang"]:
        with open(state_file + ".pid", "w") as f:
            f.write(str(os.getpid()))
        signal.pause()  # hangs until the store kills it
    moved = 0
    for i, storage in enumerate(state["storages"]):
        if storage != state["target"] and moved < state["per_run"]:
            state["storages"][i] = state["target"]
            moved += 1
    with open(state_file, "w") as f:
        json.dump(state, f)
    print("Mover took 0sec")
else:
    print(f"{sys.argv[3]} <dir>")
    for i, storage in enumerate(state["storages"]):
        print(f"{sys.argv[3]}/f{i} 10 bytes, 1 block(s):  OK")
        print(f"0. BP-1:blk_{i}_1 len=10 repl=1 [DatanodeInfoWithStorage[127.0.0.1:1,DS-1,{storage}]]")
'''


def fake_store(tmp_path: Path, *, per_run: int, hang: bool = False,
               **options: float) -> tuple[HdfsStore, Path]:
    script = tmp_path / "tool.py"
    script.write_text(FAKE_TOOL)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"storages": ["DISK"] * 3, "target": "ARCHIVE",
                                 "per_run": per_run, "hang": hang, "runs": 0}))
    store = HdfsStore(
        "/p2pdata", webhdfs_url="http://127.0.0.1:9",
        mover_command=[sys.executable, str(script), "mover", str(state)],
        fsck_command=[sys.executable, str(script), "fsck", str(state)],
        poll_interval=0.05, **options)
    return store, state


async def test_mover_is_run_again_while_it_makes_progress(tmp_path: Path) -> None:
    store, state = fake_store(tmp_path, per_run=1, move_settle=0.3)
    blocks, _, runs = await store._run_mover("/p2pdata/ds/1", "COLD")
    assert runs == 3 and json.loads(state.read_text())["runs"] == 3
    assert [b.storages for b in blocks or []] == [("ARCHIVE",)] * 3


async def test_mover_is_not_run_when_blocks_are_already_placed(tmp_path: Path) -> None:
    store, state = fake_store(tmp_path, per_run=1)
    blocks, detail, runs = await store._run_mover("/p2pdata/ds/1", "HOT")
    assert runs == 0 and "already" in detail and json.loads(state.read_text())["runs"] == 0
    assert len(blocks or []) == 3


async def test_mover_without_progress_stops_after_the_settle_time(tmp_path: Path) -> None:
    store, _ = fake_store(tmp_path, per_run=0, move_settle=0.3)
    started = time.monotonic()
    blocks, _, runs = await store._run_mover("/p2pdata/ds/1", "COLD")
    assert runs == 1 and time.monotonic() - started < 10
    assert [b.storages for b in blocks or []] == [("DISK",)] * 3


async def test_hanging_mover_is_stopped_at_the_deadline(tmp_path: Path) -> None:
    store, state = fake_store(tmp_path, per_run=1, hang=True, move_timeout=2.0)
    started = time.monotonic()
    blocks, detail, runs = await store._run_mover("/p2pdata/ds/1", "COLD")
    assert time.monotonic() - started < 10
    assert runs == 0 and "did not finish within 2 s" in detail
    assert len(blocks or []) == 3
    pid = int(Path(f"{state}.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
