"""The Ray side of a Ray run: a driver process the daemon starts, one per attempt.

    python -P .../p2pdata/training/ray_driver.py RUN_DIR/ray-attempt-N.json

Only this process (and the Ray workers) import Ray; the daemon supervises it like a local
worker and reads what it leaves in the run directory:

- `worker-I.log`: the output of worker I's entry point, streamed back from its node;
- `ready/worker-I.attempt-N`: touched once worker I called `worker_started()`;
- `ray-attempt-N.result.json`: `job_id` once connected, `waiting` (what Ray says of
  placement groups still pending), `started` (how many entry points run), and at the end `state` ("succeeded" or "failed"),
  `reason` and per-worker `exit_codes`.

Each Ray Train worker runs the job's entry point as a child process (so a script runs as
it would locally or on YARN, with `TF_CONFIG` from Ray's TensorFlow backend), dying with
its Ray actor. Before asking Ray for anything the driver checks that the cluster's nodes
can hold the workers at all: Ray would otherwise wait forever for a placement group.

It runs as a file, importing nothing of p2pdata: starting it costs only Ray's import, and
Ray pickles its worker side (`train_loop`, `Monitor`) by value, so Ray's nodes need no
p2pdata (only what the entry point itself imports). Standard library and Ray only here.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Set by Ray's TensorFlow backend for Keras 2; a script that wants it sets it in the spec.
_RAY_ONLY_VARS = ("TF_USE_LEGACY_KERAS",)
_PR_SET_PDEATHSIG = 1
_POLL = 0.1


@dataclass(frozen=True)
class DriverJob:
    """What the engine hands the driver (as JSON)."""

    address: str
    run_id: str
    attempt: int
    framework: str
    workers: int
    resources: dict[str, float]  # per worker, in Ray's names: CPU, GPU, memory (bytes)
    argv: list[str]  # argv[0] "": the Ray worker's own interpreter
    env: dict[str, str]
    workdir: str | None
    run_dir: str
    connect_timeout: float  # seconds for ray.init: an unreachable cluster hangs it for good
    storage_path: str  # Ray Train's RunConfig.storage_path
    placement_timeout: float | None  # Ray Train's own limit on waiting for a placement group
    index_var: str  # the worker contract's variable names (p2pdata.training.worker)
    ready_var: str

    @classmethod
    def load(cls, path: Path) -> DriverJob:
        return cls(**json.loads(path.read_text()))

    @property
    def result_file(self) -> Path:
        return Path(self.run_dir) / f"ray-attempt-{self.attempt}.result.json"


def placement_problem(nodes: list[dict[str, Any]], workers: int,
                      per_worker: dict[str, float]) -> str | None:
    """Why `workers` bundles of `per_worker` can never be placed on these nodes, or None.

    Identical bundles: a node holds as many as its scarcest asked-for resource allows.
    """
    wanted = {name: amount for name, amount in per_worker.items() if amount > 0}
    alive = [node for node in nodes if node.get("Alive")]
    fits = 0
    for node in alive:
        have = node.get("Resources", {})
        fits += min((int(have.get(name, 0) // amount) for name, amount in wanted.items()),
                    default=workers)
    if fits >= workers:
        return None
    shown = "; ".join(
        ", ".join(f"{name} {_amount(name, node['Resources'].get(name, 0))}" for name in wanted)
        for node in alive)
    asked = ", ".join(f"{name} {_amount(name, amount)}" for name, amount in wanted.items())
    return (f"Ray cannot place {workers} worker(s) of {{{asked}}}: the cluster's "
            f"{len(alive)} node(s) hold {fits} ({shown or 'no live nodes'})")


def _amount(name: str, value: float) -> str:
    if name in ("memory", "object_store_memory"):
        return f"{value / 2**20:.0f} MiB"
    return f"{value:g}"


def pending_placements() -> str:
    """What Ray says of the placement groups still waiting for resources ("" if none)."""
    import ray.util

    return ", ".join(
        f"{pg.get('state')} ({pg.get('stats', {}).get('scheduling_state', '?')}) for "
        + ", ".join(f"{{{_bundle(b)}}}" for b in pg.get("bundles", {}).values())
        for pg in ray.util.placement_group_table().values()
        if pg.get("state") in ("PENDING", "RESCHEDULING"))


def _bundle(resources: dict[str, float]) -> str:
    return ", ".join(f"{name} {_amount(name, amount)}" for name, amount in resources.items())


# --- the worker side (runs inside each Ray Train worker actor) ---------------------------

def _die_with_parent() -> None:
    # The entry point must not outlive its Ray actor (cancel, timeout, a dead node).
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def train_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: run the entry point, stream its output, report its exit."""
    import ray
    import ray.train
    from ray.train.collective import broadcast_from_rank_zero

    context = ray.train.get_context()
    index, size = context.get_world_rank(), context.get_world_size()
    monitor = config["monitor"]
    env = {k: v for k, v in os.environ.items() if k not in _RAY_ONLY_VARS}
    env.update(config["env"])
    if config["framework"] == "torch":
        # Ray's torch group belongs to the actor; the entry point gets a rendezvous of its own.
        master = broadcast_from_rank_zero(
            (ray.util.get_node_ip_address(), _free_port()) if index == 0 else None)
        env.update(MASTER_ADDR=master[0], MASTER_PORT=str(master[1]), RANK=str(index),
                   WORLD_SIZE=str(size), LOCAL_RANK=str(context.get_local_rank()),
                   LOCAL_WORLD_SIZE=str(context.get_local_world_size()))
    argv = [config["argv"][0] or sys.executable, *config["argv"][1:]]
    with tempfile.TemporaryDirectory(prefix="p2pdata-ray-") as scratch:
        ready = Path(scratch) / "ready"
        env.update({config["index_var"]: str(index), config["ready_var"]: str(ready)})
        proc = subprocess.Popen(argv, env=env, cwd=config["workdir"] or scratch,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        assert proc.stdout is not None
        monitor.started.remote(index)
        reader = threading.Thread(target=_forward, args=(proc.stdout, monitor, index),
                                  daemon=True)
        reader.start()
        reported = False
        while proc.poll() is None:
            if not reported and ready.exists():
                monitor.ready.remote(index)
                reported = True
            time.sleep(_POLL)
        reader.join(timeout=5.0)  # a child the entry point left behind may hold the pipe
        if not reported and ready.exists():
            monitor.ready.remote(index)
        # Waited for, so the driver knows the code before Ray reports the failure.
        ray.get(monitor.exited.remote(index, proc.returncode))
    if proc.returncode != 0:
        raise RuntimeError(f"worker {index} exited with code {proc.returncode}")


def _forward(stream: Any, monitor: Any, index: int) -> None:
    for chunk in iter(lambda: stream.read1(65536), b""):
        monitor.log.remote(index, chunk)


class Monitor:
    """A small actor the workers report to and the driver drains (logs, ready, exits)."""

    def __init__(self) -> None:
        self.logs: list[tuple[int, bytes]] = []
        self.started_set: set[int] = set()  # entry point running (ready: it said so itself)
        self.ready_set: set[int] = set()
        self.exit_codes: dict[int, int] = {}

    def started(self, index: int) -> None:
        self.started_set.add(index)

    def log(self, index: int, chunk: bytes) -> None:
        self.logs.append((index, chunk))

    def ready(self, index: int) -> None:
        self.ready_set.add(index)

    def exited(self, index: int, code: int) -> None:
        self.exit_codes[index] = code

    def drain(self) -> tuple[list[tuple[int, bytes]], set[int], set[int], dict[int, int]]:
        logs, self.logs = self.logs, []
        return logs, set(self.started_set), set(self.ready_set), dict(self.exit_codes)


# --- the driver ---------------------------------------------------------------------------

class Driver:
    def __init__(self, job: DriverJob) -> None:
        self.job = job
        self.run_dir = Path(job.run_dir)
        self.result: dict[str, Any] = {"attempt": job.attempt}
        self.ready: set[int] = set()
        self.exit_codes: dict[int, int] = {}
        self.waited_for = ""  # the last placement Ray kept pending

    def write_result(self, **fields: Any) -> None:
        self.result.update(fields)
        tmp = self.job.result_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result))
        tmp.replace(self.job.result_file)

    def run(self) -> int:
        import ray

        job = self.job
        watchdog = threading.Timer(job.connect_timeout, self._unreachable)
        watchdog.daemon = True
        watchdog.start()
        # Ray Train waits for a placement group this long, then (with controller failures
        # not retried) fails the run in its own words; None keeps Ray's default (60 s).
        env_vars = {} if job.placement_timeout is None else {
            "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": f"{job.placement_timeout:g}"}
        deadline = time.monotonic() + job.connect_timeout
        while True:
            try:
                ray.init(address=job.address, logging_level="WARNING", log_to_driver=False,
                         configure_logging=False,
                         runtime_env={"env_vars": env_vars} if env_vars else None)
                break
            except ConnectionError as exc:  # Ray Client gives up after about 35 s; we don't
                if time.monotonic() > deadline:
                    raise
                print(f"cannot connect yet ({_one_line(exc, 200)}); retrying", flush=True)
                ray.shutdown()
                time.sleep(1.0)
        watchdog.cancel()
        self.write_result(job_id=ray.get_runtime_context().get_job_id())
        print(f"connected to Ray at {job.address} as job {self.result['job_id']}", flush=True)
        problem = placement_problem(ray.nodes(), job.workers, job.resources)
        if problem:
            return self.finish("failed", problem)
        monitor = ray.remote(num_cpus=0)(Monitor).remote()
        trainer = self._trainer(monitor)
        outcome: dict[str, BaseException | None] = {}
        fitting = threading.Thread(target=self._fit, args=(trainer, outcome), daemon=True)
        fitting.start()
        look_at = 0.0
        while fitting.is_alive():
            self._drain(monitor)
            if len(self.ready) < job.workers and time.monotonic() >= look_at:
                # For the engine's start-up deadline: what Ray says while workers wait.
                waiting = pending_placements()
                if waiting != self.result.get("waiting", ""):
                    self.write_result(waiting=waiting)
                self.waited_for = waiting or self.waited_for
                look_at = time.monotonic() + 1.0
            fitting.join(_POLL)
        self._drain(monitor)
        error = outcome.get("error")
        if error is None:
            return self.finish("succeeded", "")
        failed = sorted(i for i, code in self.exit_codes.items() if code != 0)
        if failed:
            code = self.exit_codes[failed[0]]
            return self.finish("failed", f"worker {failed[0]} exited with code {code}")
        waited = self.waited_for if len(self.ready) < job.workers else ""
        return self.finish("failed", f"Ray Train: {_one_line(error, 400)}"
                           + (f"; Ray: placement group {waited}" if waited else ""))

    def _unreachable(self) -> None:
        self.finish("failed", f"cannot reach the Ray cluster at {self.job.address} within "
                    f"{self.job.connect_timeout:g}s")
        os._exit(1)  # ray.init cannot be interrupted

    def finish(self, state: str, reason: str) -> int:
        print(f"run {state}{': ' + reason if reason else ''}", flush=True)
        self.write_result(state=state, reason=reason,
                          exit_codes={str(k): v for k, v in self.exit_codes.items()})
        return 0 if state == "succeeded" else 1

    def _trainer(self, monitor: Any) -> Any:
        from ray.train import FailureConfig, RunConfig, ScalingConfig

        job = self.job
        resources = dict(job.resources)
        scaling = ScalingConfig(num_workers=job.workers, use_gpu=resources.get("GPU", 0) > 0,
                                resources_per_worker=resources)
        run = RunConfig(name=f"{job.run_id}-attempt-{job.attempt}",
                        storage_path=job.storage_path,
                        # Retries are the run machine's: each is a new driver and attempt.
                        failure_config=FailureConfig(max_failures=0,
                                                     controller_failure_limit=0))
        config = {"monitor": monitor, "env": job.env, "argv": job.argv,
                  "workdir": job.workdir, "framework": job.framework,
                  "index_var": job.index_var, "ready_var": job.ready_var}
        kwargs = {"train_loop_config": config, "scaling_config": scaling, "run_config": run}
        if job.framework == "tensorflow":
            from ray.train.tensorflow import TensorflowTrainer

            return TensorflowTrainer(train_loop, **kwargs)
        if job.framework == "torch":
            from ray.train.torch import TorchTrainer

            return TorchTrainer(train_loop, **kwargs)
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        return DataParallelTrainer(train_loop, **kwargs)

    @staticmethod
    def _fit(trainer: Any, outcome: dict[str, BaseException | None]) -> None:
        try:
            trainer.fit()
            outcome["error"] = None
        except BaseException as exc:
            outcome["error"] = exc

    def _drain(self, monitor: Any) -> None:
        import ray

        logs, started, ready, exit_codes = ray.get(monitor.drain.remote())
        if len(started) != self.result.get("started", 0):
            self.write_result(started=len(started))  # entry points running, for the record
        for index, chunk in logs:
            with open(self.run_dir / f"worker-{index}.log", "ab") as log:
                log.write(chunk)
        for index in ready - self.ready:
            (self.run_dir / "ready" / f"worker-{index}.attempt-{self.job.attempt}").touch()
        self.ready |= ready
        self.exit_codes.update(exit_codes)


def _one_line(error: BaseException, limit: int = 500) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python -P {__file__} JOB.json", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    job = DriverJob.load(Path(args[0]))
    (Path(job.run_dir) / "ready").mkdir(parents=True, exist_ok=True)
    driver = Driver(job)
    # SIGTERM (cancel, timeout) ends the driver; Ray then ends the job's actors, and each
    # entry point dies with its actor.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return driver.run()
    except Exception as exc:
        with contextlib.suppress(OSError):
            driver.write_result(state="failed", reason=f"Ray driver: {_one_line(exc)}")
        raise


if __name__ == "__main__":
    sys.exit(main())
