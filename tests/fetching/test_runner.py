"""The fetch runner with stand-ins for its collaborators: whatever goes wrong, the job ends
with an error the user can read, and nothing is left transferring."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from p2pdata.catalog import Manifest, scan_dataset
from p2pdata.db import open_db
from p2pdata.events import EventHub
from p2pdata.fetching import Fetcher, FetchJobTable, FetchState
from p2pdata.hdfs import open_store
from p2pdata.peers import PeerDirectory
from p2pdata.transfer import Staging, make_torrent


class OneDataset:
    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    def resolve(self, ref: str, *, now: int | None = None) -> Manifest:
        return self.manifest

    def get(self, cluster: str, name: str, version: str) -> Manifest:
        return self.manifest

    def manifests(self, cluster: str | None = None, name: str | None = None) -> list[Manifest]:
        return [self.manifest]


class BrokenTransfer:
    """A transfer session with a bug: its fetch raises something p2pdata never raises on purpose."""

    def __init__(self, staging: Path) -> None:
        self.staging = Staging(staging, 1 << 30)

    async def fetch(self, manifest: Manifest, peers: Any = (), files: Any = None, **_: Any) -> Any:
        raise KeyError("piece 7")

    def swarms(self) -> list[Any]:
        return []


class NotRestricted:
    def full(self, manifest: Manifest) -> Manifest:
        return manifest

    async def prepare_fetch(self, manifest: Manifest) -> Any:
        raise AssertionError("not a restricted dataset")

    def endpoints(self, manifest: Manifest) -> list[tuple[str, int]]:
        return []


async def test_an_unexpected_exception_fails_the_job_with_a_readable_error(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.txt").write_text("some data\n")
    manifest = scan_dataset(source, name="d", version="1", owner="o" * 16, now=1)
    manifest = manifest.with_torrent(make_torrent(manifest.files, source))
    landed: list[Any] = []

    async def on_landed(what: Any) -> list[str]:
        landed.append(what)
        return []

    conn = open_db(tmp_path / "state.db")
    events = EventHub()
    fetcher = Fetcher(
        jobs=FetchJobTable(conn), catalogs=OneDataset(manifest), restricted=NotRestricted(),
        peers=PeerDirectory(), transfer=BrokenTransfer(tmp_path / "staging"),
        open_store=lambda root: open_store("local", str(tmp_path / "store")), events=events,
        held=lambda: [], on_landed=on_landed, own_cluster="me", store_root=str(tmp_path / "store"),
        default_tier="hot",
        stall_timeout=60,
    )

    async def ended() -> None:
        async for event in events.subscribe():
            if event["type"] == "fetch.state" and event["state"] not in ("queued", "transferring"):
                return

    watching = asyncio.create_task(ended())
    await asyncio.sleep(0)  # subscribed before the job starts
    job = await fetcher.fetch("d@1")
    await asyncio.wait_for(watching, timeout=30)
    after = fetcher.get(job["id"])
    assert after["state"] == FetchState.FAILED and after["retryable"], after
    assert after["error"] == "internal error (KeyError): 'piece 7'"
    assert FetchJobTable(conn).get(job["id"]).state is FetchState.FAILED  # saved, not only in memory
    assert not landed
    await fetcher.close()
    conn.close()
