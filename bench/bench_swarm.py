"""Swarm benchmarks on loopback (issue 4).

1. One seed to one leecher against aiohttp serving the same files with
   sendfile to an aiohttp client, in the same run.
2. N = 1, 2, 3 seeds, each capped at the same upload rate C.

The dataset is 20 files plus one large file holding a third of the total
(1.5 GiB by default, as in the issue; pass --size-mib 48 for a quick run).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.transfer import TransferSession, TransferSettings, make_torrent

MIB = 1024 * 1024
LOCAL = "127.0.0.1"
# Issue 21's targets. One leecher is bound by one thread: with posix disk I/O, libtorrent's
# network thread receives, writes, reads back and hashes every piece (v2 hashing alone is
# 0.55 CPU-s per GiB); aiohttp's sendfile and client spend about 1.0 CPU-s per GiB together.
TARGET_ONE_SEED = 0.7
TARGET_SCALING = 0.9


def write_dataset(folder: Path, total: int) -> Manifest:
    big = total // 3
    small = (total - big) // 20
    sizes = {f"part-{i:02d}.bin": small for i in range(20)} | {"big.bin": big}
    entries = []
    block = os.urandom(MIB)
    for path, size in sizes.items():
        digest = hashlib.sha256()
        with (folder / path).open("wb") as handle:
            left = size
            while left:
                chunk = block[: min(left, MIB)]
                handle.write(chunk)
                digest.update(chunk)
                left -= len(chunk)
        entries.append(FileEntry(path, size, digest.digest()))
    manifest = Manifest(name="bench", version="1", owner="bench", created=0, format="files",
                        files=tuple(entries))
    return manifest.with_torrent(make_torrent(manifest.files, folder))


async def aiohttp_rate(manifest: Manifest, source: Path, target: Path) -> float:
    async def serve(request: web.Request) -> web.FileResponse:
        return web.FileResponse(source / request.match_info["path"])  # sendfile

    app = web.Application()
    app.router.add_get("/{path}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, LOCAL, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    target.mkdir()
    try:
        os.sync()  # every run starts with no writeback pending from the ones before
        start = time.monotonic()
        async with aiohttp.ClientSession() as client:
            for entry in manifest.files:
                async with client.get(f"http://{LOCAL}:{port}/{entry.path}") as response:
                    with (target / entry.path).open("wb") as out:
                        async for chunk in response.content.iter_chunked(MIB):
                            out.write(chunk)
        return manifest.total_size / (time.monotonic() - start)
    finally:
        await runner.cleanup()
        # Dirty pages of finished runs would be written back during later ones.
        shutil.rmtree(target, ignore_errors=True)


async def swarm_rate(manifest: Manifest, source: Path, work: Path, seeds: int,
                     upload_limit: int = 0) -> float:
    sessions = []
    try:
        for index in range(seeds):
            session = TransferSession(TransferSettings(work / f"seed{index}", 1 << 40))
            await session.start()
            sessions.append(session)
            await session.seed(manifest, source, upload_limit=upload_limit)
        leecher = TransferSession(TransferSettings(work / "leech", 1 << 40))
        await leecher.start()
        sessions.append(leecher)
        os.sync()
        start = time.monotonic()
        job = await leecher.fetch(manifest, [(LOCAL, s.listen_port) for s in sessions[:-1]])
        async for _entry, _path in job.completed_files():
            pass
        return manifest.total_size / (time.monotonic() - start)
    finally:
        for session in sessions:
            await session.close()
        shutil.rmtree(work, ignore_errors=True)


class BusiestThread:
    """This process's busiest thread over a run, in CPU-seconds, sampled from /proc.

    libtorrent's threads start and end inside a run, so each thread's cumulative CPU is
    read every 20 ms while it lives: its first reading to its last (at most an interval
    is lost at each end).
    """

    INTERVAL = 0.02

    def __init__(self) -> None:
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> BusiestThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return max((self._last[tid] - self._first[tid] for tid in self._last), default=0.0)

    def _sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(self.INTERVAL):
            for tid in os.listdir("/proc/self/task"):
                if int(tid) == threading.get_native_id():
                    continue
                try:
                    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # ended meanwhile
                used = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
                self._first.setdefault(tid, used)
                self._last[tid] = used


def cpu_seconds() -> float:
    """This process's CPU time: both ends of every transfer here run in it (and its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1536)
    parser.add_argument("--cap-mib", type=float, default=0,
                        help="per-seed upload cap C for the scaling run (default: size/8 per s,"
                        " at most 64 MiB/s)")
    args = parser.parse_args()
    total = args.size_mib * MIB
    # At most 64 MiB/s: 3*C must stay well below what one leecher takes in (it hashes
    # everything twice on a small machine), or the run measures the leecher, not scaling.
    cap = int(args.cap_mib * MIB) if args.cap_mib else max(MIB, min(total // 8, 64 * MIB))
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
        work = Path(tmp)
        source = work / "source"
        source.mkdir()
        manifest = write_dataset(source, total)
        # Unmeasured first pass: the first run to fill the page cache pays for memory
        # the VM has never touched (seen: 400 MiB/s, then about 1000 on later runs).
        await aiohttp_rate(manifest, source, work / "warmup")
        # Likewise for the swarm: the first libtorrent run in a process faults in its buffers
        # and write cache (seen: about 300 MiB/s, then 500-680 on later runs).
        await swarm_rate(manifest, source, work / "warmup-swarm", 1)
        gib = total / 2**30
        start = cpu_seconds()
        http = await aiohttp_rate(manifest, source, work / "http")
        http_cpu = (cpu_seconds() - start) / gib
        start = cpu_seconds()
        with BusiestThread() as busiest:
            swarm = await swarm_rate(manifest, source, work / "one", 1)
        swarm_cpu = (cpu_seconds() - start) / gib
        print(f"aiohttp {http / MIB:.0f} MiB/s, swarm one seed {swarm / MIB:.0f} MiB/s")
        cores = os.cpu_count() or 1
        print(f"CPU-seconds per GiB, sender and receiver together: aiohttp sendfile {http_cpu:.2f}, "
              f"libtorrent seed + leecher {swarm_cpu:.2f} (busy cores: aiohttp "
              f"{http_cpu * http / 2**30:.2f}, swarm {swarm_cpu * swarm / 2**30:.2f} of {cores})")
        # The most the swarm could reach on this machine if its CPU were the only limit: all
        # cores busy, or its busiest thread (the leecher's network thread) busy all the time.
        by_cores = cores / swarm_cpu * 2**30 / http
        by_thread = total / busiest.seconds / http if busiest.seconds else by_cores
        ceiling = min(by_cores, by_thread, 1.0)
        print(f"CPU ceiling of the ratio: {ceiling:.2f} (all {cores} cores: {by_cores:.2f}; the busiest "
              f"thread, {busiest.seconds / gib:.2f} CPU-s per GiB, {busiest.seconds * swarm / total:.0%} "
              f"busy, on one core: {by_thread:.2f})")
        ratio = swarm / http
        print(f"RESULT swarm_one_seed ratio={ratio:.2f} target={TARGET_ONE_SEED} "
              f"ok={'yes' if ratio >= TARGET_ONE_SEED else 'no'} ceiling={ceiling:.2f} "
              f"cpu_gib=aiohttp:{http_cpu:.2f}/swarm:{swarm_cpu:.2f}")
        worst = float("inf")
        for seeds in (1, 2, 3):
            rate = await swarm_rate(manifest, source, work / f"cap{seeds}", seeds, cap)
            print(f"{seeds} seeds capped at {cap / MIB:.1f} MiB/s each: {rate / MIB:.1f} MiB/s")
            worst = min(worst, rate / (seeds * cap))
        print(f"RESULT swarm_scaling ratio={worst:.2f} target={TARGET_SCALING} "
              f"ok={'yes' if worst >= TARGET_SCALING else 'no'}")


if __name__ == "__main__":
    asyncio.run(main())
