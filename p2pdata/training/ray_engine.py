"""The `ray` engine: a run is a Ray Train job on an existing Ray cluster.

The daemon never imports Ray. Each attempt is one driver process (`ray_driver.py`, in its
own session next to the daemon) that connects to `training.ray_address`, starts a Ray Train
trainer whose workers run the job's entry point, and leaves everything the launcher needs in
the run directory: the workers' logs, their ready files and a result file with the Ray job
id, what Ray says while placement waits, and the outcome. This engine only starts, watches
(those files, the driver's life) and signals that process. The driver outlives a daemon
restart, so runs are re-attached, as YARN applications are.

Per-worker `resources` map to Ray's: vcores → CPU (default 1), gpus → GPU, memory → memory.
Settings: `address` (training.ray_address), `storage_path` (training.ray_storage_path),
`connect_timeout` (seconds, default 60).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from p2pdata.errors import TrainingError
from p2pdata.training import procs, worker
from p2pdata.training.engine import Attempt, Observation
from p2pdata.training.spec import JobSpec

if TYPE_CHECKING:
    from p2pdata.training.launcher import RunRecord

# Run as a file (`-P`: its directory stays off sys.path), so it imports nothing of p2pdata.
DRIVER = Path(__file__).with_name("ray_driver.py")


def ray_resources(spec: JobSpec) -> dict[str, float]:
    """A worker's Ray resources from the spec's `resources`."""
    wanted: dict[str, float] = {"CPU": float(spec.resources.vcores or 1)}
    if spec.resources.gpus:
        wanted["GPU"] = float(spec.resources.gpus)
    if spec.resources.memory:
        wanted["memory"] = float(spec.resources.memory * 2**20)
    return wanted


def _job_file(run_dir: Path, number: int) -> Path:
    return run_dir / f"ray-attempt-{number}.json"


def _result_file(run_dir: Path, number: int) -> Path:
    return run_dir / f"ray-attempt-{number}.result.json"


class RayEngine:
    name = "ray"
    detachable = True  # the driver is not the daemon's: it runs on, and is re-found by pid

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        settings = settings or {}
        self.address: str = settings.get("address") or ""
        self.connect_timeout = float(settings.get("connect_timeout") or 60.0)
        # Where Ray Train keeps its run state: every node must reach it on a multi-host
        # cluster (NFS, s3://...); default: the run's directory, right for one host.
        self.storage: str = settings.get("storage_path") or ""

    async def launch(self, attempt: Attempt) -> RayWorkers:
        if not self.address:
            raise TrainingError("engine ray: no Ray cluster configured: set "
                                "training.ray_address (\"auto\", HOST:PORT or ray://HOST:PORT)")
        spec, record = attempt.spec, attempt.record
        (attempt.run_dir / "ready").mkdir(parents=True, exist_ok=True)
        argv = spec.entry.argv(spec.python or "")
        job = {
            "address": self.address, "run_id": record.id, "attempt": attempt.number,
            "framework": spec.framework, "workers": spec.workers,
            "resources": ray_resources(spec), "argv": argv,
            "env": {**attempt.env, worker.NUM_WORKERS: str(spec.workers)},
            "workdir": None if spec.workdir is None else str(spec.workdir),
            "run_dir": str(attempt.run_dir), "connect_timeout": self.connect_timeout,
            "storage_path": self.storage or str(attempt.run_dir / "ray"),
            # Past the engine's start-up deadline, which reports Ray's placement state.
            "placement_timeout": None if spec.startup_timeout is None
            else spec.startup_timeout + 30,
            "index_var": worker.WORKER_INDEX, "ready_var": worker.READY_FILE,
        }
        job_file = _job_file(attempt.run_dir, attempt.number)
        job_file.write_text(json.dumps(job))
        _result_file(attempt.run_dir, attempt.number).unlink(missing_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for index, path in enumerate(attempt.log_paths):
            with open(path, "a") as log:
                log.write(f"--- p2pdata run {record.id} attempt {attempt.number} worker {index} "
                          f"on Ray at {self.address} at {stamp}: {' '.join(argv)}\n")
        driver_log = attempt.run_dir / "ray-driver.log"
        env = {k: v for k, v in os.environ.items() if k not in worker.FRAMEWORK_VARS}
        env.update(PYTHONUNBUFFERED="1", RAY_TRAIN_V2_ENABLED="1")
        popen, process, _ = procs.spawn(
            [sys.executable, "-P", str(DRIVER), str(job_file)], index=0, env=env,
            cwd=attempt.run_dir, log_path=driver_log,
            header=f"--- attempt {attempt.number} at {stamp}\n")
        record.engine_info = {"state": "starting", "address": self.address,
                              "driver_pid": process.pid, "driver_started": process.create_time,
                              "driver_log": str(driver_log)}
        attempt.save()
        return RayWorkers(attempt, popen)

    async def reattach(self, attempt: Attempt) -> RayWorkers:
        return RayWorkers(attempt, None)

    async def abandon(self, record: RunRecord) -> list[str]:
        pid = _live_driver(record.engine_info)
        if pid is None:
            return []
        procs.signal_group(pid, signal.SIGKILL)  # Ray then ends the job's workers
        return [f"Ray driver {pid}"]

    async def close(self) -> None:
        return None


def _live_driver(info: Mapping[str, Any]) -> int | None:
    """The driver's pid if that very process still runs (not a reused pid)."""
    pid, started = info.get("driver_pid"), info.get("driver_started")
    if pid is None or started is None:
        return None
    try:
        proc = psutil.Process(int(pid))
        if abs(proc.create_time() - float(started)) < 0.005 and \
                proc.status() != psutil.STATUS_ZOMBIE:
            return int(pid)
    except psutil.NoSuchProcess:
        pass
    return None


class RayWorkers:
    """One attempt's Ray Train job, seen through its driver process and its files."""

    def __init__(self, attempt: Attempt, popen: subprocess.Popen[bytes] | None) -> None:
        self.attempt = attempt
        self.popen = popen  # None: re-attached, the driver is a previous daemon's child
        self.pid = int(attempt.record.engine_info["driver_pid"])
        self.launched = time.monotonic()
        self._seen = Observation()

    def _driver_code(self) -> int | None:
        """The driver's exit code once it ended (None: still running; for a driver that
        is not our child, 0 or 1 by its result file)."""
        if self.popen is not None:
            return procs.exit_status(self.pid)
        return None if _live_driver(self.attempt.record.engine_info) else 1

    def _result(self) -> dict[str, Any]:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            return json.loads(_result_file(self.attempt.run_dir, self.attempt.number).read_text())
        return {}

    async def observe(self) -> Observation:
        seen, attempt = self._seen, self.attempt
        if seen.exited:
            return seen
        for index in range(attempt.workers):
            if (attempt.run_dir / "ready" / f"worker-{index}.attempt-{attempt.number}").exists():
                seen.ready.add(index)
        code = self._driver_code()
        result = self._result()
        info = attempt.record.engine_info
        if result.get("job_id"):
            info["id"] = result["job_id"]  # Ray's job id
        info["state"] = result.get("state") or (
            "ended" if code is not None else
            "running" if result.get("started", 0) == attempt.workers else
            "pending" if result.get("waiting") else "starting")
        if code is None:
            self._check_startup(result)
            return seen
        # The driver is gone, and with it the whole Ray job: every worker has ended, though
        # those Ray stopped itself (after another failed, or never started) report no code.
        codes = {int(k): v for k, v in result.get("exit_codes", {}).items()}
        seen.exited, seen.over = codes, True
        failed = any(c != 0 for c in codes.values())
        if result.get("state") != "succeeded" and not failed and seen.failure is None:
            seen.failure = result.get("reason") or (
                f"Ray driver exited with code {code} (see {attempt.run_dir / 'ray-driver.log'})")
        return seen

    def _check_startup(self, result: dict[str, Any]) -> None:
        """The start-up deadline, with what Ray says of the placement it waits for."""
        seen, spec = self._seen, self.attempt.spec
        if (spec.startup_timeout is None or seen.failure is not None
                or len(seen.ready) >= spec.workers
                or time.monotonic() - self.launched < spec.startup_timeout):
            return
        missing = sorted(set(range(spec.workers)) - seen.ready)
        waiting = result.get("waiting")
        seen.failure = (f"start-up deadline: worker(s) {missing} not started after "
                        f"{spec.startup_timeout:g}s"
                        + (f"; Ray: placement group {waiting}" if waiting else ""))

    async def fetch_logs(self) -> None:
        return None  # the driver writes the workers' output into their log files

    async def terminate(self) -> None:
        procs.signal_group(self.pid, signal.SIGTERM)

    async def kill(self) -> None:
        procs.signal_group(self.pid, signal.SIGKILL)

    async def release(self, *, detach: bool = False) -> None:
        if detach:
            return  # the driver runs on; the next daemon re-attaches by its pid
        if self._driver_code() is None:
            procs.signal_group(self.pid, signal.SIGKILL)
        if self.popen is not None:
            await procs.reap([self.popen])
