"""Launcher overhead: from a dataset landed to the training script's first line running.

Usage: python bench/bench_launch.py [--repeats 7]
"Landed" is the moment `Launcher.trigger` is called with the dataset's manifest; the time
runs until the worker's first line writes a timestamp. The same script started by hand
(`subprocess.Popen`) is the baseline; the overhead is the difference of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.db import open_db
from p2pdata.training import JobSpec, Launcher, RunState

TARGET_S = 1.0
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    hand, launched = asyncio.run(bench(args.repeats))
    overhead = max(0.0, launched - hand)
    print(f"by hand: first line after {hand * 1000:.1f} ms (median of {args.repeats})")
    print(f"through the launcher: first line after {launched * 1000:.1f} ms")
    print(f"RESULT launch_overhead value={overhead:.3f} target={TARGET_S:g} "
          f"ok={'yes' if overhead < TARGET_S else 'no'}")


if __name__ == "__main__":
    main()
