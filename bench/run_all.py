"""Run every benchmark under bench/ and keep a table of their RESULT lines.

    python bench/run_all.py [--quick]

Writes bench/results/<date>-<host>.md with the machine's description, so a
regression shows as a changed line between two tables.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
# Each benchmark with the arguments of a quick run (CI-sized) and of a full run (the issues' sizes).
BENCHMARKS = {
    "bench_publish.py": (["--size-mib", "128"], []),
    "bench_search.py": (["--manifests", "10000"], []),
    "bench_landing.py": (["--size-mib", "128", "--rounds", "1"], []),
    "bench_swarm.py": (["--size-mib", "96"], []),
    "bench_fetch.py": (["--size-mib", "96"], []),
    "bench_launch.py": ([], []),
}


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return (f"{platform.node()}: {platform.system()} {platform.release()}, {platform.machine()}, "
            f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    rows = []
    for script, (quick, full) in BENCHMARKS.items():
        print(f"==> {script}", flush=True)
        process = subprocess.run([sys.executable, str(BENCH / script), *(quick if args.quick else full)],
                                 capture_output=True, text=True)
        print(process.stdout[-3000:], process.stderr[-2000:], sep="\n", flush=True)
        results = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
        rows += results or [f"RESULT {script} failed exit={process.returncode}"]
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    out = BENCH / "results" / f"{stamp}-{platform.node()}{'-quick' if args.quick else ''}.md"
    out.parent.mkdir(exist_ok=True)
    table = ["| benchmark | figure | target | ok |", "| --- | --- | --- | --- |"]
    for row in rows:
        parts = dict(part.split("=", 1) for part in row.split()[2:] if "=" in part)
        figure = parts.get("ratio", parts.get("value", "?"))
        table.append(f"| {row.split()[1]} | {figure} | {parts.get('target', '')} | {parts.get('ok', 'no')} |")
    out.write_text(f"# p2pdata benchmarks, {stamp}\n\n{machine()}\n\n" + "\n".join(table) + "\n")
    print("\n".join(table))
    print(f"written to {out}")
    return 0 if all("ok=yes" in row for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
