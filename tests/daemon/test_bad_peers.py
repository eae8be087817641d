"""A peer serving a tampered or rolled-back catalog is rejected, reported, and its last good catalog kept."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from p2pdata.catalog import FileEntry, Identity, Manifest, encode_public_key, sign_catalog
from p2pdata.devcluster import wait_for


class FakePeer:
    """A hand-driven peer API in a thread: the test decides which catalog bytes it serves."""

    def __init__(self) -> None:
        self.identity = Identity.generate()
        self.catalog = b""
        self.loop = asyncio.new_event_loop()
        self.url = ""
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        started.wait(10)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        async def info(_: web.Request) -> web.Response:
            return web.json_response(self._info())

        async def catalog(_: web.Request) -> web.Response:
            return web.Response(body=self.catalog)

        async def have(_: web.Request) -> web.Response:
            return web.json_response({"datasets": []})

        app.router.add_get("/v1/info", info)
        app.router.add_get("/v1/catalog", catalog)
        app.router.add_get("/v1/have", have)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        started.set()
        self.loop.run_forever()

    def _info(self) -> dict[str, Any]:
        return {"cluster_id": self.identity.cluster_id, "public_key": encode_public_key(self.identity.public_key),
                "name": "fake", "software_version": "0", "peer_api": self.url, "torrent_endpoints": []}

    def sign(self, version: int, name: str) -> bytes:
        manifest = Manifest(name=name, version="1", owner=self.identity.cluster_id, created=1, format="files",
                            files=(FileEntry("a.bin", 1, b"\x01" * 32),))
        return sign_catalog(self.identity, [manifest], version=version, now=int(time.time()), lifetime=3600)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def fake_peer() -> Iterator[FakePeer]:
    peer = FakePeer()
    yield peer
    peer.close()


def _peer_row(daemon, url: str) -> dict[str, Any] | None:
    return next((p for p in daemon.cli_json("peers") if p["url"] == url), None)


def test_tampered_then_rolled_back_catalogs_are_rejected(make_daemon, fake_peer):
    fake_peer.catalog = fake_peer.sign(version=2, name="good-data")
    gamma = make_daemon("gamma", discovery={"static_peers": [fake_peer.url], "sync_interval": 1})
    gamma.cli("trust", "add", fake_peer.identity.cluster_id)
    wait_for(lambda: gamma.cli_json("search", "good"), what="the good catalog to be held")

    # Tampered: one byte of the signed body flipped.
    good = fake_peer.sign(version=3, name="good-data")
    index = good.index(b"good-data")
    fake_peer.catalog = good[:index] + b"evil-data" + good[index + 9:]
    row = wait_for(lambda: (r := _peer_row(gamma, fake_peer.url)) and r["error"] and r, what="rejection")
    assert "BadSignature" in row["error"] and row["state"] == "rejected"

    # Rolled back: a validly signed but older version.
    fake_peer.catalog = fake_peer.sign(version=1, name="old-data")
    wait_for(lambda: "Rollback" in (_peer_row(gamma, fake_peer.url)["error"] or ""), what="rollback rejection")

    # The last good catalog is still what search answers from.
    assert [r["name"] for r in gamma.cli_json("search", "data")] == ["good-data"]


def test_untrusted_publisher_is_flagged(make_daemon, fake_peer):
    fake_peer.catalog = fake_peer.sign(version=1, name="some-data")
    gamma = make_daemon("gamma", discovery={"static_peers": [fake_peer.url], "sync_interval": 1})
    row = wait_for(lambda: (r := _peer_row(gamma, fake_peer.url)) and r["error"] and r, what="rejection")
    assert "UntrustedKey" in row["error"]
    assert gamma.cli_json("search", "data") == []
