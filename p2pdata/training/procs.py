"""Process control for workers: spawn in a new process group, watch, signal, clean up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from p2pdata.training.worker import RUN_ID

# What a worker prints when a port chosen for it was taken before it could bind
# (TensorFlow's gRPC server, torch's TCPStore, Python's socket module).
BIND_FAILURE_MARKERS = (
    b"Address already in use",
    b"EADDRINUSE",
    b"Failed to add port to server",
    b"No address added out of total",
)


async def reap(popens: Iterable[subprocess.Popen[bytes]], then: Callable[[], None] = lambda: None) -> None:
    """Wait for `popens` (killed already) in a thread, then call `then`.

    A worker stuck in uninterruptible I/O (D state, a dead NFS) must not block the event
    loop; and the reaping is shielded: a cancellation ends our wait, not the reaping of the
    others nor `then`, which runs once every one is reaped either way."""
    popens = list(popens)
    loop = asyncio.get_running_loop()
    reaped: asyncio.Future[None] = loop.create_future()

    def wait_all() -> None:
        try:
            for popen in popens:
                popen.wait()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(reaped.set_result, None)

    # A daemon thread, not the default executor: asyncio.run joins the executor's threads
    # when it ends, so a worker stuck for good would keep the daemon from ever exiting.
    threading.Thread(target=wait_all, name="reap", daemon=True).start()
    reaped.add_done_callback(lambda _: then())
    await asyncio.shield(reaped)


@dataclass(frozen=True)
class WorkerProcess:
    """Enough to find a worker's group again after a restart, and never someone else's."""

    index: int
    pid: int
    pgid: int
    create_time: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "pid": self.pid, "pgid": self.pgid,
                "create_time": self.create_time}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerProcess:
        return cls(int(data["index"]), int(data["pid"]), int(data["pgid"]),
                   float(data["create_time"]))


def free_ports(count: int, avoid: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Ports free right now on loopback. Another process may still take one before the
    worker binds it; the launcher then retries with new ports."""
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)  # held open so one call never returns the same port twice
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in avoid:
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def spawn(argv: list[str], *, index: int, env: dict[str, str], cwd: Path,
          log_path: Path, header: str) -> tuple[subprocess.Popen[bytes], WorkerProcess, int]:
    """Start a worker in its own session (so its own process group), output to its log.

    Returns the process, its record and the log offset where this attempt's output starts.
    """
    with open(log_path, "ab") as log:
        log.write(header.encode())
        log.flush()
        offset = log.tell()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        create_time = 0.0  # exited already: it is our unreaped child, so no one else's
    return proc, WorkerProcess(index, proc.pid, proc.pid, create_time), offset


def exit_status(pid: int) -> int | None:
    """The exit code of our child `pid` without reaping it (negative: killed by a signal).

    Not reaping keeps the pid, and so the process group id, from being reused until
    we have signalled the group for the last time.
    """
    try:
        result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None
    if result is None or result.si_pid == 0:
        return None
    if result.si_code == os.CLD_EXITED:
        return result.si_status
    return -result.si_status


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def log_shows_bind_failure(log_path: Path, offset: int, limit: int = 256 * 1024) -> bool:
    try:
        with open(log_path, "rb") as log:
            log.seek(max(offset, log.seek(0, os.SEEK_END) - limit))
            text = log.read()
    except OSError:
        return False
    return any(marker in text for marker in BIND_FAILURE_MARKERS)


def kill_leftovers(run_id: str, workers: list[WorkerProcess]) -> list[int]:
    """SIGKILL what is left of a run's process groups from before a restart.

    A process is killed only if it is in a recorded group and is either the recorded
    worker (same pid and start time) or carries the run's P2PDATA_RUN_ID in its
    environment, so a reused pid or group id never costs an unrelated process its life.
    """
    groups = {worker.pgid for worker in workers}
    leaders = {(worker.pid, worker.create_time) for worker in workers}
    killed: list[int] = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) not in groups:
                continue
            ours = any(proc.pid == pid and abs(proc.create_time() - started) < 0.005
                       for pid, started in leaders)
            if not ours:
                ours = proc.environ().get(RUN_ID) == run_id
            if ours and proc.status() != psutil.STATUS_ZOMBIE:
                proc.kill()
                killed.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return killed
