"""PeerClient against a real aiohttp server on loopback: good answers and every kind of bad one."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from aiohttp import web

from p2pdata.catalog.identity import Identity, encode_public_key
from p2pdata.peers import (
    CatalogFetch,
    ClientLimits,
    PeerBadResponse,
    PeerClient,
    PeerHttpError,
    PeerTimeout,
    PeerTooLarge,
    PeerUnreachable,
)

IDENTITY = Identity.generate()
MANIFEST_ID = "ab" * 32
CATALOG = b"signed catalog bytes" * 100
CATALOG_ETAG = hashlib.sha256(CATALOG).hexdigest()


def info_doc(**changes: Any) -> dict[str, Any]:
    doc = {
        "cluster_id": IDENTITY.cluster_id,
        "public_key": encode_public_key(IDENTITY.public_key),
        "name": "lab-a",
        "software_version": "0.1.0",
        "peer_api": "http://127.0.0.1:7001",
        "torrent_endpoints": [["127.0.0.1", 6881]],
    }
    doc.update(changes)
    return doc


async def info_ok(request: web.Request) -> web.Response:
    return web.json_response(info_doc())


async def catalog_ok(request: web.Request) -> web.Response:
    if request.headers.get("If-None-Match") == f'"{CATALOG_ETAG}"':
        return web.Response(status=304)
    return web.Response(body=CATALOG, headers={"ETag": f'"{CATALOG_ETAG}"'})


@pytest.fixture
async def client():
    limits = ClientLimits(
        max_json=4096, max_catalog=len(CATALOG) + 10, read_timeout=0.5, json_timeout=1.0
    )
    async with PeerClient(limits) as c:
        yield c


async def test_good_answers(serve, client: PeerClient) -> None:
    async def torrent(request: web.Request) -> web.Response:
        assert request.match_info["mid"] == MANIFEST_ID
        return web.Response(body=b"d4:infode")

    async def have(request: web.Request) -> web.Response:
        return web.json_response({"datasets": [MANIFEST_ID, MANIFEST_ID, "cd" * 32]})

    url = await serve(
        {
            "/v1/info": info_ok,
            "/v1/catalog": catalog_ok,
            "/v1/datasets/{mid}/torrent": torrent,
            "/v1/have": have,
        }
    )
    info = await client.info(url + "/")
    assert info.cluster_id == IDENTITY.cluster_id
    assert info.public_key == IDENTITY.public_key
    assert info.peer_api == "http://127.0.0.1:7001"
    assert info.torrent_endpoints == (("127.0.0.1", 6881),)
    assert await client.catalog(url) == CatalogFetch(CATALOG, CATALOG_ETAG)
    assert await client.catalog(url, CATALOG_ETAG) == CatalogFetch(None, CATALOG_ETAG)
    assert await client.torrent(url, MANIFEST_ID) == b"d4:infode"
    assert await client.have(url) == (MANIFEST_ID, "cd" * 32)
    with pytest.raises(ValueError):
        await client.torrent(url, "../../etc/passwd")


async def test_have_asks_for_restricted_ids_in_batches(serve, client: PeerClient) -> None:
    from p2pdata.peers.client import HAVE_ASK

    asked = [f"{i:064x}" for i in range(HAVE_ASK + 2)]
    queries: list[str] = []

    async def have(request: web.Request) -> web.Response:  # older software: ignores ask
        queries.append(request.query.get("ask", ""))
        return web.json_response({"datasets": [MANIFEST_ID, asked[1], asked[-1], "ef" * 32]})

    url = await serve({"/v1/have": have})
    assert set(await client.have(url, ask=asked)) == {MANIFEST_ID, asked[1], asked[-1], "ef" * 32}
    assert queries == ["", ",".join(asked[:HAVE_ASK]), ",".join(asked[HAVE_ASK:])]
    assert len(f"/v1/have?ask={queries[1]}") < 1024  # under the peer API's path limit


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], "expected an object"),
        (info_doc(cluster_id=5), "cluster_id: expected a string"),
        (info_doc(cluster_id="aaaaaaaaaaaaaaaa"), "not the fingerprint"),
        (info_doc(public_key="ed25519:AAAA"), "public_key"),
        (info_doc(name="x" * 1000), "name: 1000 characters"),
        (info_doc(peer_api="ftp://x:1"), "peer_api"),
        (info_doc(torrent_endpoints=[["h", True]]), "torrent_endpoints[0]"),
        (info_doc(torrent_endpoints=[["h", 70000]]), "torrent_endpoints[0]"),
        (info_doc(torrent_endpoints="h:1"), "torrent_endpoints: expected a list"),
        (info_doc(software_version=None), "software_version: expected a string"),
    ],
)
async def test_info_wrong_shapes(serve, client: PeerClient, doc: Any, message: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(doc)

    url = await serve({"/v1/info": handler})
    with pytest.raises(PeerBadResponse) as caught:
        await client.info(url)
    assert message in str(caught.value)
    assert url in str(caught.value)  # names the peer


@pytest.mark.parametrize(
    "doc", [{"datasets": "x"}, {"datasets": ["short"]}, {"datasets": [1]}, {}, ["x"]]
)
async def test_have_wrong_shapes(serve, client: PeerClient, doc: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(doc)

    url = await serve({"/v1/have": handler})
    with pytest.raises(PeerBadResponse):
        await client.have(url)


async def test_garbage_is_a_bad_response(serve, client: PeerClient) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(body=b"\xff\x00not json")

    url = await serve({"/v1/info": garbage})
    with pytest.raises(PeerBadResponse, match="not valid JSON"):
        await client.info(url)


async def test_catalog_whose_etag_lies(serve, client: PeerClient) -> None:
    async def lying(request: web.Request) -> web.Response:
        return web.Response(body=CATALOG, headers={"ETag": '"' + "0" * 64 + '"'})

    url = await serve({"/v1/catalog": lying})
    with pytest.raises(PeerBadResponse, match="ETag"):
        await client.catalog(url)


async def test_304_without_asking_is_refused(serve, client: PeerClient) -> None:
    async def not_modified(request: web.Request) -> web.Response:
        return web.Response(status=304)

    url = await serve({"/v1/catalog": not_modified})
    with pytest.raises(PeerBadResponse, match="304"):
        await client.catalog(url)


async def test_oversized_with_content_length(serve, client: PeerClient) -> None:
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 10_000)

    url = await serve({"/v1/info": big, "/v1/catalog": big})
    with pytest.raises(PeerTooLarge, match="announces 10000 bytes"):
        await client.info(url)
    with pytest.raises(PeerTooLarge, match="announces"):
        await client.catalog(url)


async def test_oversized_without_content_length(serve, client: PeerClient) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"x" * 1000)
        await response.write_eof()
        return response

    url = await serve({"/v1/info": chunked})
    with pytest.raises(PeerTooLarge, match="exceeds the limit of 4096"):
        await client.info(url)


async def test_slow_answers_time_out(serve, client: PeerClient) -> None:
    async def silent(request: web.Request) -> web.Response:
        await asyncio.Event().wait()  # never answers; the server's shutdown cancels it
        raise AssertionError("unreachable")

    async def trickle(request: web.Request) -> web.StreamResponse:
        # Each chunk arrives within the read timeout, but the whole never finishes in time.
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(50):
            await response.write(b" ")
            await asyncio.sleep(0.2)
        return response

    url = await serve({"/v1/info": silent, "/v1/have": trickle})
    with pytest.raises(PeerTimeout, match="/v1/info"):
        await client.info(url)
    with pytest.raises(PeerTimeout, match="/v1/have"):
        await client.have(url)


async def test_http_errors_and_redirects(serve, client: PeerClient) -> None:
    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://example.invalid/v1/info")

    url = await serve({"/v1/info": redirect, "/v1/have": missing})
    with pytest.raises(PeerHttpError, match="redirects are not followed") as caught:
        await client.info(url)
    assert caught.value.status == 302
    with pytest.raises(PeerHttpError, match="404") as caught:
        await client.have(url)
    assert caught.value.reason == "http-status"


async def test_refused(client: PeerClient, unused_tcp_port: int) -> None:
    with pytest.raises(PeerUnreachable, match=f"127.0.0.1:{unused_tcp_port}"):
        await client.info(f"http://127.0.0.1:{unused_tcp_port}")


async def test_connection_dropped_mid_body(serve, client: PeerClient) -> None:
    async def drop(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"{")
        request.transport.close()
        return response

    url = await serve({"/v1/info": drop})
    with pytest.raises((PeerBadResponse, PeerUnreachable)):
        await client.info(url)
