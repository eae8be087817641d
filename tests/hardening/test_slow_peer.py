"""A peer trickling its catalog delays only itself, and is backed off like a failing one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from p2pdata.devcluster import wait_for
from p2pdata.peers import PeerHealth, Source, SyncScheduler
from tests.hardening.attacker import FakePeer


async def _trickle(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Length": str(1024 * 1024)})
    await response.prepare(request)
    for _ in range(3000):  # a couple of bytes a second, for longer than any timeout
        try:
            await response.write(b"\x00")
        except ConnectionError:
            break
        await asyncio.sleep(0.4)  # the attacker's pacing, not a wait in the test
    return response


@pytest.fixture
def trickler() -> Iterator[FakePeer]:
    peer = FakePeer()
    peer.catalog_handler = _trickle
    yield peer
    peer.close()


def test_a_trickling_peer_delays_only_itself(make_daemon: Any, trickler: FakePeer, tmp_path: Path) -> None:
    alpha = make_daemon("alpha")
    gamma = make_daemon("gamma", discovery={"static_peers": [trickler.url, alpha.peer_url], "sync_interval": 1})
    gamma.cli("trust", "add", alpha.cluster_id)
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.bin").write_bytes(name.encode())
    alpha.cli("publish", str(tmp_path / "first"), "--name", "first", "--version", "1")
    wait_for(lambda: gamma.cli_json("search", "first"), what="gamma to sync alpha")
    # The trickler is mid-sync now; alpha's next syncs must not wait for it.
    alpha.cli("publish", str(tmp_path / "second"), "--name", "second", "--version", "1")
    wait_for(lambda: gamma.cli_json("search", "second"), timeout=15, what="alpha's next sync")

    def trickler_row() -> dict[str, Any] | None:
        row = next((p for p in gamma.cli_json("peers") if p["url"] == trickler.url), None)
        return row if row and row["failures"] else None

    row = wait_for(trickler_row, timeout=40, what="the trickler to be counted as failing")
    assert row["state"] == "unreachable"
    assert "minimum rate" in row["error"], row["error"]


async def test_a_sync_past_its_deadline_is_a_failure_and_others_go_on() -> None:
    health = PeerHealth(sync_interval=0.05, base_backoff=60, jitter=0)
    now = time.time()
    health.add("http://127.0.0.1:1", Source.STATIC, now)  # hangs
    health.add("http://127.0.0.1:2", Source.STATIC, now)  # answers
    honest_syncs = asyncio.Event()
    count = 0

    async def sync(url: str) -> None:
        nonlocal count
        if url.endswith(":1"):
            await asyncio.Event().wait()
        count += 1
        health.succeeded(url, time.time(), None)
        if count >= 3:
            honest_syncs.set()

    scheduler = SyncScheduler(health, sync, deadline=0.5)
    task = asyncio.create_task(scheduler.run(asyncio.Event()))
    try:
        await asyncio.wait_for(honest_syncs.wait(), 5)  # three rounds while the other hangs
        deadline = time.monotonic() + 5
        while not health.get("http://127.0.0.1:1").failures:
            assert time.monotonic() < deadline, "the hung sync was never abandoned"
            await asyncio.sleep(0.05)
        hung = health.get("http://127.0.0.1:1")
        assert "sync did not finish within" in hung.last_error
        assert hung.next_attempt > time.time() + 30  # backed off
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
