"""Landing into the real local HDFS vs a plain two-step WebHDFS put of the same files.

    python bench/bench_landing.py [--size-mib 1024]

Half the data is 20 equal files, the other half one big file (512 MiB at the default
size). The last line is ``RESULT landing ratio=<landing/put> target=1.1 ok=yes|no``:
hashing and verifying must overlap the writes.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.hdfs import WebHdfsClient, open_store
from p2pdata.hdfs.localcluster import LocalHdfs

TARGET = 1.1
CHUNK = 1 << 20


def make_files(directory: Path, size: int) -> list[tuple[str, Path, int]]:
    small = size // 2 // 20
    sizes = [small] * 20 + [size - 20 * small]
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


async def plain_put(client: WebHdfsClient, files: list[tuple[str, Path, int]], root: str,
                    concurrency: int) -> None:
    """The baseline: stream each file with a two-step CREATE, no hashing."""
    slots = asyncio.Semaphore(concurrency)

    async def chunks(path: Path) -> AsyncIterator[bytes]:
        with open(path, "rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk

    async def one(rel: str, path: Path) -> None:
        async with slots:
            await client.create(f"{root}/{rel}", chunks(path), overwrite=True)

    await client.mkdirs(root)
    await asyncio.gather(*(one(rel, path) for rel, path, _ in files))


async def run(cluster: LocalHdfs, files: list[tuple[str, Path, int]], rounds: int,
              concurrency: int) -> float:
    options = dict(webhdfs_url=cluster.webhdfs_url, user=getpass.getuser(),
                   storagepolicy_command=cluster.storagepolicy_command,
                   concurrency=concurrency)
    put_times, land_times = [], []
    async with WebHdfsClient(cluster.webhdfs_url, user=getpass.getuser()) as client:
        for i in range(rounds):
            # Alternate the order so neither side always gets the warmer cache.
            for which in (("put", "land") if i % 2 == 0 else ("land", "put")):
                start = time.perf_counter()
                if which == "put":
                    await plain_put(client, files, f"/plain/{i}", concurrency)
                    put_times.append(time.perf_counter() - start)
                else:
                    manifest = manifest_of(files, str(i))
                    start = time.perf_counter()

                    async def source(m: Manifest = manifest) -> AsyncIterator[
                            tuple[FileEntry, Path]]:
                        for entry, (_, path, _) in zip(m.files, files, strict=True):
                            yield entry, path

                    async with open_store("hdfs", "/landed", **options) as store:
                        await store.land(manifest, source())
                    land_times.append(time.perf_counter() - start)
            await client.delete("/plain", recursive=True)
            await client.delete("/landed", recursive=True)
    total = sum(size for _, _, size in files) / 2**20
    put, land = min(put_times), min(land_times)
    print(f"plain put  {put:6.2f} s  {total / put:7.1f} MiB/s")
    print(f"landing    {land:6.2f} s  {total / land:7.1f} MiB/s")
    return land / put


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="total data (MiB)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-landing-") as tmp:
        files = make_files(Path(tmp), args.size_mib << 20)
        with LocalHdfs(Path(tmp) / "hdfs") as cluster:
            ratio = asyncio.run(run(cluster, files, args.rounds, args.concurrency))
    ok = "yes" if ratio <= TARGET else "no"
    print(f"RESULT landing ratio={ratio:.3f} target={TARGET} ok={ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
