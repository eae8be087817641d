"""A daemon killed mid-run leaves no orphan: the next launcher on the same database kills
the leftover process groups and turns the run into a record."""

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
from p2pdata.training import Launcher, RunState
from tests.training.conftest import REPO, gone, wait_until, write_script
from tests.training.test_launcher import WORKER

DAEMON = """
import asyncio, json, sys
from pathlib import Path
from p2pdata.db import open_db
from p2pdata.training import JobSpec, Launcher
from tests.training.conftest import make_manifest

async def main(db, runs, script):
    launcher = Launcher(open_db(Path(db)), Path(runs), poll_interval=0.05)
    await launcher.start()
    spec = JobSpec.from_dict({"name": "job", "workers": 2, "entry": {"script": script},
                              "env": {"MODE_0": "child", "MODE_1": "sleep"}})
    run = await launcher.submit(spec, make_manifest(), "file:///d")
    while len(list(run.output_dir.glob("child-*"))) < 1 or len(run.processes) < 2:
        await asyncio.sleep(0.02)
    child = int(next(run.output_dir.glob("child-*")).read_text())
    print(json.dumps({"run": run.id, "pids": [p.pid for p in run.processes] + [child]}),
          flush=True)
    await asyncio.Event().wait()  # until the test SIGKILLs this stand-in daemon

asyncio.run(main(*sys.argv[1:]))
"""


def test_restart_mid_run_leaves_no_orphan(tmp_path: Path) -> None:
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
        assert line, "the daemon died before its run started"
        started = json.loads(line)
        pids = started["pids"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert not any(gone(pid) for pid in pids), "workers should outlive a killed daemon"

        db = open_db(db_path)
        launcher = Launcher(db, runs)
        closed = asyncio.run(launcher.start())
        assert [run.id for run in closed] == [started["run"]]
        record = launcher.run(started["run"])
        assert record.state is RunState.FAILED and "abandoned" in record.reason
        wait_until(lambda: all(gone(pid) for pid in pids), what="leftover workers to die")
        db.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pids:  # never leave a sleeper behind, even when an assert failed
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


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
