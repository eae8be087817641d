"""A leecher in its own process, so a test can SIGKILL it mid-download.

Usage: python -m tests.transfer.leecher_proc MANIFEST.pickle STAGING_DIR PEER_PORT
Prints `PROGRESS <done> <downloaded>` lines, then `DONE <downloaded>`.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
from pathlib import Path

from p2pdata.transfer import Progress, TransferSession, TransferSettings


async def main(manifest_file: str, staging: str, port: int) -> None:
    manifest = pickle.loads(Path(manifest_file).read_bytes())
    settings = TransferSettings(staging_dir=Path(staging), staging_budget=1 << 30,
                                resume_interval=0.5, progress_interval=0.1)
    async with TransferSession(settings) as session:
        job = await session.fetch(manifest, [("127.0.0.1", port)])

        def report(progress: Progress) -> None:
            print(f"PROGRESS {progress.done} {progress.downloaded}", flush=True)

        job.subscribe(report)
        async for _entry, _path in job.completed_files():
            pass
        print(f"DONE {job.progress().downloaded}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
