"""Launcher overhead: from a dataset landed to the training script's first line running.

Usage: python bench/bench_launch.py [--repeats 7] [--engine local,yarn] [--yarn-json FILE]
"Landed" is the moment `Launcher.trigger` is called with the dataset's manifest; the time
runs until the worker's first line writes a timestamp.

- local: one worker; the same script started by hand (`subprocess.Popen`) is the baseline.
- yarn: two workers on a real local YARN (started here, or the running one described by
  --yarn-json), until every worker's first line ran; the baseline is the same application
  (an application master and two containers running the script) submitted directly with
  Skein through the same driver. The overhead is the difference of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.db import open_db
from p2pdata.training import EngineRegistry, JobSpec, Launcher, RunState

TARGET_S = 1.0
TARGET_YARN_S = 2.0
BENCH_MANIFEST = Manifest(name="bench-data", version="1", owner="bench", created=0,
                          format="parquet", files=(FileEntry("a.parquet", 1, b"\0" * 32),))
FIRST_LINE = """import sys, time; open(sys.argv[1], "w").write(repr(time.time()))
"""


async def wait_for(path: Path, timeout: float = 120.0) -> float:
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
    start = time.time()
    [run] = await launcher.trigger([spec], BENCH_MANIFEST, "file:///bench-data/1")
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


@contextlib.contextmanager
def yarn_cluster(existing: str | None, base: Path) -> Iterator[dict[str, Any]]:
    """A local HDFS + YARN (the project's launcher), or the running one described by the
    JSON that `python -m p2pdata.hdfs.localcluster run --yarn --json` prints."""
    if existing:
        yield json.loads(Path(existing).read_text())
        return
    from p2pdata.hdfs.localcluster import LocalHdfs

    with LocalHdfs(base / "hadoop", yarn=True, datanodes=1, sps=False) as cluster:
        yield cluster.describe()


async def yarn_through_engine(launcher: Launcher, script: Path, stamps: Path) -> float:
    spec = JobSpec.from_dict({
        "name": "bench-yarn", "engine": "yarn", "framework": "tensorflow", "workers": 2,
        "trigger": {"dataset": "bench*"}, "resources": {"memory": 256, "vcores": 1},
        "entry": {"script": str(script), "args": [str(stamps)]}})
    stamps.mkdir()
    start = time.time()
    [run] = await launcher.trigger([spec], BENCH_MANIFEST, "file:///bench-data/1")
    first = max([await wait_for(stamps / f"worker-{index}") for index in range(2)])
    run = await launcher.wait(run.id, timeout=120)
    if run.state is not RunState.SUCCEEDED:
        raise RuntimeError(f"run {run.id} {run.state}: {run.reason}")
    return first - start


async def yarn_directly(engines: EngineRegistry, script: Path, stamps: Path) -> float:
    """The same two workers as one Skein application, without p2pdata in between."""
    import skein

    engine: Any = engines.get("yarn")
    client = await asyncio.to_thread(engine.client)
    stamps.mkdir()
    service = skein.Service(
        instances=2, resources=skein.Resources(memory=256, vcores=1), max_restarts=0,
        script=(f"P2PDATA_WORKER_INDEX=${{SKEIN_CONTAINER_ID##*_}} exec {sys.executable} "
                f"{script} {stamps}"))
    spec = skein.ApplicationSpec(
        name="bench-direct", queue=engine.queue, max_attempts=1,
        master=skein.Master(resources=skein.Resources(memory=engine.master_memory, vcores=1)),
        services={"worker": service})
    start = time.time()
    app_id = await asyncio.to_thread(client.submit, spec)
    first = max([await wait_for(stamps / f"worker-{index}") for index in range(2)])
    with contextlib.suppress(Exception):
        await asyncio.to_thread(client.kill_application, app_id)
    return first - start


YARN_FIRST_LINE = """import os, sys, time
path = os.path.join(sys.argv[1], "worker-" + os.environ["P2PDATA_WORKER_INDEX"])
open(path, "w").write(repr(time.time()))
"""


async def bench_yarn(repeats: int, existing: str | None) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        script = base / "first_line.py"
        script.write_text(YARN_FIRST_LINE)
        with yarn_cluster(existing, base) as cluster:
            engines = EngineRegistry({"yarn": {
                "hadoop_conf_dir": cluster["conf_dir"], "classpath": cluster["classpath"],
                "state_dir": str(base / "yarn"), "master_memory": 256}})
            db = open_db(base / "state.db")
            launcher = Launcher(db, base / "runs", poll_interval=0.05, engines=engines)
            await launcher.start()
            direct, launched = [], []
            try:
                await yarn_directly(engines, script, base / "warm-up")  # driver, HDFS, JIT
                for index in range(repeats):
                    direct.append(await yarn_directly(engines, script, base / f"direct-{index}"))
                    launched.append(await yarn_through_engine(launcher, script,
                                                              base / f"engine-{index}"))
            finally:
                await launcher.close()
                await engines.close()
                db.close()
    return statistics.median(direct), statistics.median(launched)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--engine", default="local,yarn",
                        help="comma-separated engines to measure (local, yarn)")
    parser.add_argument("--yarn-repeats", type=int, default=3,
                        help="repeats for yarn (each is a YARN application: seconds apiece)")
    parser.add_argument("--yarn-json", help="use this running cluster (JSON as the local "
                        "Hadoop launcher prints it) instead of starting one")
    args = parser.parse_args()
    engines = args.engine.split(",")
    if "local" in engines:
        hand, launched = asyncio.run(bench(args.repeats))
        overhead = max(0.0, launched - hand)
        print(f"by hand: first line after {hand * 1000:.1f} ms (median of {args.repeats})")
        print(f"through the launcher: first line after {launched * 1000:.1f} ms")
        print(f"RESULT launch_overhead value={overhead:.3f} target={TARGET_S:g} "
              f"ok={'yes' if overhead < TARGET_S else 'no'}")
    if "yarn" in engines:
        direct, launched = asyncio.run(bench_yarn(args.yarn_repeats, args.yarn_json))
        overhead = max(0.0, launched - direct)
        print(f"yarn, Skein directly: every worker's first line after {direct:.2f} s "
              f"(median of {args.yarn_repeats})")
        print(f"yarn, through the engine: every worker's first line after {launched:.2f} s")
        print(f"RESULT launch_yarn value={overhead:.3f} target={TARGET_YARN_S:g} "
              f"ok={'yes' if overhead < TARGET_YARN_S else 'no'}")


if __name__ == "__main__":
    main()
