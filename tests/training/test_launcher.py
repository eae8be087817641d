"""The local launcher with real processes: tiny Python workers (framework none), no TF."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from p2pdata.training import JobSpec, Launcher, RunRecord, RunState
from tests.training.conftest import (
    async_wait_until,
    gone,
    make_manifest,
    make_spec,
    write_script,
)

WORKER = """
import json, os, pathlib, signal, subprocess, sys, threading
index = int(os.environ["P2PDATA_WORKER_INDEX"])
attempt = int(os.environ["P2PDATA_ATTEMPT"])
mode = os.environ.get(f"MODE_{index}", "ok")
if mode == "sleep-once":  # sleeps on the first attempt, done on any later one
    mode = "sleep" if attempt == 0 else "ok"
if mode == "bind-once" and attempt == 0:
    print("OSError: [Errno 98] Address already in use", flush=True)
    sys.exit(1)
if mode != "never-ready":
    pathlib.Path(os.environ["P2PDATA_READY_FILE"]).touch()
if mode == "crash":
    sys.exit(3)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "child":
    child = subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait()"])
    # Written whole, then renamed: a test polling for child-N never reads it half written.
    pid_file = pathlib.Path(os.environ["P2PDATA_OUTPUT_DIR"], f"child-{index}")
    partial = pid_file.with_name(f".partial-{index}")  # not matched by child-*
    partial.write_text(str(child.pid))
    partial.rename(pid_file)
if mode in ("sleep", "never-ready", "ignore-term", "child"):
    threading.Event().wait()  # blocks until the launcher kills it
keys = ["TF_CONFIG", "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE"]
keys += [k for k in os.environ if k.startswith("P2PDATA_")]
print("ENV " + json.dumps({k: os.environ[k] for k in keys if k in os.environ}), flush=True)
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    return write_script(tmp_path, "worker.py", WORKER)


def env_of(run: RunRecord, index: int) -> dict[str, str]:
    text = run.log_paths[index].read_text()
    return json.loads(text.rsplit("ENV ", 1)[1].splitlines()[0])


def worker_spec(script: Path, workers: int = 2, modes: dict[int, str] | None = None,
                **fields: object) -> JobSpec:
    env = {f"MODE_{index}": mode for index, mode in (modes or {}).items()}
    return make_spec(script, workers=workers, env=env, **fields)


async def running(launcher: Launcher, run_id: str, ready: int) -> RunRecord:
    """Wait until the run is running and `ready` of its workers wrote their ready file."""
    def ok() -> bool:
        run = launcher.run(run_id)
        marks = list((run.run_dir / "ready").glob("worker-*")) if run.run_dir.exists() else []
        return run.state is RunState.RUNNING and len(marks) >= ready
    await async_wait_until(ok, what=f"run {run_id} running with {ready} ready")
    return launcher.run(run_id)


@pytest.mark.parametrize("framework", ["tensorflow", "torch", "none"])
async def test_run_succeeds_with_its_environment(launcher: Launcher, script: Path,
                                                 events: list[RunRecord],
                                                 framework: str) -> None:
    manifest = make_manifest(tags=("tabular",))
    run = await launcher.submit(worker_spec(script, framework=framework), manifest,
                                "file:///data/toy/1")
    run = await launcher.wait(run.id, timeout=30)
    assert run.state is RunState.SUCCEEDED, run.reason
    assert run.exit_code == 0 and run.exit_codes == {0: 0, 1: 0}
    assert [e.state for e in events] == [RunState.QUEUED, RunState.RUNNING, RunState.SUCCEEDED]
    envs = [env_of(run, index) for index in range(2)]
    for index, env in enumerate(envs):
        assert env["P2PDATA_DATASET_URI"] == "file:///data/toy/1"
        assert env["P2PDATA_DATASET"] == "toy@1"
        assert env["P2PDATA_OUTPUT_DIR"] == str(run.output_dir)
        assert env["P2PDATA_WORKER_INDEX"] == str(index)
        assert env["P2PDATA_NUM_WORKERS"] == "2"
        manifest_env = json.loads(env["P2PDATA_MANIFEST"])
        assert manifest_env["name"] == "toy" and manifest_env["tags"] == ["tabular"]
        assert manifest_env["files"][0]["sha256"] == "01" * 32
        full = json.loads(Path(env["P2PDATA_MANIFEST_FILE"]).read_text())
        assert full["owner"] == "cluster-a"
    if framework == "tensorflow":
        configs = [json.loads(env["TF_CONFIG"]) for env in envs]
        hosts = configs[0]["cluster"]["worker"]
        assert len(set(hosts)) == 2 and all(c["cluster"]["worker"] == hosts for c in configs)
        assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in (0, 1)]
    elif framework == "torch":
        assert [env["RANK"] for env in envs] == ["0", "1"]
        assert {env["WORLD_SIZE"] for env in envs} == {"2"}
        assert envs[0]["MASTER_PORT"] == envs[1]["MASTER_PORT"]
    else:
        assert not any("TF_CONFIG" in env or "RANK" in env for env in envs)


async def test_worker_that_never_starts_trips_startup_deadline(launcher: Launcher,
                                                                script: Path) -> None:
    spec = worker_spec(script, modes={0: "sleep", 1: "never-ready"}, startup_timeout=0.5)
    run = await launcher.submit(spec, make_manifest(), "file:///d")
    pids = [p.pid for p in (await running(launcher, run.id, ready=1)).processes]
    run = await launcher.wait(run.id, timeout=30)
    assert run.state is RunState.FAILED
    assert "start-up deadline" in run.reason and "[1]" in run.reason
    assert all(gone(pid) for pid in pids)


async def test_crashing_worker_fails_run_and_peer_is_killed(launcher: Launcher,
                                                             script: Path) -> None:
    spec = worker_spec(script, modes={0: "child", 1: "crash"})
    run = await launcher.submit(spec, make_manifest(), "file:///d")
    run = await launcher.wait(run.id, timeout=30)
    assert run.state is RunState.FAILED
    assert run.exit_code == 3 and run.reason == "worker 1 exited with code 3"
    assert run.exit_codes[1] == 3
    assert all(gone(p.pid) for p in run.processes)
    child = run.output_dir / "child-0"
    if child.exists():  # worker 0 got as far as starting its own child: that is gone too
        assert gone(int(child.read_text()))


async def test_cancel_kills_workers_and_their_children(launcher: Launcher,
                                                       script: Path) -> None:
    spec = worker_spec(script, modes={0: "child", 1: "child"})
    run = await launcher.submit(spec, make_manifest(), "file:///d")
    run = await running(launcher, run.id, ready=2)
    await async_wait_until(lambda: len(list(run.output_dir.glob("child-*"))) == 2)
    children = [int(path.read_text()) for path in run.output_dir.glob("child-*")]
    pids = [p.pid for p in run.processes]
    await launcher.cancel(run.id)
    run = await launcher.wait(run.id, timeout=30)
    assert run.state is RunState.CANCELLED
    assert run.exit_codes == {0: -15, 1: -15}
    assert all(gone(pid) for pid in pids + children)


async def test_timeout_escalates_to_sigkill(launcher: Launcher, script: Path) -> None:
    spec = worker_spec(script, workers=1, modes={0: "ignore-term"}, timeout=0.5)
    run = await launcher.submit(spec, make_manifest(), "file:///d")
    run = await launcher.wait(run.id, timeout=30)
    assert run.state is RunState.TIMED_OUT
    assert run.exit_codes == {0: -9}


async def test_port_bind_failure_retries_on_new_ports(launcher: Launcher,
                                                      script: Path) -> None:
    spec = worker_spec(script, modes={1: "bind-once"}, framework="tensorflow")
    run = await launcher.submit(spec, make_manifest(), "file:///d")
    run = await launcher.wait(run.id, timeout=30)
    assert run.state is RunState.SUCCEEDED, run.reason
    assert run.attempt == 1
    log = run.log_paths[1].read_text()
    assert "attempt 0" in log and "attempt 1" in log and "Address already in use" in log


async def test_concurrency_limit_queues_runs(launcher: Launcher, script: Path) -> None:
    spec = worker_spec(script, workers=1, modes={0: "sleep"})
    runs = [await launcher.submit(spec, make_manifest(), "file:///d") for _ in range(3)]
    await running(launcher, runs[0].id, ready=1)
    await running(launcher, runs[1].id, ready=1)
    assert launcher.run(runs[2].id).state is RunState.QUEUED
    await launcher.cancel(runs[0].id)
    await running(launcher, runs[2].id, ready=1)
    await launcher.cancel(runs[1].id)
    await launcher.cancel(runs[2].id)
    for run in runs:
        assert (await launcher.wait(run.id, timeout=30)).state is RunState.CANCELLED


async def test_cancel_queued_run(tmp_path: Path, script: Path) -> None:
    from p2pdata.db import open_db

    launcher = Launcher(open_db(tmp_path / "q.db"), tmp_path / "runs", max_concurrent=1,
                        poll_interval=0.05, kill_grace=1)
    spec = worker_spec(script, workers=1, modes={0: "sleep"})
    first = await launcher.submit(spec, make_manifest(), "file:///d")
    second = await launcher.submit(spec, make_manifest(), "file:///d")
    cancelled = await launcher.cancel(second.id)
    assert cancelled.state is RunState.CANCELLED
    assert launcher.store.get(second.id).state is RunState.CANCELLED
    await launcher.close()
    # Stopped before its task first ran: it never started, and stays queued for the next start.
    assert launcher.store.get(first.id).state is RunState.QUEUED
    assert launcher.store.get(first.id).processes == []


async def test_trigger_submits_matching_jobs_only(launcher: Launcher, script: Path) -> None:
    specs = [
        make_spec(script, name="wants-toy", trigger={"dataset": "toy*"}),
        make_spec(script, name="wants-other", trigger={"dataset": "other"}),
        make_spec(script, name="by-hand"),
    ]
    runs = await launcher.trigger(specs, make_manifest("toy-big"), "file:///d")
    assert [run.job for run in runs] == ["wants-toy"]
    assert (await launcher.wait(runs[0].id, timeout=30)).state is RunState.SUCCEEDED


async def test_follow_and_logs(launcher: Launcher, script: Path) -> None:
    run = await launcher.submit(worker_spec(script, workers=1), make_manifest(), "file:///d")
    text = "".join([chunk async for chunk in launcher.follow(run.id)])
    assert "ENV " in text and "attempt 0 worker 0" in text
    assert launcher.logs(run.id) == [run.run_dir / "worker-0.log"]
    assert launcher.runs()[0].id == run.id


async def test_spawn_failure_fails_the_run(launcher: Launcher, script: Path,
                                           tmp_path: Path) -> None:
    spec = worker_spec(script, workers=1, workdir=str(tmp_path / "missing"))
    run = await launcher.submit(spec, make_manifest(), "file:///d")
    run = await launcher.wait(run.id, timeout=30)
    assert run.state is RunState.FAILED and "launcher error" in run.reason


async def test_follow_logs_prefixes_workers(launcher: Launcher, script: Path) -> None:
    from p2pdata.training import follow_logs

    run = await launcher.submit(worker_spec(script), make_manifest(), "file:///d")
    await launcher.wait(run.id, timeout=30)
    lines = list(follow_logs(launcher.logs(run.id)))
    assert any(line.startswith("[worker 1] ENV ") for line in lines)
    assert all(line.endswith("\n") for line in lines)
    followed = list(follow_logs(launcher.logs(run.id), follow=True, poll_interval=0.01,
                                done=lambda: launcher.run(run.id).state.terminal))
    assert followed == lines


async def test_record_times_come_from_the_injected_wall_clock(tmp_path: Path, script: Path) -> None:
    from p2pdata.db import open_db

    wall = [1_700_000_000.0]
    launcher = Launcher(open_db(tmp_path / "w.db"), tmp_path / "runs", poll_interval=0.05, kill_grace=1,
                        wall=lambda: wall[0])
    try:
        spec = worker_spec(script, workers=1, modes={0: "sleep"})
        run = await launcher.submit(spec, make_manifest(), "file:///d")
        assert run.created == 1_700_000_000.0
        assert run.id.startswith(time.strftime("%Y%m%d-%H%M%S", time.localtime(wall[0])))
        await running(launcher, run.id, ready=1)
        wall[0] += 3600
        await launcher.cancel(run.id)
        run = await launcher.wait(run.id, timeout=30)
        assert run.state is RunState.CANCELLED, run.reason
        assert run.started == 1_700_000_000.0 and run.finished == 1_700_003_600.0
    finally:
        await launcher.close()
