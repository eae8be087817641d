"""A local Ray cluster for tests, the demo and the benchmark: two nodes in a network
namespace of their own, with only `lo` up.

Ray advertises the machine's interface address even when told 127.0.0.1, so a Ray cluster
that must stay on loopback runs where loopback is the only interface: in a namespace made
here. The caller steps into it (`setns` on the calling thread: pytest's or the demo's main
thread), so the daemons, the launcher and every Ray process they start live there too.
Needs root and `ip` (iproute2). Not used by the daemon.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from p2pdata.errors import TrainingError

CLONE_NEWNET = 0x40000000
PREFIX = "p2pray"
_libc = ctypes.CDLL(None, use_errno=True)


def unavailable() -> str | None:
    """Why a local Ray cluster cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip netns)"
    if importlib.util.find_spec("ray") is None:
        return "needs the ray extra (pip install -e '.[ray]')"
    return None


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True,
                          timeout=30).stdout


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


class NetNamespace:
    """`ip netns add` with only loopback up; `entered()` moves this thread in and out."""

    def __init__(self) -> None:
        # The creator's pid in the name lets a later run remove what a killed run left.
        self.name = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
        _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        with open("/proc/thread-self/ns/net", "rb") as home, \
                open(f"/run/netns/{self.name}", "rb") as target:
            _setns(target.fileno())
            try:
                yield
            finally:
                _setns(home.fileno())

    def pids(self) -> list[int]:
        return [int(pid) for pid in _ip("netns", "pids", self.name).split()]

    def kill_all(self, grace: float = 5.0) -> None:
        """SIGTERM everything in the namespace, SIGKILL what is left after `grace`."""
        procs = []
        for pid in self.pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                procs.append(psutil.Process(pid))
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=grace)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=grace)

    def delete(self) -> None:
        self.kill_all()
        _ip("netns", "del", self.name)


def remove_stale_namespaces() -> None:
    """Namespaces of earlier runs whose process is gone (killed before cleaning up)."""
    for line in _ip("netns", "list").splitlines():
        match = re.match(rf"({PREFIX}-(\d+)-[0-9a-f]+)\b", line)
        if match and not psutil.pid_exists(int(match.group(2))):
            stale = NetNamespace.__new__(NetNamespace)
            stale.name = match.group(1)
            stale.delete()


@dataclass
class LocalRayCluster:
    """A head node and one more node, both on the namespace's 127.0.0.1."""

    netns: NetNamespace
    address: str  # the GCS address, for `ray.init(address=...)`
    temp_dir: Path
    cpus_per_node: int

    def nodes(self) -> list[dict[str, object]]:
        """`ray.nodes()` as a separate driver sees it (the caller never imports Ray)."""
        code = ("import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR');"
                "print(json.dumps([{'address': n['NodeManagerAddress'], 'alive': n['Alive'],"
                " 'resources': n['Resources']} for n in ray.nodes()]))")
        out = subprocess.run([sys.executable, "-c", code, self.address], check=True,
                             capture_output=True, text=True, timeout=120).stdout
        return json.loads(out.strip().splitlines()[-1])


def ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


@contextlib.contextmanager
def local_ray_cluster(cpus_per_node: int = 1) -> Iterator[LocalRayCluster]:
    """Start `ray start --head` plus a second node in a fresh namespace; tear both down."""
    remove_stale_namespaces()
    netns = NetNamespace()
    # Short: Ray's unix socket paths live under it and must stay below 108 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="p2pray-", dir="/tmp"))
    port = 6379  # the namespace has its own ports: nothing else can hold it
    common = [f"--num-cpus={cpus_per_node}", "--num-gpus=0", "--disable-usage-stats",
              "--node-ip-address=127.0.0.1"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    log = temp_dir / "ray-start.log"

    def ray_start(*args: str) -> None:
        # Output to a file, not a pipe: the daemons `ray start` leaves behind would hold it.
        with open(log, "ab") as out:
            code = subprocess.run([ray_bin(), "start", *args, *common], stdout=out,
                                  stderr=subprocess.STDOUT, timeout=120, env=env).returncode
        if code != 0:
            raise TrainingError(f"ray start {' '.join(args)} failed:\n{log.read_text()[-3000:]}")

    try:
        with netns.entered():
            ray_start("--head", f"--port={port}", "--include-dashboard=false",
                      f"--temp-dir={temp_dir}")
            ray_start(f"--address=127.0.0.1:{port}")
            cluster = LocalRayCluster(netns, f"127.0.0.1:{port}", temp_dir, cpus_per_node)
            deadline = time.monotonic() + 60
            while len(nodes := [n for n in cluster.nodes() if n["alive"]]) < 2:
                if time.monotonic() > deadline:
                    raise TrainingError(f"Ray nodes never all alive: {nodes}")
            # Every node must advertise an address we own: only loopback exists here.
            if {n["address"] for n in nodes} != {"127.0.0.1"}:
                raise TrainingError(f"Ray nodes advertise addresses not on loopback: {nodes}")
        yield cluster
    finally:
        netns.delete()
        shutil.rmtree(temp_dir, ignore_errors=True)
