"""The ray engine on a real two-node Ray cluster (one per module, in its own network
namespace): the cluster itself, a landed dataset trains TensorFlow through real daemons, placement that can
never succeed, a worker killed mid-run, cancel, timeout, and a daemon restart under a
running job."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from p2pdata.db import open_db
from p2pdata.devcluster import wait_for
from p2pdata.training import EngineRegistry, Launcher, RunState
from p2pdata.training.ray_local import LocalRayCluster
from tests.ray.conftest import entry_processes, ray_engines, ray_spec
from tests.training.conftest import (
    EXAMPLES,
    REPO,
    async_wait_until,
    load_example,
    make_manifest,
    write_script,
)

pytestmark = pytest.mark.ray

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


SPEC = """
name = "keras-on-ray"
engine = "ray"
framework = "tensorflow"
workers = 2
startup_timeout = 180
timeout = 300
[trigger]
dataset = "toy"
[entry]
script = "{script}"
args = ["--epochs", "3", "--batch-size", "32"]
[env]
PYTHONPATH = "{repo}"
"""


def ray_loaded(pid: int) -> bool:
    """Whether Ray's core library is mapped into process `pid` (is Ray imported there)."""
    return any("_raylet" in m.path for m in psutil.Process(pid).memory_maps())


def _current_netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def land_toy_with_a_job(make_daemon: Any, in_netns: LocalRayCluster, tmp_path: Path,
                        spec: Path, rows: int) -> Any:
    """alpha publishes the toy dataset; gamma (training on the Ray cluster) trusts alpha,
    adds the job in ``spec`` and fetches the dataset, which triggers it. Answers gamma."""
    load_example("make_dataset").make_classification(tmp_path / "toy", rows=rows)
    alpha = make_daemon("alpha")
    alpha.cli_json("publish", str(tmp_path / "toy"), "--name", "toy", "--version", "1")
    gamma = make_daemon("gamma", discovery={"static_peers": [alpha.peer_url]},
                        training={"ray_address": in_netns.address})
    gamma.cli("trust", "add", alpha.cluster_id)
    gamma.cli("jobs", "add", str(spec))
    wait_for(lambda: gamma.cli_json("search", "toy"), what="alpha's catalog")
    assert gamma.cli_json("fetch", "toy@1", "--timeout", "60")["state"] == "landed"
    return gamma


def test_two_nodes_on_the_namespaces_loopback(in_netns: LocalRayCluster) -> None:
    nodes = in_netns.nodes()
    assert len(nodes) == 2 and all(n["alive"] for n in nodes)
    assert {n["address"] for n in nodes} == {"127.0.0.1"}
    assert sum(n["resources"]["CPU"] for n in nodes) == 2
    # Inside the namespace, loopback is the only interface there is.
    assert [name for _, name in socket.if_nameindex()] == ["lo"]
    assert _current_netns() == os.stat(f"/run/netns/{in_netns.netns.name}").st_ino


def test_outside_in_netns_the_test_runs_at_home(cluster: LocalRayCluster) -> None:
    assert _current_netns() != os.stat(f"/run/netns/{cluster.netns.name}").st_ino
    with cluster.netns.entered():
        assert _current_netns() == os.stat(f"/run/netns/{cluster.netns.name}").st_ino
    assert _current_netns() != os.stat(f"/run/netns/{cluster.netns.name}").st_ino


@pytest.mark.tf
def test_a_landed_dataset_trains_two_tensorflow_workers_on_ray(
        in_netns: LocalRayCluster, make_daemon: Any, tmp_path: Path) -> None:
    """The whole path: published by alpha, fetched and landed by gamma, whose daemon
    (`training.ray_address`) starts the triggered job as a Ray Train job."""
    spec = tmp_path / "keras-on-ray.toml"
    spec.write_text(SPEC.format(script=EXAMPLES / "train_keras.py", repo=REPO))
    gamma = land_toy_with_a_job(make_daemon, in_netns, tmp_path, spec, rows=2000)

    def over() -> dict[str, Any] | None:
        runs = gamma.cli_json("runs")
        return runs[0] if runs and runs[0]["state"] not in ("queued", "running") else None

    run = wait_for(over, timeout=360, what="the Ray run to end")
    logs = [Path(path).read_text() for path in run["logs"]]
    driver_log = Path(run["engine_info"]["driver_log"]).read_text()
    assert run["state"] == "succeeded", f"{run['reason']}\n{driver_log[-3000:]}\n{logs}"
    assert run["engine"] == "ray" and len(run["engine_info"]["id"]) >= 8  # Ray's job id
    assert run["engine_info"]["state"] == "succeeded"
    assert run["where"] == f"ray {run['engine_info']['id']} succeeded"
    assert run["dataset_uri"].startswith("file://") and run["dataset"] == "toy@1"
    metrics = json.loads((Path(run["output_dir"]) / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["rows"] == 2000
    assert metrics["accuracy"] > 0.8
    # Each worker's own output, streamed back from its Ray worker into its log file.
    for index, text in enumerate(logs):
        assert f"worker {index}: epoch 3/3" in text, text[-2000:]
    assert run["exit_codes"] == {"0": 0, "1": 0}
    assert not entry_processes(run["id"])
    # Only the driver process imports Ray, never the daemon.
    assert not ray_loaded(gamma.process.pid)


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


async def test_a_worker_killed_mid_run_fails_the_attempt(launcher: Launcher,
                                                          tmp_path: Path) -> None:
    """Killed in the first attempt: retried as a new Ray job; killed again: failed."""
    script = write_script(tmp_path, "waiter.py", WAITER)
    spec = ray_spec(script, workers=2, startup_timeout=120, timeout=300, retries=1)
    run = await launcher.submit(spec, make_manifest(), f"file://{tmp_path}")
    jobs = []
    for attempt, victim in ((0, 1), (1, 0)):
        await async_wait_until(lambda a=attempt: len(entry_processes(run.id, a)) == 2 and all(
            p.read_text().count("up\n") > a for p in run.log_paths), 120, "both workers up")
        jobs.append(run.engine_info["id"])
        entry_processes(run.id, attempt)[victim].send_signal(signal.SIGKILL)
        if attempt == 0:
            await async_wait_until(lambda: run.attempt == 1, 60, "a second attempt")
    run = await launcher.wait(run.id, timeout=120)
    assert run.state is RunState.FAILED and run.attempt == 1
    assert run.reason == "worker 0 exited with code -9", run.reason
    assert jobs[0] != jobs[1]  # each attempt is a Ray job of its own
    assert f"run {run.id} attempt 1 worker 1 on Ray" in run.log_paths[1].read_text()
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


async def test_the_ray_job_outlives_a_daemon_restart(in_netns: LocalRayCluster,
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


async def test_workers_ray_cannot_place_in_time_fail_with_rays_reason(
        launcher: Launcher, tmp_path: Path) -> None:
    """The cluster could hold the worker, but another job holds every CPU: the start-up
    deadline ends the wait, saying what Ray says of the placement group."""
    script = write_script(tmp_path, "waiter.py", WAITER)
    hog = await launcher.submit(ray_spec(script, name="hog", workers=2, startup_timeout=120,
                                         timeout=300), make_manifest(), f"file://{tmp_path}")
    await async_wait_until(lambda: len(entry_processes(hog.id)) == 2, 120, "the hog running")
    late = await launcher.submit(ray_spec(script, name="late", startup_timeout=15),
                                 make_manifest(), f"file://{tmp_path}")
    late = await launcher.wait(late.id, timeout=120)
    assert late.state is RunState.FAILED
    assert late.reason.startswith("start-up deadline: worker(s) [0] not started after 15s; "
                                  "Ray: placement group PENDING"), late.reason
    assert "{CPU 1}" in late.reason
    assert driver_gone(late.engine_info)
    await launcher.cancel(hog.id)
    assert (await launcher.wait(hog.id, timeout=60)).state is RunState.CANCELLED


async def test_an_unreachable_cluster_fails_the_run_in_time(in_netns: LocalRayCluster,
                                                            tmp_path: Path) -> None:
    db = open_db(tmp_path / "state.db")
    launcher = Launcher(db, tmp_path / "runs", poll_interval=0.1, engines=EngineRegistry(
        {"ray": {"address": "127.0.0.1:1", "connect_timeout": 5}}))
    await launcher.start()
    try:
        run = await launcher.submit(ray_spec(write_script(tmp_path, "waiter.py", WAITER)),
                                    make_manifest(), f"file://{tmp_path}")
        run = await launcher.wait(run.id, timeout=60)
    finally:
        await launcher.close()
        db.close()
    assert run.state is RunState.FAILED
    assert run.reason == "cannot reach the Ray cluster at 127.0.0.1:1 within 5s", run.reason
    assert driver_gone(run.engine_info)


WAIT_SPEC = """
name = "wait-on-ray"
engine = "ray"
workers = 2
startup_timeout = 120
timeout = 300
[trigger]
dataset = "toy"
[entry]
script = "{script}"
args = ["{go}"]
[env]
PYTHONPATH = "{repo}"
"""


def test_a_ray_run_survives_a_daemon_crash(in_netns: LocalRayCluster, make_daemon: Any,
                                           tmp_path: Path) -> None:
    """kill -9 of the daemon: the Ray job runs on, and the restarted daemon re-attaches."""
    go = tmp_path / "go"
    spec = tmp_path / "wait-on-ray.toml"
    spec.write_text(WAIT_SPEC.format(script=write_script(tmp_path, "waiter.py", WAITER),
                                     go=go, repo=REPO))
    gamma = land_toy_with_a_job(make_daemon, in_netns, tmp_path, spec, rows=100)
    [run] = wait_for(lambda: [r for r in gamma.cli_json("runs") if r["state"] == "running"],
                     timeout=120, what="the Ray run to start")
    [run] = wait_for(lambda: [r for r in gamma.cli_json("runs")
                              if r["engine_info"].get("state") == "running"],
                     timeout=120, what="both workers started")
    workers = entry_processes(run["id"])
    assert len(workers) == 2

    gamma.stop(signal.SIGKILL)
    assert all(proc.is_running() for proc in workers.values())  # the Ray job runs on
    gamma.start()
    go.touch()

    def over() -> dict[str, Any] | None:
        [again] = gamma.cli_json("runs")
        return again if again["state"] not in ("queued", "running") else None

    again = wait_for(over, timeout=120, what="the re-attached run to end")
    assert again["id"] == run["id"] and again["state"] == "succeeded", again
    assert again["attempt"] == 0 and again["engine_info"]["id"] == run["engine_info"]["id"]
    assert all("done" in Path(path).read_text() for path in again["logs"])


async def test_a_ray_client_address_works_too(in_netns: LocalRayCluster,
                                              tmp_path: Path) -> None:
    """`ray://HOST:10001`: the driver is a Ray Client of the head node's client server."""
    db = open_db(tmp_path / "state.db")
    launcher = Launcher(db, tmp_path / "runs", poll_interval=0.1, engines=EngineRegistry(
        {"ray": {"address": "ray://127.0.0.1:10001", "connect_timeout": 150}}))
    await launcher.start()
    go = tmp_path / "go"
    go.touch()
    try:
        spec = ray_spec(write_script(tmp_path, "waiter.py", WAITER), workers=2,
                        startup_timeout=120, timeout=300,
                        entry={"script": str(tmp_path / "waiter.py"), "args": [str(go)]})
        run = await launcher.submit(spec, make_manifest(), f"file://{tmp_path}")
        run = await launcher.wait(run.id, timeout=300)
    finally:
        await launcher.close()
        db.close()
    driver_log = Path(run.engine_info["driver_log"]).read_text()
    assert run.state is RunState.SUCCEEDED, f"{run.reason}\n{driver_log[-3000:]}"
    assert run.where == f"ray {run.engine_info['id']} succeeded"
    for index, path in enumerate(run.log_paths):
        assert f"worker {index} of 2 up" in path.read_text()
