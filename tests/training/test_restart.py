"""Runs across a daemon restart: the next launcher on the same database kills the process
groups a killed daemon left behind, fails the runs that were running (unless their spec allows
a retry) and runs the queued ones; a clean stop leaves the queue for the next start."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from p2pdata.db import open_db
from p2pdata.training import Launcher, RunRecord, RunState
from tests.training.conftest import REPO, gone, make_manifest, wait_until, write_script
from tests.training.test_launcher import WORKER, env_of, running, worker_spec

DAEMON = """
import asyncio, json, sys
from pathlib import Path
from p2pdata.db import open_db
from p2pdata.training import JobSpec, Launcher, RunState
from tests.training.conftest import make_manifest

def spec(name, workers, script, retries=0, **modes):
    return JobSpec.from_dict({"name": name, "workers": workers, "retries": retries,
                              "entry": {"script": script}, "env": modes})

async def main(db, runs, script):
    launcher = Launcher(open_db(Path(db)), Path(runs), max_concurrent=2, poll_interval=0.05)
    await launcher.start()
    doomed = await launcher.submit(spec("doomed", 2, script, MODE_0="child", MODE_1="sleep"),
                                   make_manifest(), "file:///d")
    retrying = await launcher.submit(spec("retrying", 1, script, retries=1, MODE_0="sleep-once"),
                                     make_manifest(), "file:///d")
    waiting = await launcher.submit(spec("waiting", 1, script), make_manifest(), "file:///d")
    while (len(list(doomed.output_dir.glob("child-*"))) < 1 or len(doomed.processes) < 2
           or retrying.state is not RunState.RUNNING):
        await asyncio.sleep(0.02)
    child = int(next(doomed.output_dir.glob("child-*")).read_text())
    pids = [p.pid for run in (doomed, retrying) for p in run.processes] + [child]
    print(json.dumps({"runs": [doomed.id, retrying.id, waiting.id], "pids": pids}), flush=True)
    await asyncio.Event().wait()  # until the test SIGKILLs this stand-in daemon

asyncio.run(main(*sys.argv[1:]))
"""


def test_restart_after_a_crash_fails_or_requeues_and_leaves_no_orphan(tmp_path: Path) -> None:
    script = write_script(tmp_path, "worker.py", WORKER)
    daemon = write_script(tmp_path, "daemon.py", textwrap.dedent(DAEMON))
    db_path, runs = tmp_path / "state.db", tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(daemon), str(db_path), str(runs), str(script)],
                            stdout=subprocess.PIPE, env=env, cwd=REPO)
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the daemon died before its runs started"
        started = json.loads(line)
        pids = started["pids"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert not any(gone(pid) for pid in pids), "workers should outlive a killed daemon"

        async def restart() -> list[RunRecord]:
            db = open_db(db_path)
            launcher = Launcher(db, runs, poll_interval=0.05)
            try:
                picked_up = await launcher.start()
                assert [run.id for run in picked_up] == started["runs"]
                doomed, retrying, waiting = picked_up
                assert (doomed.state, doomed.reason) == (RunState.FAILED,
                                                         "daemon restarted while running")
                assert retrying.state is RunState.QUEUED and retrying.retries_left == 0
                assert retrying.reason == "attempt 0 ended: daemon restarted while running; re-queued"
                assert waiting.reason == "re-queued: daemon restarted before it started"
                return [await launcher.wait(run.id, timeout=30) for run in picked_up]
            finally:
                await launcher.close()
                db.close()

        doomed, retrying, waiting = asyncio.run(restart())
        assert doomed.state is RunState.FAILED and doomed.processes == []
        assert retrying.state is RunState.SUCCEEDED and env_of(retrying, 0)["P2PDATA_ATTEMPT"] == "1"
        assert waiting.state is RunState.SUCCEEDED
        # Its manifest was kept in the database: the worker sees the same dataset.
        assert env_of(waiting, 0)["P2PDATA_DATASET"] == "toy@1"
        wait_until(lambda: all(gone(pid) for pid in pids), what="leftover workers to die")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pids:  # never leave a sleeper behind, even when an assert failed
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


async def test_clean_stop_keeps_the_queue_for_the_next_start(tmp_path: Path) -> None:
    script = write_script(tmp_path, "worker.py", WORKER)
    db = open_db(tmp_path / "state.db")
    first = Launcher(db, tmp_path / "runs", max_concurrent=2, poll_interval=0.05, kill_grace=2)
    stopped = await first.submit(worker_spec(script, workers=1, modes={0: "sleep"}),
                                 make_manifest(), "file:///d")
    retrying = await first.submit(worker_spec(script, workers=1, modes={0: "sleep-once"}, retries=1),
                                  make_manifest(), "file:///d")
    waiting = await first.submit(worker_spec(script, workers=1), make_manifest(), "file:///d")
    await running(first, stopped.id, ready=1)
    await running(first, retrying.id, ready=1)
    await first.close()
    assert (stopped.state, stopped.reason) == (RunState.FAILED, "daemon stopped while running")
    assert all(gone(p.pid) for run in (stopped, retrying) for p in run.processes)
    assert first.store.get(retrying.id).state is RunState.QUEUED
    assert first.store.get(waiting.id).state is RunState.QUEUED

    second = Launcher(db, tmp_path / "runs", poll_interval=0.05)
    try:
        assert [run.id for run in await second.start()] == [retrying.id, waiting.id]
        after = [await second.wait(run.id, timeout=30) for run in (retrying, waiting)]
        assert [run.state for run in after] == [RunState.SUCCEEDED] * 2
        assert after[0].attempt == 1 and after[1].attempt == 0
        assert second.run(stopped.id).state is RunState.FAILED  # over: not picked up again
    finally:
        await second.close()
        db.close()


def test_restart_never_kills_an_unrelated_process(tmp_path: Path) -> None:
    """A recorded pid that now belongs to someone else (different start time) survives."""
    from p2pdata.training.procs import WorkerProcess, kill_leftovers

    other = subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait()"],
                             start_new_session=True)
    try:
        impostor = WorkerProcess(0, other.pid, other.pid, create_time=1.0)
        assert kill_leftovers("some-run", [impostor]) == []
        assert not gone(other.pid)
    finally:
        other.kill()
        other.wait()
