"""The signed listing of granted restricted datasets: the owner's door over a real peer API,
the fetcher's checks, and how the search index shows what it lists."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web

from p2pdata.catalog import (
    Access,
    CatalogStore,
    FileEntry,
    Identity,
    LocalCatalog,
    Manifest,
    Torrent,
    decode,
    encode,
    sign_catalog,
    verify_catalog,
)
from p2pdata.catalog.access import H_SIGNATURE, sign_request
from p2pdata.db import open_db
from p2pdata.errors import MalformedData, NotFound, P2pdataError
from p2pdata.peers import PeerClient, PeerInfo
from p2pdata.restricted import GRANTED_PATH, Restricted, is_stub, stub_of
from p2pdata.web.peer_api import peer_app

NOW = 1_800_000_000


def dataset(owner: str, name: str, access: str = "restricted", description: str = "") -> Manifest:
    data = name.encode()
    return Manifest(
        name=name, version="1", owner=owner, created=NOW, format="files", description=description,
        files=(FileEntry("part-0", len(data), hashlib.sha256(data).digest()),),
        torrent=Torrent(hashlib.sha256(b"torrent " + data).digest(), b"torrent of " + data),
        access=Access(access),
    )


class Cluster:
    """A cluster's restricted room in its own home: an owner, a grantee or a stranger."""

    def __init__(self, home: Path) -> None:
        home.mkdir()
        self.identity = Identity.generate()
        self.conn = open_db(home / "state.db")
        self.local = LocalCatalog(self.conn, self.identity)
        self.restricted = Restricted(self.conn, self.identity, self.local, home)

    @property
    def info(self) -> PeerInfo:
        return PeerInfo(self.identity.cluster_id, self.identity.public_key, "lab", "0", "http://127.0.0.1:1", ())

    def listing_for(self, caller: Identity) -> bytes:
        """What our listing door answers `caller` (a valid, owner-signed listing)."""
        headers = sign_request(caller, "GET", GRANTED_PATH, self.identity.cluster_id,
                               now=int(time.time()))
        return self.restricted.granted_door("GET", GRANTED_PATH, headers)


async def serve(app: web.Application) -> tuple[str, web.AppRunner]:
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}", runner


@pytest.fixture
async def owner_api(tmp_path: Path) -> AsyncIterator[tuple[Cluster, str, dict[str, Manifest]]]:
    """An owner publishing `clicks` and `secret` (restricted) and `open` (public), on a real peer API."""
    owner = Cluster(tmp_path / "owner")
    published = {name: owner.local.add(dataset(owner.identity.cluster_id, name, access))
                 for name, access in (("clicks", "restricted"), ("secret", "restricted"),
                                      ("open", "public"))}
    url, runner = await serve(peer_app(SimpleNamespace(), restricted=owner.restricted))
    yield owner, url, published
    await runner.cleanup()


async def test_the_listing_names_what_is_granted_and_304s_when_unchanged(owner_api, tmp_path):
    owner, url, published = owner_api
    grantee, stranger = Cluster(tmp_path / "grantee"), Cluster(tmp_path / "stranger")
    for name in ("clicks", "secret"):
        owner.restricted.grant(name, grantee.identity.cluster_id)
    async with PeerClient() as client:
        listed = await grantee.restricted.fetch_granted(client, url, owner.info)
        assert listed is not None
        assert sorted(m.id for m in listed) == sorted(published[n].id for n in ("clicks", "secret"))
        assert sorted(m.id for m in grantee.restricted.held()) == sorted(m.id for m in listed)
        assert await grantee.restricted.fetch_granted(client, url, owner.info) is None  # a 304
        owner.restricted.revoke("secret", grantee.identity.cluster_id)
        listed = await grantee.restricted.fetch_granted(client, url, owner.info)
        assert [m.id for m in listed or []] == [published["clicks"].id]
        # Granted nothing: an empty listing, the same bytes as from an owner with nothing restricted.
        assert await stranger.restricted.fetch_granted(client, url, owner.info) == []
        assert stranger.restricted.held() == []
    assert decode(owner.listing_for(stranger.identity), max_size=1024) == {"datasets": []}


async def test_unsigned_forged_and_replayed_listing_requests_are_refused(owner_api, tmp_path):
    owner, url, _ = owner_api
    grantee, stranger = Identity.generate(), Identity.generate()
    owner.restricted.grant("secret", grantee.cluster_id)
    audience = owner.identity.cluster_id

    async def status(headers: dict[str, str]) -> int:
        async with aiohttp.ClientSession() as http, http.get(url + GRANTED_PATH, headers=headers) as response:
            return response.status

    good = sign_request(grantee, "GET", GRANTED_PATH, audience, now=int(time.time()))
    assert await status(good) == 200
    assert await status(good) == 401  # replayed
    assert await status({}) == 401  # unsigned
    forged = sign_request(grantee, "GET", GRANTED_PATH, audience, now=int(time.time()))
    forged[H_SIGNATURE] = sign_request(stranger, "GET", GRANTED_PATH, audience,
                                       now=int(time.time()))[H_SIGNATURE]
    assert await status(forged) == 401
    assert await status(sign_request(grantee, "GET", GRANTED_PATH, stranger.cluster_id,
                                     now=int(time.time()))) == 401  # signed for another owner
    assert await status(sign_request(grantee, "GET", GRANTED_PATH, audience,
                                     now=int(time.time()) - 3600)) == 401  # expired


def _tampered(listing: bytes) -> bytes:
    data = decode(listing, max_size=1 << 20)
    entry = data["datasets"][0]
    entry["manifest"] = entry["manifest"].replace(b"secret", b"secreT")
    return encode(data)


def _twice(listing: bytes) -> bytes:
    data = decode(listing, max_size=1 << 20)
    return encode({"datasets": data["datasets"] * 2})


@pytest.mark.parametrize("serve_what, error", [
    ("tampered", "not signed by"),
    ("another owner's", "not signed by"),
    ("twice", "appears twice"),
    ("not a map", "expected a map"),
    ("no signature", "missing field 'signature'"),
])
async def test_a_bad_listing_is_refused_as_a_whole(tmp_path, serve_what, error):
    owner, other = Cluster(tmp_path / "owner"), Cluster(tmp_path / "other")
    grantee = Cluster(tmp_path / "grantee")
    for cluster in (owner, other):
        cluster.local.add(dataset(cluster.identity.cluster_id, "secret"))
        cluster.restricted.grant("secret", grantee.identity.cluster_id)
    good = owner.listing_for(grantee.identity)
    body = {
        "tampered": lambda: _tampered(good),
        "another owner's": lambda: other.listing_for(grantee.identity),
        "twice": lambda: _twice(good),
        "not a map": lambda: encode([good]),
        "no signature": lambda: encode({"datasets": [{"manifest": b"x"}]}),
    }[serve_what]()

    async def listing(request: web.Request) -> web.Response:
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get(GRANTED_PATH, listing)
    url, runner = await serve(app)
    try:
        async with PeerClient() as client:
            with pytest.raises(P2pdataError, match=error):
                await grantee.restricted.fetch_granted(client, url, owner.info)
    finally:
        await runner.cleanup()
    assert grantee.restricted.held() == []


def test_private_datasets_are_indexed_beside_the_public_catalog(tmp_path):
    owner, other = Identity.generate(), Identity.generate()
    store = CatalogStore(open_db(tmp_path / "state.db"))
    shown = dataset(owner.cluster_id, "clicks", description="click logs")
    hidden = dataset(owner.cluster_id, "secret", description="hidden logs")
    public = dataset(owner.cluster_id, "open", access="public", description="open logs")

    def publish(version: int) -> None:  # the owner's public catalog: `clicks` as a stub, `secret` hidden
        blob = sign_catalog(owner, [public, stub_of(shown)], version=version, now=NOW, lifetime=3600)
        store.store(verify_catalog(blob, trusted=lambda *_: True, now=NOW), source="test")

    def found(query: str) -> list[str]:
        return sorted(hit.manifest.name for hit in store.search(query, now=NOW))

    store.store_private(owner.cluster_id, [hidden])
    assert found("secret") == []  # kept, but indexed only with a catalog of its owner
    publish(1)
    assert store.resolve("secret", now=NOW).id == hidden.id
    store.store_private(owner.cluster_id, [shown, hidden])
    assert store.resolve("clicks", now=NOW).id == shown.id  # the full manifest takes the stub's place
    assert found("logs") == ["clicks", "open", "secret"]  # descriptions are searchable now
    publish(2)  # a new public catalog keeps what is shown privately
    assert found("logs") == ["clicks", "open", "secret"]
    store.store_private(owner.cluster_id, [])  # e.g. revoked: back to what the public sees
    assert is_stub(store.resolve("clicks", now=NOW)) and found("logs") == ["open"]
    with pytest.raises(NotFound):
        store.resolve("secret")
    store.store_private(owner.cluster_id, [hidden])
    store.forget(owner.cluster_id)  # trust withdrawn: the private entries go too
    publish(3)
    assert found("secret") == []
    with pytest.raises(MalformedData, match="names owner"):
        store.store_private(owner.cluster_id, [dataset(other.cluster_id, "x")])
