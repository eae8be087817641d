"""The ray engine on a real two-node Ray cluster (one per module, in its own network
namespace): TensorFlow on a landed dataset, placement that can never succeed, a worker
killed mid-run, cancel, timeout, and a daemon restart under a running job."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest

from p2pdata.db import open_db
from p2pdata.training import Launcher, RunState
from tests.ray.conftest import entry_processes, ray_engines, ray_spec
from tests.ray.netns import RayCluster
from tests.training.conftest import (
    EXAMPLES,
    async_wait_until,
    load_example,
    make_manifest,
    write_script,
)

# Says it started, then waits for a file named by its first argument (or forever).
WAITER = """
import os, sys, time
from pathlib import Path
from p2pdata.training import worker_started
worker_started()
print(f"worker {os.environ['P2PDATA_WORKER_INDEX']} of {os.environ['P2PDATA_NUM_WORKERS']} up",
      flush=True)
go = Path(sys.argv[1]) if len(sys.argv) > 1 else None
while go is None or not go.exists():
    time.sleep(0.05)
print("done", flush=True)
"""


def driver_gone(run_info: dict[str, object]) -> bool:
    return not psutil.pid_exists(int(run_info["driver_pid"])) or \
        psutil.Process(int(run_info["driver_pid"])).status() == psutil.STATUS_ZOMBIE


@pytest.mark.tf
async def test_two_worker_tensorflow_run_on_a_landed_dataset(launcher: Launcher,
                                                             tmp_path: Path) -> None:
    load_example("make_dataset").make_classification(tmp_path / "toy", rows=2000)
    spec = ray_spec(EXAMPLES / "train_keras.py", framework="tensorflow", workers=2,
                    startup_timeout=180, timeout=300,
                    entry={"script": str(EXAMPLES / "train_keras.py"),
                           "args": ["--epochs", "3", "--batch-size", "32"]})
    run = await launcher.submit(spec, make_manifest(), f"file://{tmp_path / 'toy'}")
    run = await launcher.wait(run.id, timeout=360)
    logs = [path.read_text() for path in run.log_paths]
    driver_log = Path(run.engine_info["driver_log"]).read_text()
    assert run.state is RunState.SUCCEEDED, f"{run.reason}\n{driver_log[-3000:]}\n{logs}"
    assert run.engine == "ray" and len(run.engine_info["job_id"]) >= 8  # Ray's job id
    metrics = json.loads((run.output_dir / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["rows"] == 2000
    assert metrics["accuracy"] > 0.8
    # Each worker's own output, streamed back from its Ray worker into its log file.
    for index, text in enumerate(logs):
        assert f"worker {index}: epoch 3/3" in text, text[-2000:]
    assert run.exit_codes == {0: 0, 1: 0}
    await async_wait_until(lambda: not entry_processes(run.id), 30, "entry points gone")


async def test_more_resources_than_the_cluster_has_fails_fast(launcher: Launcher,
                                                              tmp_path: Path) -> None:
    script = write_script(tmp_path, "waiter.py", WAITER)
    spec = ray_spec(script, workers=2, resources={"vcores": 2}, startup_timeout=600)
    started = time.monotonic()
    run = await launcher.submit(spec, make_manifest(), f"file://{tmp_path}")
    run = await launcher.wait(run.id, timeout=120)
    assert run.state is RunState.FAILED
    # Ray's two 1-CPU nodes can hold no 2-CPU worker: said at once, not after 600 s.
    assert "Ray cannot place 2 worker(s) of {CPU 2}" in run.reason, run.reason
    assert "2 node(s) hold 0 (CPU 1; CPU 1)" in run.reason, run.reason
    assert time.monotonic() - started < 60
    assert not entry_processes(run.id)


async def test_a_worker_killed_mid_run_fails_the_run(launcher: Launcher,
                                                      tmp_path: Path) -> None:
    script = write_script(tmp_path, "waiter.py", WAITER)
    spec = ray_spec(script, workers=2, startup_timeout=120, timeout=300)
    run = await launcher.submit(spec, make_manifest(), f"file://{tmp_path}")
    await async_wait_until(lambda: len(entry_processes(run.id)) == 2 and all(
        "up" in p.read_text() for p in run.log_paths), 120, "both workers up")
    entry_processes(run.id)[1].send_signal(signal.SIGKILL)
    run = await launcher.wait(run.id, timeout=120)
    assert run.state is RunState.FAILED
    assert run.reason == "worker 1 exited with code -9", run.reason
    await async_wait_until(lambda: not entry_processes(run.id), 30, "entry points gone")
    assert driver_gone(run.engine_info)


async def test_cancel_ends_the_ray_job(launcher: Launcher, tmp_path: Path) -> None:
    script = write_script(tmp_path, "waiter.py", WAITER)
    spec = ray_spec(script, workers=2, startup_timeout=120, timeout=300)
    run = await launcher.submit(spec, make_manifest(), f"file://{tmp_path}")
    await async_wait_until(lambda: len(run.engine_info) > 0 and len(entry_processes(run.id)) == 2,
                           120, "both workers running")
    await launcher.cancel(run.id, "cancelled by test")
    run = await launcher.wait(run.id, timeout=60)
    assert run.state is RunState.CANCELLED and run.reason == "cancelled by test"
    await async_wait_until(lambda: not entry_processes(run.id), 30, "entry points gone")
    assert driver_gone(run.engine_info)


async def test_timeout_ends_the_ray_job(launcher: Launcher, tmp_path: Path) -> None:
    script = write_script(tmp_path, "waiter.py", WAITER)
    spec = ray_spec(script, workers=1, timeout=20)
    run = await launcher.submit(spec, make_manifest(), f"file://{tmp_path}")
    run = await launcher.wait(run.id, timeout=120)
    assert run.state is RunState.TIMED_OUT, run.reason
    assert "up" in run.log_paths[0].read_text()  # it did run on Ray before the deadline
    await async_wait_until(lambda: not entry_processes(run.id), 30, "entry points gone")
    assert driver_gone(run.engine_info)


async def test_the_ray_job_outlives_a_daemon_restart(in_netns: RayCluster,
                                                     tmp_path: Path) -> None:
    script = write_script(tmp_path, "waiter.py", WAITER)
    go = tmp_path / "go"
    spec = ray_spec(script, workers=2, startup_timeout=120, timeout=300,
                    entry={"script": str(script), "args": [str(go)]})
    db = open_db(tmp_path / "state.db")
    first = Launcher(db, tmp_path / "runs", poll_interval=0.1, engines=ray_engines(in_netns))
    await first.start()
    run = await first.submit(spec, make_manifest(), f"file://{tmp_path}")
    await async_wait_until(lambda: len(entry_processes(run.id)) == 2, 120, "workers running")
    await first.close()  # the daemon stops: the Ray job runs on
    assert first.run(run.id).state is RunState.RUNNING
    assert len(entry_processes(run.id)) == 2
    second = Launcher(db, tmp_path / "runs", poll_interval=0.1, engines=ray_engines(in_netns))
    try:
        [again] = await second.start()
        assert again.id == run.id and again.state is RunState.RUNNING
        go.touch()
        run = await second.wait(run.id, timeout=120)
        assert run.state is RunState.SUCCEEDED, run.reason
        assert all("done" in path.read_text() for path in run.log_paths)
    finally:
        await second.close()
        db.close()
