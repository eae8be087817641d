"""Landing into the real local Hadoop 3 HDFS against the Java client and a plain WebHDFS put.

    python bench/bench_landing.py [--size-mib 1024] [--rounds 3]

The data is 8 equal files. Five ways write the same files into the same cluster:
``FsShell -put`` (what ``hdfs dfs -put`` runs, in its own JVM), p2pdata's landing over the
native protocol (hdfs-native), a plain two-step WebHDFS put, and p2pdata's landing over
WebHDFS, with its SHA-256 check (files a cluster held already, ``fetch --verify sha256``)
and without (as a fetch lands files whose v2 piece hashes passed). Each is timed (best of
the rounds) and charged the CPU seconds of the client and of the HDFS JVM. The last lines are

    RESULT landing_native ratio=<native landing throughput / FsShell's> target=0.9 ok=...
    RESULT landing ratio=<WebHDFS landing time / plain WebHDFS put time> target=1.05 ok=...
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.hdfs import WebHdfsClient, open_store
from p2pdata.hdfs.localcluster import LocalHdfs

NATIVE_TARGET = 0.9
WEBHDFS_TARGET = 1.05
CHUNK = 1 << 20
FILES = 8


def make_files(directory: Path, size: int) -> list[tuple[str, Path, int]]:
    sizes = [size // FILES] * (FILES - 1) + [size - (FILES - 1) * (size // FILES)]
    block = os.urandom(CHUNK)
    files = []
    for i, n in enumerate(sizes):
        path = directory / f"part-{i:02d}.bin"
        with open(path, "wb") as out:
            left = n
            while left:
                out.write(block[: min(left, CHUNK)])
                left -= min(left, CHUNK)
        files.append((f"part-{i:02d}.bin", path, n))
    return files


def manifest_of(files: list[tuple[str, Path, int]], version: str) -> Manifest:
    entries = []
    for rel, path, size in files:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        entries.append(FileEntry(rel, size, digest.digest()))
    return Manifest("bench", version, "bench", 0, "files", tuple(entries))


async def put_files(files: list[tuple[str, Path, int]], root: str, concurrency: int,
                    write: Callable[[str, AsyncIterator[bytes]], Awaitable[object]]) -> None:
    """The baseline: stream each file to ``write(path, chunks)``, so many at once, no hashing."""
    slots = asyncio.Semaphore(concurrency)

    async def chunks(path: Path) -> AsyncIterator[bytes]:
        with open(path, "rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk

    async def one(rel: str, path: Path) -> None:
        async with slots:
            await write(f"{root}/{rel}", chunks(path))

    await asyncio.gather(*(one(rel, path) for rel, path, _ in files))


async def plain_put(client: WebHdfsClient, files: list[tuple[str, Path, int]], root: str,
                    concurrency: int) -> None:
    """A plain WebHDFS put: a two-step CREATE per file."""
    await client.mkdirs(root)
    await put_files(files, root, concurrency,
                    lambda path, chunks: client.create(path, chunks, overwrite=True))


@dataclass
class Measure:
    seconds: float
    cpu: float  # client + HDFS JVM CPU seconds


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def _cpu_jvm(cluster: LocalHdfs) -> float:
    times = psutil.Process(cluster.pids[0]).cpu_times()
    return times.user + times.system


async def measure(cluster: LocalHdfs, step: Callable[[], Awaitable[object]]) -> Measure:
    # No dirty pages of the step before: the kernel's write-back would land in this one.
    os.sync()
    cpu = _cpu_self() + _cpu_jvm(cluster)
    start = time.perf_counter()
    await step()
    seconds = time.perf_counter() - start
    return Measure(seconds, _cpu_self() + _cpu_jvm(cluster) - cpu)


def sha256_cpu(files: list[tuple[str, Path, int]]) -> float:
    """CPU-seconds of one SHA-256 pass over the files (read from the page cache)."""
    start = _cpu_self()
    for _, path, _ in files:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return _cpu_self() - start


def fsshell_put(cluster: LocalHdfs, files: list[tuple[str, Path, int]], root: str) -> None:
    subprocess.run([*cluster.fsshell_command, "-mkdir", "-p", root], check=True)
    subprocess.run([*cluster.fsshell_command, "-put", "-f", *(str(p) for _, p, _ in files),
                    root], check=True)


async def run(cluster: LocalHdfs, files: list[tuple[str, Path, int]], rounds: int,
              concurrency: int) -> dict[str, Measure]:
    user = getpass.getuser()
    options = dict(webhdfs_url=cluster.webhdfs_url, user=user, concurrency=concurrency,
                   namenode=cluster.namenode_address)
    best: dict[str, Measure] = {}
    async with WebHdfsClient(cluster.webhdfs_url, user=user) as client:
        for i in range(rounds):
            manifests = {way: manifest_of(files, f"{way}-{i}")
                         for way in ("native", "webhdfs", "webhdfs_v2")}

            async def land(way: str, manifests: dict[str, Manifest] = manifests) -> None:
                manifest = manifests[way]

                async def source() -> AsyncIterator[tuple[FileEntry, Path]]:
                    for entry, (_, path, _) in zip(manifest.files, files, strict=True):
                        yield entry, path

                async with open_store("hdfs", "/landed", **options,
                                      native=way == "native") as store:
                    await store.land(manifest, source(), sha256=way != "webhdfs_v2")

            ways: dict[str, Callable[[], Awaitable[object]]] = {
                "fsshell": lambda i=i: asyncio.to_thread(fsshell_put, cluster, files,
                                                         f"/shell/{i}"),
                "native": lambda: land("native"),
                "put": lambda i=i: plain_put(client, files, f"/plain/{i}", concurrency),
                "webhdfs": lambda: land("webhdfs"),
                "webhdfs_v2": lambda: land("webhdfs_v2"),
            }
            # Alternate the order so no way always gets the warmer cache.
            for way in (list(ways) if i % 2 == 0 else list(reversed(ways))):
                result = await measure(cluster, ways[way])
                if way not in best or result.seconds < best[way].seconds:
                    best[way] = result
                # Gone once measured: past about 11 GiB of memory in use (page cache
                # included) this VM's kernel gets new pages up to 8 times slower.
                for top in ("/plain", "/landed", "/shell"):
                    await client.delete(top, recursive=True)
    total = sum(size for _, _, size in files)
    names = {"fsshell": "FsShell -put (JVM client)", "native": "landing, native",
             "put": "plain WebHDFS put", "webhdfs": "landing, WebHDFS",
             "webhdfs_v2": "  the same, no SHA-256"}
    for way, result in best.items():
        print(f"{names[way]:26} {result.seconds:6.2f} s {total / 2**20 / result.seconds:7.1f} "
              f"MiB/s  {result.cpu / (total / 2**30):6.1f} CPU-s/GiB")
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="total data (MiB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-landing-") as tmp:
        files = make_files(Path(tmp), args.size_mib << 20)
        with LocalHdfs(Path(tmp) / "hdfs") as cluster:
            best = asyncio.run(run(cluster, files, args.rounds, args.concurrency))
        sha_cpu = sha256_cpu(files)
    native = best["fsshell"].seconds / best["native"].seconds  # throughput ratio
    webhdfs = best["webhdfs"].seconds / best["put"].seconds  # time ratio
    # Landing does the put's work plus one SHA-256 per byte (what it verifies): on a machine
    # the put already keeps busy, that extra CPU is what the time ratio cannot go below.
    gib = sum(size for _, _, size in files) / 2**30
    cores = os.cpu_count() or 1
    put = best["put"]
    floor = max(1.0, (put.cpu + sha_cpu) / cores / put.seconds)
    print(f"SHA-256 (hashlib, one pass): {sha_cpu / gib:.2f} CPU-s/GiB; WebHDFS landing floor on "
          f"{cores} cores: (put {put.cpu / gib:.2f} + SHA-256 {sha_cpu / gib:.2f} CPU-s/GiB) / "
          f"{cores} cores = {floor:.2f} x the put's time (the put keeps "
          f"{put.cpu / put.seconds:.2f} cores busy)")
    print(f"WebHDFS landing as a fetch lands (v2-verified files, no second SHA-256): "
          f"{best['webhdfs_v2'].seconds / put.seconds:.3f} x the put's time")
    print(f"RESULT landing_native ratio={native:.3f} target={NATIVE_TARGET} "
          f"ok={'yes' if native >= NATIVE_TARGET else 'no'}")
    print(f"RESULT landing ratio={webhdfs:.3f} target={WEBHDFS_TARGET} "
          f"ok={'yes' if webhdfs <= WEBHDFS_TARGET else 'no'} floor={floor:.2f} "
          f"cpu_gib=put:{put.cpu / gib:.2f}+sha256:{sha_cpu / gib:.2f}/landing:"
          f"{best['webhdfs'].cpu / gib:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
