"""The yarn engine against a real ResourceManager and NodeManager (Hadoop 3, started once
for the session by the `yarn_cluster` fixture), with HDFS beside it: every run is a real YARN application whose
containers run real Python workers, scheduled by memory, vcores and `yarn.io/gpu` (the
NodeManager declares 2 GPUs; nothing probes for real ones).

Each application needs its application master started (a JVM) before any worker runs, so
every test here waits some seconds on YARN: deadlines are generous, and the tests reuse one
Skein driver (one launcher) for the module."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from p2pdata.db import open_db
from p2pdata.hdfs.localcluster import LocalHdfs
from p2pdata.training import EngineRegistry, JobSpec, Launcher, RunRecord, RunState
from tests.training.conftest import (
    EXAMPLES,
    REPO,
    gone,
    make_manifest,
    toy_on_hdfs,
    write_script,
)

pytestmark = [pytest.mark.yarn, pytest.mark.hdfs]

WORKER = """
import json, os, pathlib, sys, threading, time
index = int(os.environ["P2PDATA_WORKER_INDEX"])
mode = os.environ.get(f"MODE_{index}", "ok")
print("ENV " + json.dumps({k: v for k, v in os.environ.items()
                           if k.startswith("P2PDATA_") or k == "TF_CONFIG"}), flush=True)
if mode != "never-ready":
    pathlib.Path(os.environ["P2PDATA_READY_FILE"]).touch()
if mode == "until-file":  # runs until the test creates the file named in UNTIL
    while not pathlib.Path(os.environ["UNTIL"]).exists():
        time.sleep(0.1)
elif mode in ("sleep", "never-ready"):
    threading.Event().wait()  # until YARN kills the container
print(f"worker {index} done", flush=True)
"""


def engine_settings(cluster: LocalHdfs, state_dir: Path) -> dict[str, Any]:
    """The yarn engine's settings for the test cluster: its client config and jars, as an
    operator would give them for a machine without a `yarn` command."""
    return {"hadoop_conf_dir": str(cluster.conf_dir), "classpath": cluster.client_classpath,
            "state_dir": str(state_dir), "worker_memory": 256, "master_memory": 256}


@pytest.fixture(scope="module")
def yarn_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The engine's state directory (Skein credentials), shared by the module's launchers so
    a second launcher can talk to the applications the first one started."""
    return tmp_path_factory.mktemp("yarn-engine")


@pytest.fixture(scope="module")
def engines(yarn_cluster: LocalHdfs, yarn_state: Path) -> Iterator[EngineRegistry]:
    """One Skein driver for the module: launchers borrow the registry, none closes it."""
    registry = EngineRegistry({"yarn": engine_settings(yarn_cluster, yarn_state)},
                              default="yarn")
    yield registry
    asyncio.run(registry.close())


@pytest.fixture
async def launcher(tmp_path: Path, engines: EngineRegistry) -> AsyncIterator[Launcher]:
    launcher = Launcher(open_db(tmp_path / "state.db"), tmp_path / "runs", max_concurrent=4,
                        poll_interval=0.2, engines=engines)
    await launcher.start()
    try:
        yield launcher
    finally:
        await launcher.close()


@pytest.fixture
def script(tmp_path: Path) -> Path:
    return write_script(tmp_path, "worker.py", WORKER)


def spec(script: Path, workers: int = 2, modes: dict[int, str] | None = None,
         **fields: Any) -> JobSpec:
    env = {"PYTHONPATH": str(REPO), **{f"MODE_{i}": m for i, m in (modes or {}).items()},
           **fields.pop("env", {})}
    return JobSpec.from_dict({"name": "yarn-job", "engine": "yarn", "workers": workers,
                              "entry": {"script": str(script)}, "env": env,
                              "startup_timeout": 120, "timeout": 300,
                              "resources": {"memory": 256, "vcores": 1}, **fields})


async def eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition that looks at processes and YARN, gently (the machine has 2 cores)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.25)


def worker_processes(run: RunRecord) -> dict[int, psutil.Process]:
    """The job's own script processes inside the run's containers (same machine)."""
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "worker.py" not in " ".join(proc.info["cmdline"] or []):
                continue
            env = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if env.get("P2PDATA_RUN_ID") == run.id:
            found[int(env["P2PDATA_WORKER_INDEX"])] = proc
    return found


async def all_ready(launcher: Launcher, run: RunRecord, timeout: float = 120) -> None:
    def ok() -> bool:
        record = launcher.run(run.id)
        return (record.state is RunState.RUNNING and len(worker_processes(record)) == record.workers
                and all("ENV " in path.read_text() for path in record.log_paths if path.exists())
                and all(path.exists() for path in record.log_paths))
    await eventually(ok, timeout, what=f"every worker of {run.id} running")


def env_of(run: RunRecord, index: int) -> dict[str, str]:
    text = run.log_paths[index].read_text()
    return json.loads(text.rsplit("ENV ", 1)[1].splitlines()[0])


def application_state(engines: EngineRegistry, app_id: str) -> str:
    return str(engines.get("yarn").client().application_report(app_id).state)


async def test_two_workers_get_tf_config_from_real_endpoints(launcher: Launcher,
                                                               script: Path) -> None:
    run = await launcher.submit(spec(script, framework="tensorflow",
                                     resources={"memory": 256, "vcores": 1, "gpus": 1}),
                                make_manifest(), "hdfs://namenode:9870/p2pdata/toy/1")
    run = await launcher.wait(run.id, timeout=240)
    assert run.state is RunState.SUCCEEDED, run.reason
    assert run.exit_codes == {0: 0, 1: 0}
    assert run.engine == "yarn" and run.engine_info["id"].startswith("application_")
    assert run.engine_info["state"] == "FINISHED"
    assert run.engine_info["url"].startswith("http") and ":0/" not in run.engine_info["url"]
    configs = [json.loads(env_of(run, i)["TF_CONFIG"]) for i in range(2)]
    endpoints = configs[0]["cluster"]["worker"]
    assert len(set(endpoints)) == 2 and all(c["cluster"]["worker"] == endpoints for c in configs)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in (0, 1)]
    assert env_of(run, 1)["P2PDATA_DATASET_URI"] == "hdfs://namenode:9870/p2pdata/toy/1"
    assert json.loads(env_of(run, 0)["P2PDATA_MANIFEST"])["name"] == "toy"
    # Each worker's output reached the run's own log file, after a header naming its container.
    for index, path in enumerate(run.log_paths):
        text = path.read_text()
        assert "YARN container container_" in text and f"worker {index} done" in text


async def test_request_yarn_cannot_place_fails_fast_with_yarns_reason(
        launcher: Launcher, script: Path) -> None:
    job = spec(script, workers=1, resources={"memory": 256, "gpus": 5})  # the node has 2
    run = await launcher.submit(job, make_manifest(), "file:///d")
    run = await launcher.wait(run.id, timeout=90)  # well before its 120 s start-up deadline
    assert run.state is RunState.FAILED
    assert "yarn.io/gpu" in run.reason and "maximum allowed allocation" in run.reason, run.reason
    assert run.engine_info["state"] in ("FINISHED", "FAILED")


async def test_unknown_queue_is_refused_with_yarns_reason(
        tmp_path: Path, script: Path, yarn_cluster: LocalHdfs, yarn_state: Path) -> None:
    engines = EngineRegistry({"yarn": {**engine_settings(yarn_cluster, yarn_state),
                                       "queue": "no-such-queue"}})
    launcher = Launcher(open_db(tmp_path / "state.db"), tmp_path / "runs", poll_interval=0.2,
                        engines=engines)
    await launcher.start()
    try:
        run = await launcher.submit(spec(script, workers=1), make_manifest(), "file:///d")
        run = await launcher.wait(run.id, timeout=90)
    finally:
        await launcher.close()
        await engines.close()
    assert run.state is RunState.FAILED
    assert "YARN refused the application" in run.reason
    assert "unknown queue: no-such-queue" in run.reason, run.reason


async def test_worker_killed_mid_run_ends_the_application(launcher: Launcher, script: Path,
                                                          engines: EngineRegistry) -> None:
    run = await launcher.submit(spec(script, modes={0: "sleep", 1: "sleep"}), make_manifest(),
                                "file:///d")
    await all_ready(launcher, run)
    workers = worker_processes(launcher.run(run.id))
    workers[1].kill()
    run = await launcher.wait(run.id, timeout=120)
    assert run.state is RunState.FAILED
    assert run.reason == "worker 1 exited with code -9", run.reason  # SIGKILL, as locally
    assert application_state(engines, run.engine_info["id"]) in ("KILLED", "FAILED", "FINISHED")
    await eventually(lambda: gone(workers[0].pid), 60, "worker 0 to be killed by YARN")


async def test_workers_not_all_started_by_the_deadline_end_the_application(
        launcher: Launcher, script: Path, engines: EngineRegistry) -> None:
    # Each worker wants both of the node's GPUs: one runs, the other stays pending.
    job = spec(script, modes={0: "sleep", 1: "sleep"}, startup_timeout=20,
               resources={"memory": 256, "gpus": 2})
    run = await launcher.submit(job, make_manifest(), "file:///d")
    run = await launcher.wait(run.id, timeout=120)
    assert run.state is RunState.FAILED
    assert "start-up deadline" in run.reason and "not started after 20s" in run.reason
    await eventually(
        lambda: application_state(engines, run.engine_info["id"]) == "KILLED", 30,
        "the application to be killed")
    assert worker_processes(run) == {}


async def test_cancel_kills_the_application(launcher: Launcher, script: Path,
                                            engines: EngineRegistry) -> None:
    run = await launcher.submit(spec(script, modes={0: "sleep", 1: "sleep"}), make_manifest(),
                                "file:///d")
    await all_ready(launcher, run)
    pids = [proc.pid for proc in worker_processes(launcher.run(run.id)).values()]
    await launcher.cancel(run.id)
    run = await launcher.wait(run.id, timeout=60)
    assert run.state is RunState.CANCELLED
    assert application_state(engines, run.engine_info["id"]) == "KILLED"
    await eventually(lambda: all(gone(pid) for pid in pids), 60, "workers to be killed")


async def test_timeout_kills_the_application(launcher: Launcher, script: Path,
                                             engines: EngineRegistry) -> None:
    run = await launcher.submit(spec(script, workers=1, modes={0: "sleep"}, timeout=20),
                                make_manifest(), "file:///d")
    run = await launcher.wait(run.id, timeout=120)
    assert run.state is RunState.TIMED_OUT, run.reason
    assert application_state(engines, run.engine_info["id"]) == "KILLED"


async def test_follow_streams_a_yarn_workers_output(launcher: Launcher, script: Path,
                                                    tmp_path: Path) -> None:
    until = tmp_path / "until"
    run = await launcher.submit(spec(script, workers=1, modes={0: "until-file"},
                                     env={"UNTIL": str(until)}), make_manifest(), "file:///d")
    seen = ""
    async for chunk in launcher.follow(run.id):
        seen += chunk
        if "ENV " in seen and not until.exists():
            until.touch()  # the worker's first output arrived while it runs: let it finish
    assert "ENV " in seen and "worker 0 done" in seen
    assert launcher.run(run.id).state is RunState.SUCCEEDED


DAEMON = """
import asyncio, json, sys
from pathlib import Path
from p2pdata.db import open_db
from p2pdata.hdfs.localcluster import LocalHdfs
from p2pdata.training import EngineRegistry, JobSpec, Launcher, RunState
from tests.training.conftest import make_manifest

async def main(db, runs, settings, spec):
    engines = EngineRegistry({"yarn": json.loads(settings)}, default="yarn")
    launcher = Launcher(open_db(Path(db)), Path(runs), poll_interval=0.2, engines=engines)
    await launcher.start()
    run = await launcher.submit(JobSpec.from_stored(json.loads(spec)), make_manifest(), "file:///d")
    while run.state is not RunState.RUNNING or not run.engine_info.get("id"):
        await asyncio.sleep(0.1)
    print(json.dumps({"run": run.id, "app": run.engine_info["id"]}), flush=True)
    await asyncio.Event().wait()  # until the test SIGKILLs this stand-in daemon

asyncio.run(main(*sys.argv[1:]))
"""


async def test_daemon_restart_reattaches_to_its_running_application(
        tmp_path: Path, script: Path, yarn_cluster: LocalHdfs, yarn_state: Path,
        engines: EngineRegistry) -> None:
    """A daemon killed mid-run leaves its YARN application running; the next one finds it
    by its id and supervises it to the end: not lost, not started twice. A clean stop
    (detach) and another start do the same."""
    until = tmp_path / "until"
    job = spec(script, modes={0: "until-file", 1: "until-file"}, env={"UNTIL": str(until)})
    daemon = write_script(tmp_path, "daemon.py", textwrap.dedent(DAEMON))
    db, runs = tmp_path / "state.db", tmp_path / "runs"
    settings = engine_settings(yarn_cluster, yarn_state)
    proc = subprocess.Popen([sys.executable, str(daemon), str(db), str(runs),
                             json.dumps(settings), json.dumps(job.to_dict())],
                            stdout=subprocess.PIPE, cwd=REPO, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        started = json.loads(await asyncio.to_thread(proc.stdout.readline))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the daemon dies; its driver JVM with it
        proc.wait()
    app_id = started["app"]
    assert application_state(engines, app_id) in ("ACCEPTED", "RUNNING")

    for stop in ("clean", "final"):
        launcher = Launcher(open_db(db), runs, poll_interval=0.2, engines=engines)
        await launcher.start()
        run = launcher.run(started["run"])
        assert run.state is RunState.RUNNING and run.engine_info["id"] == app_id
        if stop == "clean":
            await all_ready(launcher, run)
            await launcher.close()  # a daemon's clean stop: the application runs on
            assert launcher.store.get(run.id).state is RunState.RUNNING
            assert application_state(engines, app_id) == "RUNNING"
            assert len(worker_processes(run)) == 2
        else:
            until.touch()
            run = await launcher.wait(run.id, timeout=120)
            await launcher.close()
    assert run.state is RunState.SUCCEEDED, run.reason
    assert run.attempt == 0 and run.engine_info["id"] == app_id
    tagged = [report.id for report in engines.get("yarn").client().get_applications(
        states=["SUBMITTED", "ACCEPTED", "RUNNING", "FINISHED", "FAILED", "KILLED"])
        if f"p2pdata-run-{run.id}".lower() in report.tags]
    assert tagged == [app_id]  # one application for the run, never a second
    for index in (0, 1):
        assert run.log_paths[index].read_text().count("ENV ") == 1  # no line copied twice


@pytest.mark.tf
async def test_two_worker_tensorflow_training_reads_the_dataset_from_hdfs(
        launcher: Launcher, tmp_path: Path, yarn_cluster: LocalHdfs) -> None:
    user = getpass.getuser()
    remote = f"/p2pdata/toy/{tmp_path.name}"
    toy_on_hdfs(yarn_cluster.webhdfs_url, tmp_path / "toy", remote)
    job = JobSpec.from_dict({
        "name": "keras-yarn", "engine": "yarn", "framework": "tensorflow", "workers": 2,
        "entry": {"script": str(EXAMPLES / "train_keras.py"),
                  "args": ["--epochs", "3", "--batch-size", "32"]},
        "env": {"PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "",
                "P2PDATA_HDFS_USER": user},
        "resources": {"memory": 1024, "vcores": 1, "gpus": 1},
        "startup_timeout": 180, "timeout": 400,
    })
    uri = f"{yarn_cluster.namenode_address}{remote}"  # hdfs://: read in place, natively
    run = await launcher.submit(job, make_manifest(), uri)
    run = await launcher.wait(run.id, timeout=450)
    logs = "\n".join(path.read_text()[-3000:] for path in run.log_paths)
    assert run.state is RunState.SUCCEEDED, f"{run.reason}\n{logs}"
    metrics = json.loads((run.output_dir / "metrics.json").read_text())
    assert metrics["workers"] == 2 and metrics["rows"] == 2000
    assert metrics["accuracy"] > 0.8
    assert "rendezvous done" in logs


async def test_restart_finds_its_application_gone_and_says_so(
        tmp_path: Path, script: Path, engines: EngineRegistry) -> None:
    """A run recorded as running on YARN whose application the ResourceManager does not
    know (an RM without recovery restarted, or the id was purged) fails with that reason."""
    db, runs = open_db(tmp_path / "state.db"), tmp_path / "runs"
    job = spec(script)
    record = RunRecord(id="20260101-000000-abcdef", job=job.name, dataset="toy@1",
                       dataset_uri="file:///d", state=RunState.RUNNING, workers=2,
                       created=time.time(), started=time.time(), run_dir=runs / "r",
                       output_dir=runs / "r" / "output", spec=job.to_dict(), engine="yarn",
                       engine_info={"id": "application_1000000000000_0001", "state": "RUNNING"})
    first = Launcher(db, runs, engines=engines)
    first.store.save(record)
    first.store.keep_manifest(record.id, make_manifest())
    launcher = Launcher(db, runs, poll_interval=0.2, engines=engines)
    await launcher.start()
    try:
        run = await launcher.wait(record.id, timeout=60)
    finally:
        await launcher.close()
    assert run.state is RunState.FAILED
    assert "application_1000000000000_0001 is gone" in run.reason, run.reason
