"""What a training script sees: the environment contract between launcher and worker.

Every worker gets these variables (and, by framework, TF_CONFIG or the torch rendezvous):

- P2PDATA_DATASET_URI   where the landed dataset is (`hdfs://HOST:PORT/path` or `file:///path`)
- P2PDATA_DATASET       the dataset as NAME@VERSION
- P2PDATA_MANIFEST      the manifest as JSON, bytes as hex, without the torrent bytes
- P2PDATA_MANIFEST_FILE the full manifest as JSON in a file
- P2PDATA_OUTPUT_DIR    where to write the model and metrics (shared by all workers)
- P2PDATA_RUN_ID, P2PDATA_JOB, P2PDATA_WORKER_INDEX, P2PDATA_NUM_WORKERS, P2PDATA_ATTEMPT
- P2PDATA_READY_FILE    touch this file once the worker is up (see `worker_started`)

Start-up: a worker counts as started once its ready file exists. A Python script calls
`p2pdata.training.worker_started()`; anything else may `touch "$P2PDATA_READY_FILE"`.
A TensorFlow script should call it after its distribution strategy is built, because that
is where a worker whose peer never came up hangs. Jobs with a `startup_timeout` fail when
some worker is not started by then.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DATASET_URI = "P2PDATA_DATASET_URI"
DATASET = "P2PDATA_DATASET"
MANIFEST = "P2PDATA_MANIFEST"
MANIFEST_FILE = "P2PDATA_MANIFEST_FILE"
OUTPUT_DIR = "P2PDATA_OUTPUT_DIR"
RUN_ID = "P2PDATA_RUN_ID"
JOB = "P2PDATA_JOB"
WORKER_INDEX = "P2PDATA_WORKER_INDEX"
NUM_WORKERS = "P2PDATA_NUM_WORKERS"
ATTEMPT = "P2PDATA_ATTEMPT"
READY_FILE = "P2PDATA_READY_FILE"

# The yarn engine's contract with its container bootstrap (`yarn_worker`): keys in the
# application master's key-value store, and the variable carrying the workers' environment.
ENDPOINT_PREFIX = "p2pdata/endpoint/"  # worker index → the host:port it will serve on
READY_PREFIX = "p2pdata/ready/"  # worker index → present once the worker started
EXIT_PREFIX = "p2pdata/exit/"  # worker index → its exit code, when it failed on its own
ENV_BLOB = "P2PDATA_ENV_B64"  # JSON in base64 (YARN does not escape variables' values)


def failed(index: int, code: int) -> str:
    """How a worker's own failure is told to YARN (the application's diagnostics)."""
    return f"worker {index} exited with code {code}"


# Variables a framework reads to find its peers: never inherited, always set per worker.
FRAMEWORK_VARS = ("TF_CONFIG", "MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE",
                  "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def worker_started() -> bool:
    """Tell the launcher this worker is up. False when not run by the launcher."""
    path = os.environ.get(READY_FILE)
    if not path:
        return False
    Path(path).touch()
    return True


def worker_env(framework: str, endpoints: list[str], index: int, workers: int, *,
               one_host: bool = True) -> dict[str, str]:
    """The per-worker variables: index, and TF_CONFIG or the torch rendezvous built from
    every worker's real `host:port` (`endpoints`, one per worker for TensorFlow, the
    master's for torch). `one_host`: all workers share a machine (the local engine), so
    torch's local rank is the global one; else each worker is alone in its container."""
    env = {WORKER_INDEX: str(index), NUM_WORKERS: str(workers)}
    if framework == "tensorflow":
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": list(endpoints)},
                                       "task": {"type": "worker", "index": index}})
    elif framework == "torch":
        host, _, port = endpoints[0].rpartition(":")
        env.update(MASTER_ADDR=host, MASTER_PORT=port, RANK=str(index),
                   WORLD_SIZE=str(workers), LOCAL_RANK=str(index if one_host else 0),
                   LOCAL_WORLD_SIZE=str(workers if one_host else 1))
    return env


def manifest_json(manifest: dict[str, Any]) -> str:
    """JSON for a manifest dict: bytes become hex."""
    return json.dumps(manifest, default=_hex, sort_keys=True)


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
