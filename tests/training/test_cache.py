"""`cache = true`: the dataset is cached while the job's run runs and uncached once it is over.

The hooks' logic against a stand-in store, the launcher calling them at every end of a run
(real local workers), and a real daemon with the session's HDFS cluster.
"""

from __future__ import annotations

import asyncio
import logging
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from p2pdata.db import open_db
from p2pdata.devcluster import wait_for
from p2pdata.errors import StoreError
from p2pdata.hdfs import HdfsStore, open_store
from p2pdata.hdfs.localcluster import LocalHdfs
from p2pdata.training import DatasetCache, Launcher, RunRecord, RunState
from p2pdata.training.cache import NOT_CACHED
from tests.daemon.test_daemon import make_dataset
from tests.hdfs.conftest import hdfs_options
from tests.training.conftest import make_manifest, write_script
from tests.training.test_launcher import WORKER, worker_spec


@dataclass(frozen=True)
class Outcome:
    cached: bool
    detail: str


class StandInStore:
    """Records calls; `cache` answers as told (or raises)."""

    def __init__(self, answer: Outcome | Exception = Outcome(True, "directives on /d")) -> None:
        self.answer = answer
        self.calls: list[str] = []

    async def cache(self, name: str, version: str) -> Outcome:
        self.calls.append(f"cache {name}@{version}")
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def uncache(self, name: str, version: str) -> Outcome:
        self.calls.append(f"uncache {name}@{version}")
        return Outcome(False, "removed")


def run_of(run_id: str, cache: bool = True, dataset: str = "toy@1") -> RunRecord:
    return RunRecord(id=run_id, job="job", dataset=dataset, dataset_uri="hdfs:///d",
                     state=RunState.RUNNING, workers=1, created=0.0, run_dir=Path("/r"),
                     output_dir=Path("/o"), spec={"cache": cache})


async def started(hooks: DatasetCache, run: RunRecord) -> RunRecord:
    note = await hooks.on_run_start(run)
    run.notes += [note] if note else []
    return run


async def test_the_last_run_on_a_dataset_uncaches_it() -> None:
    store = StandInStore()
    hooks = DatasetCache(store)
    assert await hooks.on_run_start(run_of("plain", cache=False)) is None
    first, second = await started(hooks, run_of("a")), await started(hooks, run_of("b"))
    assert first.notes == ["cached: directives on /d"]
    assert await hooks.on_run_end(first) == "left cached: another run trains on toy@1"
    assert await hooks.on_run_end(second) == "uncached: removed"
    # A run a restart found over was never seen starting: what it left is removed.
    assert await hooks.on_run_end(run_of("before-the-restart")) == "uncached: removed"
    assert await hooks.on_run_end(run_of("plain", cache=False)) is None
    assert store.calls == ["cache toy@1", "cache toy@1", "uncache toy@1", "uncache toy@1"]


async def test_no_cache_to_be_had_is_a_note_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "p2pdata.training.cache")
    local = DatasetCache(None, unavailable="the local store has no cache: read uncached")
    for run_id in ("a", "b"):
        run = await started(local, run_of(run_id))
        assert run.notes == [NOT_CACHED + "the local store has no cache: read uncached"]
        assert await local.on_run_end(run) is None

    store = StandInStore(Outcome(False, "the cluster has no cache pool 'p2pdata'"))
    no_pool = DatasetCache(store)
    for run_id in ("c", "d"):
        run = await started(no_pool, run_of(run_id))
        assert run.notes == [NOT_CACHED + "the cluster has no cache pool 'p2pdata'"]
        assert await no_pool.on_run_end(run) is None  # nothing was cached: nothing to undo
    assert store.calls == ["cache toy@1", "cache toy@1"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert "no cache pool" in warnings[1]

    failing = StandInStore(StoreError("cacheadmin exited 1: connection refused"))
    hooks = DatasetCache(failing)
    run = await started(hooks, run_of("e"))
    assert run.notes == ["caching failed, read uncached: cacheadmin exited 1: connection refused"]
    assert await hooks.on_run_end(run) == "uncached: removed"  # it may have half cached


@pytest.fixture
def script(tmp_path: Path) -> Path:
    return write_script(tmp_path, "worker.py", WORKER)


class RecordingHooks:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    async def on_run_start(self, run: RunRecord) -> str | None:
        self.calls.append(("start", run.job))
        if self.fail:
            raise RuntimeError("broken hook")
        return f"started {run.job}"

    async def on_run_end(self, run: RunRecord) -> str | None:
        self.calls.append(("end", run.job))
        return f"ended {run.job}"


async def test_every_end_of_a_run_calls_the_end_hook(tmp_path: Path, script: Path) -> None:
    db = open_db(tmp_path / "state.db")
    hooks = RecordingHooks()
    launcher = Launcher(db, tmp_path / "runs", max_concurrent=4, poll_interval=0.05,
                        kill_grace=1.0, hooks=hooks)
    await launcher.start()
    specs = {
        "succeeds": worker_spec(script, workers=1, name="succeeds"),
        "fails": worker_spec(script, workers=1, modes={0: "crash"}, name="fails"),
        "cancelled": worker_spec(script, workers=1, modes={0: "sleep"}, name="cancelled"),
        "times-out": worker_spec(script, workers=1, modes={0: "sleep"}, timeout=1,
                                 name="times-out"),
    }
    runs = {name: await launcher.submit(spec, make_manifest(), "file:///d")
            for name, spec in specs.items()}
    deadline = time.monotonic() + 30
    while launcher.run(runs["cancelled"].id).state is not RunState.RUNNING:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await launcher.cancel(runs["cancelled"].id)
    states = {name: (await launcher.wait(run.id, timeout=30)).state for name, run in runs.items()}
    assert states == {"succeeds": RunState.SUCCEEDED, "fails": RunState.FAILED,
                      "cancelled": RunState.CANCELLED, "times-out": RunState.TIMED_OUT}
    for name, run in runs.items():
        assert [c for c in hooks.calls if c[1] == name] == [("start", name), ("end", name)]
        assert launcher.store.get(run.id).notes == [f"started {name}", f"ended {name}"]

    # A run a killed daemon left running is over after the restart: its end hook runs then.
    left = worker_spec(script, workers=1, modes={0: "sleep"}, name="left")
    crashed = await launcher.submit(left, make_manifest(), "file:///d")
    await launcher.close()
    crashed = launcher.store.get(crashed.id)
    crashed.state, crashed.notes = RunState.RUNNING, ["started left"]
    launcher.store.save(crashed)
    broken = RecordingHooks(fail=True)
    again = Launcher(db, tmp_path / "runs", poll_interval=0.05, hooks=broken)
    await again.start()
    assert again.store.get(crashed.id).notes == ["started left", "ended left"]
    assert broken.calls[0] == ("end", "left")

    # A hook that fails fails no run; the run says so.
    run = await again.submit(specs["succeeds"], make_manifest(), "file:///d")
    run = await again.wait(run.id, timeout=30)
    assert run.state is RunState.SUCCEEDED, run.reason
    assert run.notes == ["on_run_start failed (see the daemon's log)", "ended succeeds"]
    await again.close()
    db.close()


WAITING_WORKER = """
import os, pathlib, sys, time
go = pathlib.Path(os.environ["GO_FILE"])
deadline = time.monotonic() + 300
while not go.exists():  # the test creates it once it has seen the dataset cached
    if time.monotonic() > deadline:
        sys.exit("GO_FILE never appeared")
    time.sleep(0.05)
"""

SPEC = """
name = "cached"
cache = true
[trigger]
dataset = "clicks"
[entry]
script = "train.py"
[env]
GO_FILE = "{go}"
"""


@pytest.mark.hdfs
def test_cache_directive_on_the_landed_dataset_while_its_run_runs(
        make_daemon: Any, hdfs_cluster: LocalHdfs, tmp_path: Path) -> None:
    source = tmp_path / "source"
    make_dataset(source, files=2, rows=2000)
    alpha = make_daemon("alpha")
    alpha.cli_json("publish", str(source), "--name", "clicks", "--version", "1")
    root = f"/p2pdata-{tmp_path.name}"
    options = hdfs_options(hdfs_cluster)
    gamma = make_daemon("gamma", discovery={"static_peers": [alpha.peer_url]},
                        store={"kind": "hdfs", "root": root, **options})
    gamma.cli("trust", "add", alpha.cluster_id)
    jobs, go = tmp_path / "jobs", tmp_path / "go"
    jobs.mkdir()
    (jobs / "train.py").write_text(textwrap.dedent(WAITING_WORKER))
    (jobs / "cached.toml").write_text(SPEC.format(go=go))
    gamma.cli("jobs", "add", str(jobs / "cached.toml"))
    wait_for(lambda: gamma.cli_json("search", "clicks"), what="alpha's catalog")
    assert gamma.cli_json("fetch", "clicks@1", "--timeout", "60")["state"] == "landed"

    def cached_bytes() -> tuple[int, int] | None:
        async def ask() -> tuple[int, int] | None:
            store = open_store("hdfs", root, **options)
            assert isinstance(store, HdfsStore)
            async with store:
                return await store.cached_bytes("clicks", "1")
        return asyncio.run(ask())

    run = wait_for(lambda: next((r for r in gamma.cli_json("runs") if r["state"] == "running"),
                                None), timeout=60, what="the run to start")
    assert any(note.startswith("cached: ") for note in run["notes"]), run
    assert cached_bytes() is not None, "a cache directive covers the dataset while it runs"

    go.touch()
    run = wait_for(lambda: (r := gamma.cli_json("runs")[0])["state"] not in ("queued", "running")
                   and r, timeout=60, what="the run to end")
    assert run["state"] == "succeeded", run
    assert run["notes"][-1].startswith("uncached: "), run
    assert cached_bytes() is None, "the directive is gone once the run is over"
