"""Run every benchmark under bench/ and keep a table of their RESULT lines.

    python bench/run_all.py [--quick] [--out DIR]

Writes <DIR, default bench/results>/<date>-<host>[-quick].md with the machine's
description and the noise measured at the start of the run, then compares each
figure with the last full table committed under bench/results/ and warns when
one is worse by more than the noise of either run. `--quick` (what CI runs) uses
small sizes and fails only when a benchmark does not print its RESULT lines:
figures from a shared machine are too noisy to fail a build on.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
# Each benchmark with the arguments of a quick run (CI-sized) and of a full run (the issues' sizes).
BENCHMARKS = {
    "bench_publish.py": (["--size-mib", "128", "--repeat", "2"], []),
    "bench_search.py": (["--manifests", "10000", "--queries", "200"], []),
    "bench_landing.py": (["--size-mib", "128", "--rounds", "1"], []),
    "bench_swarm.py": (["--size-mib", "96"], []),
    "bench_fetch.py": (["--size-mib", "96", "--rounds", "1"], []),
    "bench_launch.py": (["--repeats", "3", "--yarn-repeats", "1", "--ray-repeats", "1"], []),
}
# The 1M-manifest search is a run of its own (issue 21): full runs only.
FULL_ONLY = {"bench_search.py --manifests 1000000": ["--manifests", "1000000", "--queries", "300"]}
QUICK_TIMEOUT = 600
# The first five columns; later tables add the floor and CPU-seconds columns after them.
_ROW = re.compile(r"^\| (\S+) \| ([-\d.]+) \| ([-\d.]*) \| (\w+) \| ([\d.]+) % \|")
# Below this the noise figure itself is noise: a few per cent always wobble.
MIN_NOISE = 0.05


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return (f"{platform.node()}: {platform.system()} {platform.release()}, {platform.machine()}, "
            f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}")


def measure_noise(rounds: int = 7) -> float:
    """Relative spread of one fixed CPU task timed a few times: how much this machine wobbles now."""
    data = os.urandom(32 * 2**20)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        hashlib.sha256(data).digest()
        times.append(time.perf_counter() - start)
    times.sort()
    return (times[-2] - times[0]) / times[0]  # second worst: one hiccup is not the machine


def parse_result(line: str) -> tuple[str, dict[str, str]]:
    parts = line.split()
    return parts[1], dict(part.split("=", 1) for part in parts[2:] if "=" in part)


def higher_is_better(figure: float, target: float, ok: bool) -> bool:
    """From the row itself: a met target the figure exceeds (or a missed one it is under)."""
    return (figure >= target) == ok


def last_full_table(exclude: Path | None = None) -> Path | None:
    """The newest full (not quick) table committed under bench/results/."""
    # Paths relative to the repository root, as Path(BENCH.parent, line) below expects them.
    listed = subprocess.run(["git", "ls-files", str(RESULTS)], cwd=BENCH.parent, capture_output=True,
                            text=True)
    tables = sorted(Path(BENCH.parent, line) for line in listed.stdout.splitlines()
                    if line.endswith(".md") and not line.endswith("-quick.md"))
    tables = [table for table in tables if table != exclude and table.exists()]
    return tables[-1] if tables else None


def read_table(path: Path) -> dict[str, tuple[float, float]]:
    """name -> (figure, noise) of a table this script wrote."""
    found = {}
    for line in path.read_text().splitlines():
        if match := _ROW.match(line):
            found[match[1]] = (float(match[2]), float(match[5]) / 100)
    return found


def regressions(rows: list[str], noise: float, previous: dict[str, tuple[float, float]]) -> list[str]:
    """Warnings for figures worse than the last full table's by more than either run's noise."""
    warnings = []
    for row in rows:
        name, parts = parse_result(row)
        if name not in previous or "target" not in parts:
            continue
        try:
            figure, target = float(parts.get("ratio", parts.get("value", ""))), float(parts["target"])
        except ValueError:
            continue
        before, noise_before = previous[name]
        if before == 0:
            continue
        change = (figure - before) / abs(before)
        worse = -change if higher_is_better(figure, target, parts.get("ok") == "yes") else change
        allowed = max(noise, noise_before, MIN_NOISE)
        if worse > allowed:
            warnings.append(f"WARNING: {name} = {figure:g}, {worse:.0%} worse than {before:g} in the"
                            f" last full table (noise {allowed:.0%})")
    return warnings


def run(script: str, extra: list[str], quick: bool) -> list[str]:
    """The benchmark's RESULT lines, or one saying it failed."""
    print(f"==> {script} {' '.join(extra)}", flush=True)
    try:
        process = subprocess.run([sys.executable, str(BENCH / script), *extra], capture_output=True,
                                 text=True, timeout=QUICK_TIMEOUT if quick else None)
    except subprocess.TimeoutExpired:
        return [f"RESULT {script} failed timeout={QUICK_TIMEOUT}s"]
    print(process.stdout[-3000:], process.stderr[-2000:], sep="\n", flush=True)
    results = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not results:
        return [*results, f"RESULT {script} failed exit={process.returncode}"]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the table")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark scripts to run")
    args = parser.parse_args()
    noise = measure_noise()
    print(f"machine noise now: ±{noise:.0%} (one fixed SHA-256 task timed 7 times)", flush=True)
    jobs = [(script, quick if args.quick else full) for script, (quick, full) in BENCHMARKS.items()]
    if not args.quick:
        jobs += [(label.split()[0], extra) for label, extra in FULL_ONLY.items()]
    if args.only is not None:
        jobs = [(script, extra) for script, extra in jobs if script in args.only]
    rows: list[str] = []
    for script, extra in jobs:
        rows += run(script, extra, args.quick)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    out = args.out / f"{stamp}-{platform.node()}{'-quick' if args.quick else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    # floor / cpu_gib: where a target is out of reach on this machine, the figure the CPU
    # allows and the CPU-seconds per GiB that prove it (printed by the benchmark itself).
    table = ["| benchmark | figure | target | ok | noise | CPU-bound limit | CPU-s per GiB |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        name, parts = parse_result(row)
        figure = parts.get("ratio", parts.get("value", "?"))
        limit = parts.get("floor", parts.get("ceiling", ""))
        table.append(f"| {name} | {figure} | {parts.get('target', '')} | {parts.get('ok', 'no')} |"
                     f" {noise * 100:.0f} % | {limit} | {parts.get('cpu_gib', '')} |")
    kind = "quick run (small sizes)" if args.quick else "full run"
    out.write_text(f"# p2pdata benchmarks, {stamp}, {kind}\n\n{machine()}\n\n"
                   f"Noise at the start: ±{noise:.0%}.\n\n" + "\n".join(table) + "\n")
    print("\n".join(table))
    print(f"written to {out}")
    previous = last_full_table(exclude=out)
    if previous is None:
        print("no full table committed under bench/results/ yet: nothing to compare with")
    else:
        print(f"compared with {previous.relative_to(BENCH.parent)}"
              + (" (quick sizes against full ones: ratios compare, absolute figures less so)"
                 if args.quick else ""))
        print("\n".join(regressions(rows, noise, read_table(previous))) or "no figure worse than the noise")
    failed = [row for row in rows if " failed " in row]
    if args.quick:
        return 1 if failed else 0
    return 0 if all("ok=yes" in row for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
