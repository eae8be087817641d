"""Crash and resume: a leecher process SIGKILLed mid-download restarts from disk."""

from __future__ import annotations

import asyncio
import pickle
import sys
from pathlib import Path

from tests.plugins.transfer import MIB, sha256_file

ROOT = Path(__file__).resolve().parents[2]
UPLOAD_CAP = 4 * MIB  # bytes/s: slow enough to kill the leecher mid-download


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.transfer.leecher_proc", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE)


async def _read_until(proc: asyncio.subprocess.Process, stop, timeout: float) -> str:
    async def scan() -> str:
        assert proc.stdout is not None
        while line := (await proc.stdout.readline()).decode():
            if stop(line):
                return line
        raise AssertionError(f"leecher exited ({await proc.wait()}) before the expected line")

    return await asyncio.wait_for(scan(), timeout)


async def test_sigkill_mid_download_then_restart_redownloads_little(
        dataset, transfer_session, tmp_path) -> None:
    manifest, source = dataset({"a.bin": 12 * MIB, "b.bin": 4 * MIB})
    seeder = await transfer_session("seed")
    await seeder.seed(manifest, source, upload_limit=UPLOAD_CAP)
    manifest_file = tmp_path / "manifest.pickle"
    manifest_file.write_bytes(pickle.dumps(manifest))
    staging = tmp_path / "leech-staging"
    args = (str(manifest_file), str(staging), str(seeder.listen_port))

    proc = await _spawn(*args)
    try:
        line = await _read_until(
            proc, lambda s: s.startswith("PROGRESS") and int(s.split()[1]) >= 6 * MIB, 60)
        proc.kill()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    done_at_kill = int(line.split()[1])

    proc = await _spawn(*args)
    try:
        line = await _read_until(proc, lambda s: s.startswith("DONE"), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    redownloaded = int(line.split()[1])
    # What was verified before the kill is on disk (or in the OS page cache);
    # only pieces in flight and the disk write queue may come again: well under
    # a second of transfer at the seed's cap. A restart from scratch would be 16 MiB.
    assert redownloaded <= manifest.total_size - done_at_kill + UPLOAD_CAP, \
        f"re-downloaded {redownloaded / MIB:.1f} MiB after {done_at_kill / MIB:.1f} MiB were done"
    folder = staging / manifest.torrent.info_hash.hex()
    for entry in manifest.files:
        assert sha256_file(folder / entry.path) == entry.sha256
