"""Publish hashing throughput against `sha256sum` on the same files, in the same run.

Usage: python bench/bench_publish.py [--size-mib 1024] [--files 20] [--dir DIR]
Both runs read from the page cache (the files were just written and are read
once before timing), so this compares hashing, not the disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from p2pdata.catalog.publish import hash_files

TARGET = 0.9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024, help="total data size")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the data")
    parser.add_argument("--repeat", type=int, default=3, help="best of N timings")
    args = parser.parse_args()
    if shutil.which("sha256sum") is None:
        raise SystemExit("sha256sum is not installed")

    root = Path(tempfile.mkdtemp(prefix="bench-publish-", dir=args.dir))
    try:
        per_file = args.size_mib * 1024 * 1024 // args.files
        chunk = os.urandom(1024 * 1024)
        paths = []
        for index in range(args.files):
            path = root / f"part-{index:03d}.bin"
            with path.open("wb") as handle:
                for _ in range(per_file // len(chunk)):
                    handle.write(chunk)
                handle.write(chunk[: per_file % len(chunk)])
            paths.append(path.name)
        total = per_file * args.files
        subprocess.run(["cat", *paths], cwd=root, stdout=subprocess.DEVNULL, check=True)

        def ours() -> float:
            start = time.perf_counter()
            hash_files(root, paths)
            return time.perf_counter() - start

        def reference() -> float:
            start = time.perf_counter()
            subprocess.run(["sha256sum", *paths], cwd=root, stdout=subprocess.DEVNULL,
                           check=True)
            return time.perf_counter() - start

        ours_s = min(ours() for _ in range(args.repeat))
        ref_s = min(reference() for _ in range(args.repeat))
    finally:
        shutil.rmtree(root)

    mib = total / 1024 / 1024
    print(f"data: {mib:.0f} MiB in {args.files} files, {os.cpu_count()} cores")
    print(f"p2pdata hash_files: {ours_s:.3f} s = {mib / ours_s:.0f} MiB/s")
    print(f"sha256sum:          {ref_s:.3f} s = {mib / ref_s:.0f} MiB/s")
    ratio = ref_s / ours_s  # ratio of throughputs
    print(f"RESULT publish_hash ratio={ratio:.2f} target={TARGET} "
          f"ok={'yes' if ratio >= TARGET else 'no'}")


if __name__ == "__main__":
    main()
