"""Runs inside each YARN container of a `yarn` engine run: `python -m p2pdata.training.yarn_worker`.

1. Rendezvous: pick a free port on this node, publish `host:port` under the worker's index in
   the application master's key-value store, and wait, up to P2PDATA_RENDEZVOUS_TIMEOUT
   seconds, until every worker has published its own. A worker whose peers never come fails
   with a message naming them, instead of hanging.
2. Build TF_CONFIG (or the torch variables) from those real endpoints and run the job's
   command (P2PDATA_ARGV) as a child in its own process group, output to this container's log.
3. Once the child touches its ready file (`p2pdata.training.worker_started()`), mark the
   worker ready in the key-value store, where the daemon sees it.
4. Exit with the child's code; SIGTERM from YARN is passed on to the child's group. A child
   that fails on its own ends the whole application at once, with "worker N exited with
   code C" as YARN's diagnostics (Skein itself only says a container failed), so one
   worker failing stops its peers even while no daemon watches.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from p2pdata.training import worker
from p2pdata.training.worker import ENDPOINT_PREFIX, ENV_BLOB, EXIT_PREFIX, READY_PREFIX, failed

RENDEZVOUS_FAILED = 75  # EX_TEMPFAIL: the peers, not this worker, are missing


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def rendezvous(kv: object, index: int, workers: int, endpoint: str,
               timeout: float) -> list[str]:
    """Publish this worker's endpoint; return every worker's, in index order."""
    kv[f"{ENDPOINT_PREFIX}{index}"] = endpoint.encode()  # type: ignore[index]
    deadline = time.monotonic() + timeout
    while True:
        found = kv.get_prefix(ENDPOINT_PREFIX)  # type: ignore[attr-defined]
        if len(found) >= workers:
            return [found[f"{ENDPOINT_PREFIX}{i}"].decode() for i in range(workers)]
        if time.monotonic() > deadline:
            missing = sorted(set(range(workers)) - {int(k[len(ENDPOINT_PREFIX):]) for k in found})
            raise TimeoutError(f"rendezvous: worker(s) {missing} did not report within "
                               f"{timeout:g}s")
        time.sleep(0.05)


def main() -> int:
    import skein

    env = {k: v for k, v in os.environ.items() if k not in worker.FRAMEWORK_VARS}
    env.update(json.loads(base64.b64decode(env.pop(ENV_BLOB))))
    index = int(env["SKEIN_CONTAINER_ID"].rpartition("_")[2])
    workers = int(env[worker.NUM_WORKERS])
    framework = env.get("P2PDATA_FRAMEWORK", "none")
    argv = json.loads(env["P2PDATA_ARGV"])
    app = skein.ApplicationClient.from_current()
    if framework in ("tensorflow", "torch"):
        host = os.environ.get("NM_HOST") or socket.gethostname()
        endpoint = f"{host}:{free_port(host)}"
        try:
            endpoints = rendezvous(app.kv, index, workers, endpoint,
                                   float(env.get("P2PDATA_RENDEZVOUS_TIMEOUT", "600")))
        except TimeoutError as exc:
            print(f"p2pdata worker {index}: {exc}", flush=True)
            return RENDEZVOUS_FAILED
        print(f"p2pdata worker {index}: rendezvous done: {endpoints}", flush=True)
    else:
        endpoints = []
    ready = Path.cwd() / "p2pdata-ready"
    env.update(worker.worker_env(framework, endpoints, index, workers, one_host=False))
    env[worker.READY_FILE] = str(ready)
    child = subprocess.Popen(argv, env=env, cwd=env.get("P2PDATA_WORKDIR") or None,
                             stdin=subprocess.DEVNULL, start_new_session=True)

    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True  # YARN is stopping this container: not the worker's own failure
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    reported = False
    while child.poll() is None:
        if not reported and ready.exists():
            app.kv[f"{READY_PREFIX}{index}"] = b"1"
            reported = True
        time.sleep(0.1)
    code = child.returncode
    if code != 0 and not stopping:
        with contextlib.suppress(Exception):  # the master may already be going away
            app.kv[f"{EXIT_PREFIX}{index}"] = str(code).encode()
            app.shutdown("FAILED", failed(index, code))
    return 128 - code if code < 0 else code  # killed by signal N: the shell's 128+N


if __name__ == "__main__":
    sys.exit(main())
