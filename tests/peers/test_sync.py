"""sync_peer against a real aiohttp server serving real signed catalogs."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from aiohttp import web

from p2pdata.catalog.catalog import HeldCatalog, VerifiedCatalog, sign_catalog
from p2pdata.catalog.identity import Identity, encode_public_key
from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.peers import (
    ClientLimits,
    PeerClient,
    PeerHealth,
    PeerState,
    Source,
    SyncResult,
    catalog_verifier,
    sync_peer,
)

NOW = 1_800_000_000


class Peer:
    """What the fake peer serves; tests swap `catalog` to tamper or roll back."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.catalog = self.signed(version=2)
        self.requests = 0

    def signed(self, version: int, identity: Identity | None = None) -> bytes:
        identity = identity or self.identity
        manifest = Manifest(
            name="imagenet-mini",
            version="1",
            owner=identity.cluster_id,
            created=NOW,
            format="files",
            files=(FileEntry("a.bin", 3, hashlib.sha256(b"abc").digest()),),
        )
        return sign_catalog(identity, [manifest], version=version, now=NOW, lifetime=3600)

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "cluster_id": self.identity.cluster_id,
                "public_key": encode_public_key(self.identity.public_key),
                "name": "lab",
                "software_version": "0.1",
                "peer_api": str(request.url.origin()),
                "torrent_endpoints": [],
            }
        )

    async def get_catalog(self, request: web.Request) -> web.Response:
        self.requests += 1
        etag = hashlib.sha256(self.catalog).hexdigest()
        if request.headers.get("If-None-Match") == f'"{etag}"':
            return web.Response(status=304)
        return web.Response(body=self.catalog, headers={"ETag": f'"{etag}"'})


@pytest.fixture
async def setup(serve):
    peer = Peer(Identity.generate())
    url = await serve({"/v1/info": peer.info, "/v1/catalog": peer.get_catalog})
    health = PeerHealth(sync_interval=300, base_backoff=5, random=lambda: 0.0)
    health.add(url, Source.STATIC, now=NOW)
    held: dict[str, HeldCatalog] = {}
    verify = catalog_verifier(
        trusted=lambda cluster, key: True, held=held.get, clock=lambda: NOW
    )
    async with PeerClient(ClientLimits(read_timeout=2, json_timeout=5)) as client:
        yield peer, url, health, held, verify, client


async def test_update_then_not_modified_then_rejections(setup) -> None:
    peer, url, health, held, verify, client = setup

    outcome = await sync_peer(client, health, url, verify, etag=None, clock=lambda: NOW)
    assert outcome.result is SyncResult.UPDATED, outcome.error
    assert isinstance(outcome.verified, VerifiedCatalog)
    assert outcome.verified.catalog.version == 2
    assert outcome.status.state is PeerState.HEALTHY
    assert outcome.status.cluster_id == peer.identity.cluster_id
    etag = outcome.etag
    held[peer.identity.cluster_id] = HeldCatalog(2, outcome.verified.body_sha256)

    outcome = await sync_peer(client, health, url, verify, etag=etag, clock=lambda: NOW + 300)
    assert outcome.result is SyncResult.NOT_MODIFIED and outcome.etag == etag
    assert outcome.status.next_attempt == NOW + 600

    peer.catalog = peer.signed(version=1)  # rollback
    outcome = await sync_peer(client, health, url, verify, etag=etag, clock=lambda: NOW + 600)
    assert outcome.result is SyncResult.REJECTED
    assert "older than version 2" in outcome.error
    assert outcome.status.state is PeerState.REJECTED and outcome.status.failures == 1

    peer.catalog = peer.catalog[:-5] + b"xxxxx"  # tampered signature
    outcome = await sync_peer(client, health, url, verify, etag=etag, clock=lambda: NOW + 700)
    assert outcome.result is SyncResult.REJECTED and outcome.status.failures == 2

    peer.catalog = peer.signed(version=5, identity=Identity.generate())  # someone else's
    outcome = await sync_peer(client, health, url, verify, etag=etag, clock=lambda: NOW + 800)
    assert outcome.result is SyncResult.REJECTED
    assert "serves the catalog of cluster" in outcome.error

    peer.catalog = peer.signed(version=3)
    outcome = await sync_peer(client, health, url, verify, etag=etag, clock=lambda: NOW + 900)
    assert outcome.result is SyncResult.UPDATED
    assert outcome.status.failures == 0


async def test_unreachable_peer_is_backed_off(setup, unused_tcp_port: int) -> None:
    _, _, health, _, verify, client = setup
    url = f"http://127.0.0.1:{unused_tcp_port}"
    health.add(url, Source.ZEROCONF, now=NOW)
    outcome = await sync_peer(client, health, url, verify, etag=None, clock=lambda: NOW)
    assert outcome.result is SyncResult.UNREACHABLE
    assert outcome.status.state is PeerState.UNREACHABLE
    assert outcome.status.next_attempt == NOW + 5
    assert url in outcome.error


async def test_peer_removed_while_we_ask_it(setup, serve) -> None:
    """`peers remove` during a sync: nothing it answers is kept, and nothing breaks."""
    peer, _, health, _, verify, client = setup
    asked, gate = asyncio.Event(), asyncio.Event()

    async def slow_catalog(request: web.Request) -> web.Response:
        asked.set()
        await gate.wait()
        return await peer.get_catalog(request)

    url = await serve({"/v1/info": peer.info, "/v1/catalog": slow_catalog})
    health.add(url, Source.ADDED, now=NOW)
    syncing = asyncio.create_task(sync_peer(client, health, url, verify, etag=None, clock=lambda: NOW))
    await asyncio.wait_for(asked.wait(), 10)
    assert health.forget(url)
    gate.set()
    outcome = await syncing
    assert (outcome.result, outcome.status, outcome.url) == (SyncResult.REMOVED, None, url)
    assert health.get(url) is None

    gone = "http://127.0.0.1:9"  # removed before its failure came back: no KeyError either
    outcome = await sync_peer(client, health, gone, verify, etag=None, clock=lambda: NOW)
    assert outcome.result is SyncResult.REMOVED and health.get(gone) is None
