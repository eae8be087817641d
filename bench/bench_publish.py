"""The whole publish against one SHA-256 pass of the same bytes on all cores, in the same run.

Usage: python bench/bench_publish.py [--size-mib 1024] [--files 20] [--dir DIR] [--repeat 3]

Publish here is what the daemon does before seeding: walk, SHA-256 and v2
hashes in one read, format and schema, the torrent, the manifest signed into
the local catalog. The reference is hashlib SHA-256 over the same files in one
thread per core. Publish computes two hashes per byte (whole file and v2
blocks) from one read, so about 0.5 is the floor with a warm page cache.
Both sides read from the page cache (the files are read once before timing).
`sha256sum` is printed for scale, not as the target.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from p2pdata.catalog import Identity, LocalCatalog, scan_for_publish
from p2pdata.catalog.publish import HASH_CHUNK
from p2pdata.db import open_db
from p2pdata.transfer import choose_piece_size, make_torrent

TARGET = 0.45


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sha256_all(root: Path, paths: list[str]) -> None:
    def one(path: str) -> bytes:
        digest = hashlib.sha256()
        buffer = bytearray(HASH_CHUNK)
        view = memoryview(buffer)
        with open(root / path, "rb", buffering=0) as handle:
            while count := handle.readinto(buffer):
                digest.update(view[:count])
        return digest.digest()

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(one, paths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="total data size")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the data")
    parser.add_argument("--repeat", type=int, default=3, help="best of N timings")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-publish-", dir=args.dir))
    try:
        data = root / "data"
        data.mkdir()
        per_file = args.size_mib * 1024 * 1024 // args.files
        chunk = os.urandom(1024 * 1024)
        paths = []
        for index in range(args.files):
            path = data / f"part-{index:03d}.bin"
            with path.open("wb") as handle:
                for _ in range(per_file // len(chunk)):
                    handle.write(chunk)
                handle.write(chunk[: per_file % len(chunk)])
            paths.append(path.name)
        total = per_file * args.files
        subprocess.run(["cat", *paths], cwd=data, stdout=subprocess.DEVNULL, check=True)
        conn = open_db(root / "state.db")
        identity = Identity.generate()
        catalog = LocalCatalog(conn, identity)

        def publish(round_: int) -> tuple[float, float]:
            start, cpu = time.perf_counter(), cpu_seconds()
            scan = scan_for_publish(data, name="bench", version=str(round_), owner=identity.cluster_id,
                                    now=int(time.time()), piece_size_for=choose_piece_size)
            torrent = make_torrent(scan.manifest.files, data, v2=scan.v2)
            catalog.add(scan.manifest.with_torrent(torrent))
            return time.perf_counter() - start, cpu_seconds() - cpu

        def reference() -> tuple[float, float]:
            start, cpu = time.perf_counter(), cpu_seconds()
            sha256_all(data, paths)
            return time.perf_counter() - start, cpu_seconds() - cpu

        def sha256sum() -> float:
            start = time.perf_counter()
            subprocess.run(["sha256sum", *paths], cwd=data, stdout=subprocess.DEVNULL, check=True)
            return time.perf_counter() - start

        # Interleaved, so a burst of load from elsewhere hits both sides alike.
        ours, ref = [], []
        for round_ in range(args.repeat):
            ours.append(publish(round_))
            ref.append(reference())
        publish_s, publish_cpu = min(ours)
        ref_s, ref_cpu = min(ref)
        tool_s = sha256sum() if shutil.which("sha256sum") else None
        conn.close()
    finally:
        shutil.rmtree(root)

    gib = total / 2**30
    mib = total / 2**20
    print(f"data: {mib:.0f} MiB in {args.files} files, {os.cpu_count()} cores, best of {args.repeat}")
    print(f"publish (one read, SHA-256 + v2): {publish_s:.3f} s = {mib / publish_s:.0f} MiB/s, "
          f"{publish_cpu / gib:.2f} CPU-s/GiB")
    print(f"hashlib SHA-256, all cores:       {ref_s:.3f} s = {mib / ref_s:.0f} MiB/s, "
          f"{ref_cpu / gib:.2f} CPU-s/GiB")
    if tool_s is not None:
        print(f"sha256sum (one core, for scale):  {tool_s:.3f} s = {mib / tool_s:.0f} MiB/s")
    ratio = ref_s / publish_s  # ratio of throughputs
    print(f"RESULT publish ratio={ratio:.2f} target={TARGET} "
          f"ok={'yes' if ratio >= TARGET else 'no'}")


if __name__ == "__main__":
    main()
