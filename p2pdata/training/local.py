"""The `local` engine, the default: a run's workers are child processes next to the daemon.

Each worker runs in its own session (so its own process group, which is what gets signalled),
writes its output straight into its log file, and says it started by touching a ready file in
the run's directory. Ports for TF_CONFIG / the torch rendezvous are picked free on the host
just before spawning; a worker that then finds its port taken fails with a bind error, which
the run machine answers with a new attempt on fresh ports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2pdata.training import procs, worker
from p2pdata.training.engine import Attempt, Observation

if TYPE_CHECKING:
    from p2pdata.training.launcher import RunRecord


class LocalEngine:
    name = "local"
    detachable = False

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        settings = settings or {}
        self.host: str = settings.get("host", "localhost")
        self._live: set[LocalWorkers] = set()

    def released(self, workers: LocalWorkers) -> None:
        """`workers` are reaped: their ports are free for the next launch."""
        self._live.discard(workers)

    async def launch(self, attempt: Attempt) -> LocalWorkers:
        busy = {port for other in self._live for port in other.ports}
        workers = LocalWorkers(self, attempt, busy)
        self._live.add(workers)
        try:
            workers.spawn()
        except BaseException:
            await workers.release()
            raise
        return workers

    async def reattach(self, attempt: Attempt) -> LocalWorkers:
        raise NotImplementedError("local workers die with their daemon: nothing to re-attach")

    async def abandon(self, record: RunRecord) -> list[str]:
        return [str(pid) for pid in procs.kill_leftovers(record.id, record.processes)]

    async def close(self) -> None:
        return None


class LocalWorkers:
    """One attempt's child processes."""

    def __init__(self, engine: LocalEngine, attempt: Attempt, busy: set[int]) -> None:
        self.engine = engine
        self.attempt = attempt
        spec = attempt.spec
        count = {"tensorflow": spec.workers, "torch": 1}.get(spec.framework, 0)
        self.ports = procs.free_ports(count, avoid=busy)
        self.popens: list[subprocess.Popen[bytes]] = []
        self.offsets: list[int] = []
        self._seen = Observation()

    def _ready_file(self, index: int) -> Path:
        return self.attempt.run_dir / "ready" / f"worker-{index}.attempt-{self.attempt.number}"

    def spawn(self) -> None:
        attempt, record, spec = self.attempt, self.attempt.record, self.attempt.spec
        (attempt.run_dir / "ready").mkdir(parents=True, exist_ok=True)
        argv = spec.entry.argv(spec.python or sys.executable)
        endpoints = [f"{self.engine.host}:{port}" for port in self.ports]
        base = {k: v for k, v in os.environ.items() if k not in worker.FRAMEWORK_VARS}
        record.processes = []
        for index in range(spec.workers):
            env = {**base, **attempt.env, worker.READY_FILE: str(self._ready_file(index)),
                   **worker.worker_env(spec.framework, endpoints, index, spec.workers)}
            header = (f"--- p2pdata run {record.id} attempt {attempt.number} worker {index} "
                      f"at {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(argv)}\n")
            popen, process, offset = procs.spawn(
                argv, index=index, env=env, cwd=spec.workdir or record.run_dir,
                log_path=record.log_paths[index], header=header)
            self.popens.append(popen)
            self.offsets.append(offset)
            record.processes.append(process)
            attempt.save()  # after each spawn, so a crash between two still leaves a record

    async def observe(self) -> Observation:
        seen = self._seen
        for index, popen in enumerate(self.popens):
            if index in seen.exited:
                continue
            if self._ready_file(index).exists():
                seen.ready.add(index)
            code = procs.exit_status(popen.pid)
            if code is not None:
                seen.exited[index] = code
                if code != 0 and procs.log_shows_bind_failure(
                        self.attempt.log_paths[index], self.offsets[index]):
                    seen.bind_failed.add(index)
        return seen

    async def fetch_logs(self) -> None:
        return None  # workers write their log files themselves

    def _signal(self, sig: signal.Signals) -> None:
        for process in self.attempt.record.processes:
            procs.signal_group(process.pgid, sig)

    async def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    async def kill(self) -> None:
        self._signal(signal.SIGKILL)

    async def release(self, *, detach: bool = False) -> None:
        """Kill whatever is left in the groups (a worker's own children), then reap."""
        self._signal(signal.SIGKILL)
        await procs.reap(self.popens, then=lambda: self.engine.released(self))
