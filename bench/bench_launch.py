"""Launcher overhead: from a dataset landed to the training script's first line running.

Usage: python bench/bench_launch.py [--repeats 7] [--ray-repeats 3]
"Landed" is the moment `Launcher.trigger` is called with the dataset's manifest; the time
runs until the worker's first line writes a timestamp. The same script started by hand
(`subprocess.Popen`) is the baseline; the overhead is the difference of the medians.

launch_ray (as root, with the ray extra): a local two-node Ray cluster in a network
namespace of its own; from landed until both workers of a `ray` engine job run their first
line, minus the same two-worker Ray Train job started by hand (a driver script run with
`subprocess.Popen`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.db import open_db
from p2pdata.training import EngineRegistry, JobSpec, Launcher, RunState

TARGET_S = 1.0
TARGET_RAY_S = 2.0
FIRST_LINE = """import sys, time; open(sys.argv[1], "w").write(repr(time.time()))
"""


async def wait_for(path: Path, timeout: float = 30.0) -> float:
    """The timestamp the script wrote into `path`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = path.read_text()
            if text:
                return float(text)
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never written")
        await asyncio.sleep(0.001)


async def by_hand(script: Path, stamp: Path) -> float:
    start = time.time()
    proc = subprocess.Popen([sys.executable, str(script), str(stamp)])
    first = await wait_for(stamp)
    proc.wait()
    return first - start


async def through_launcher(launcher: Launcher, script: Path, stamp: Path) -> float:
    spec = JobSpec.from_dict({"name": "bench", "trigger": {"dataset": "bench*"},
                              "entry": {"script": str(script), "args": [str(stamp)]}})
    manifest = Manifest(name="bench-data", version="1", owner="bench", created=0,
                        format="parquet", files=(FileEntry("a.parquet", 1, b"\0" * 32),))
    start = time.time()
    [run] = await launcher.trigger([spec], manifest, "file:///bench-data/1")
    first = await wait_for(stamp)
    run = await launcher.wait(run.id, timeout=60)
    if run.state is not RunState.SUCCEEDED:
        raise RuntimeError(f"run {run.id} {run.state}: {run.reason}")
    return first - start


async def bench(repeats: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        script = base / "first_line.py"
        script.write_text(FIRST_LINE)
        db = open_db(base / "state.db")
        launcher = Launcher(db, base / "runs", poll_interval=0.05)
        await launcher.start()
        hand, launched = [], []
        try:
            for index in range(repeats):
                hand.append(await by_hand(script, base / f"hand-{index}"))
                launched.append(await through_launcher(launcher, script,
                                                       base / f"launch-{index}"))
        finally:
            await launcher.close()
            db.close()
    return statistics.median(hand), statistics.median(launched)


RAY_FIRST_LINE = """import os, sys, time
open(sys.argv[1] + os.environ["P2PDATA_WORKER_INDEX"], "w").write(repr(time.time()))
"""
# The same two-worker Ray Train job by hand: each worker's first line writes its timestamp.
RAY_BY_HAND = """import sys, ray
from ray.train import RunConfig, ScalingConfig
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
def loop(config):
    import time, ray.train
    rank = ray.train.get_context().get_world_rank()
    open(config["stamp"] + str(rank), "w").write(repr(time.time()))
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
DataParallelTrainer(loop, train_loop_config={"stamp": sys.argv[2]},
                    scaling_config=ScalingConfig(num_workers=2),
                    run_config=RunConfig(storage_path=sys.argv[3])).fit()
"""


async def ray_started(stamp: Path, start: float) -> float:
    """Seconds from `start` until both workers wrote their first line."""
    return max([await wait_for(Path(f"{stamp}{i}"), timeout=120) for i in range(2)]) - start


async def bench_ray(repeats: int) -> tuple[float, float]:
    from p2pdata.training.ray_local import local_ray_cluster

    with tempfile.TemporaryDirectory() as tmp, local_ray_cluster() as cluster, \
            cluster.netns.entered():
        base = Path(tmp)
        (base / "first_line.py").write_text(RAY_FIRST_LINE)
        (base / "by_hand.py").write_text(RAY_BY_HAND)
        spec = JobSpec.from_dict({
            "name": "bench-ray", "engine": "ray", "workers": 2, "trigger": {"dataset": "bench*"},
            "entry": {"script": str(base / "first_line.py"), "args": [str(base / "launch-")]},
            "env": {"PYTHONPATH": os.pathsep.join(sys.path)}})
        manifest = Manifest(name="bench-data", version="1", owner="bench", created=0,
                            format="parquet", files=(FileEntry("a.parquet", 1, b"\0" * 32),))
        db = open_db(base / "state.db")
        launcher = Launcher(db, base / "runs", poll_interval=0.05,
                            engines=EngineRegistry({"ray": {"address": cluster.address}}))
        await launcher.start()
        hand, launched = [], []
        try:
            for index in range(repeats):
                stamp, start = base / f"hand-{index}-", time.time()
                proc = subprocess.Popen([sys.executable, str(base / "by_hand.py"),
                                         cluster.address, str(stamp), str(base / "ray")])
                hand.append(await ray_started(stamp, start))
                if proc.wait(120) != 0:
                    raise RuntimeError("the Ray Train job by hand failed")
                for old in base.glob("launch-*"):
                    old.unlink()
                start = time.time()
                [run] = await launcher.trigger([spec], manifest, "file:///bench-data/1")
                launched.append(await ray_started(base / "launch-", start))
                run = await launcher.wait(run.id, timeout=120)
                if run.state is not RunState.SUCCEEDED:
                    raise RuntimeError(f"run {run.id} {run.state}: {run.reason}")
        finally:
            await launcher.close()
            db.close()
    return statistics.median(hand), statistics.median(launched)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--ray-repeats", type=int, default=3)
    args = parser.parse_args()
    hand, launched = asyncio.run(bench(args.repeats))
    overhead = max(0.0, launched - hand)
    print(f"by hand: first line after {hand * 1000:.1f} ms (median of {args.repeats})")
    print(f"through the launcher: first line after {launched * 1000:.1f} ms")
    print(f"RESULT launch_overhead value={overhead:.3f} target={TARGET_S:g} "
          f"ok={'yes' if overhead < TARGET_S else 'no'}")
    main_ray(args.ray_repeats)


def main_ray(repeats: int) -> None:
    from p2pdata.training.ray_local import unavailable

    if unavailable():
        print(f"launch_ray: skipped, a local Ray cluster {unavailable()}")
        return
    hand, launched = asyncio.run(bench_ray(repeats))
    overhead = max(0.0, launched - hand)
    print(f"Ray Train job by hand: both workers running after {hand:.2f} s (median of {repeats})")
    print(f"through the ray engine: both workers running after {launched:.2f} s")
    print(f"RESULT launch_ray value={overhead:.3f} target={TARGET_RAY_S:g} "
          f"ok={'yes' if overhead < TARGET_RAY_S else 'no'}")


if __name__ == "__main__":
    main()
