"""The peer API other clusters call: read-only, small requests, rate-limited per client."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from p2pdata.catalog.access import AccessDenied, BadRequestSignature
from p2pdata.errors import NotFound, P2pdataError
from p2pdata.peers.client import HAVE_ASK
from p2pdata.web.ratelimit import Admission, SignedCallers

if TYPE_CHECKING:
    from p2pdata.web.control_api import Handler

_MANIFEST_ID = re.compile(r"[0-9a-f]{64}")
_NONCE = re.compile(r"[0-9a-f]{32}")
_MAX_REQUEST_BYTES = 8 * 1024


class PeerView(Protocol):
    """What the daemon exposes to other clusters."""

    def info(self) -> dict[str, Any]: ...
    def catalog(self) -> tuple[bytes, str]: ...  # signed bytes, etag
    def torrent(self, manifest_id: str) -> bytes | None: ...
    def have(self, ask: frozenset[str] | None = None) -> list[str]: ...  # see /v1/have
    def announce(self, query: str, remote: str) -> bytes: ...  # BEP 3, bencoded reply


class RestrictedDoors(Protocol):
    """Restricted datasets' doors: each checks the request signature, then the grant."""

    def manifest_door(self, name: str, version: str, method: str, path: str,
                      headers: Mapping[str, str]) -> tuple[bytes, str]: ...
    def torrent_door(self, manifest_id: str, method: str, path: str,
                     headers: Mapping[str, str]) -> bytes: ...
    def certificate_door(self, manifest_id: str, key: str, method: str, path: str,
                         headers: Mapping[str, str]) -> bytes: ...
    def granted_door(self, method: str, path: str, headers: Mapping[str, str]) -> bytes: ...


def _door(call: Callable[[], Any]) -> Any:
    """Map a door's refusal to HTTP: 401 unproven caller, 403 not granted (or unknown), 400 bad key."""
    try:
        return call()
    except BadRequestSignature as exc:
        raise web.HTTPUnauthorized(text=f"{exc}\n") from None
    except AccessDenied as exc:
        raise web.HTTPForbidden(text=f"{exc}\n") from None
    except NotFound as exc:
        raise web.HTTPNotFound(text=f"{exc}\n") from None
    except P2pdataError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None


def peer_app(view: PeerView, *, requests_per_minute: int = 600,
             restricted: RestrictedDoors | None = None,
             callers: SignedCallers | None = None,
             prove: Callable[[str], str] | None = None) -> web.Application:
    """`callers` names the known cluster behind a signed request: it gets its own budget;
    `prove(nonce)` signs a client's nonce and our URL with our cluster key (see `/v1/info`)."""
    admission = Admission(requests_per_minute, callers)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        if request.content_length or request.can_read_body or len(request.raw_path) > 1024:
            raise web.HTTPRequestEntityTooLarge(max_size=0, actual_size=request.content_length or 0)
        if not admission.admit(request.remote or "?", request.method, request.raw_path,
                               request.headers, now=time.monotonic(), wall=time.time()):
            raise web.HTTPTooManyRequests(text="rate limit exceeded, slow down\n")
        return await handler(request)

    async def info(request: web.Request) -> web.Response:
        answer = view.info()
        nonce = request.query.get("nonce", "")
        if prove is not None and _NONCE.fullmatch(nonce):
            answer = {**answer, "proof": prove(nonce)}
        return web.json_response(answer)

    async def catalog(request: web.Request) -> web.Response:
        return _etagged(request, *view.catalog())

    async def torrent(request: web.Request) -> web.Response:
        manifest_id = request.match_info["manifest_id"]
        data = view.torrent(manifest_id) if _MANIFEST_ID.fullmatch(manifest_id) else None
        if data is None:
            raise web.HTTPNotFound(text="no such dataset\n")
        return web.Response(body=data, content_type="application/x-bittorrent")

    async def have(request: web.Request) -> web.Response:
        # Public ids; with ?ask=ID,ID... those of the ids asked we seed, restricted ones included:
        # who names a restricted id knows it already (a granted cluster looking for re-seeders).
        if "ask" not in request.query:
            return web.json_response({"datasets": view.have()})
        asked = [i for i in request.query["ask"].split(",") if i]
        bad = next((i for i in asked if not _MANIFEST_ID.fullmatch(i)), None)
        if bad is not None or len(asked) > HAVE_ASK:
            # A stranger's text is not echoed back: only its length, or how many ids.
            what = f"an id of {len(bad)} characters" if bad is not None else f"{len(asked)} ids"
            raise web.HTTPBadRequest(text=f"ask: at most {HAVE_ASK} manifest ids (64 hex digits) "
                                          f"separated by commas, not {what}\n")
        return web.json_response({"datasets": view.have(frozenset(asked))})

    async def announce(request: web.Request) -> web.Response:
        # The tracker of public datasets, for any BitTorrent client (rate-limited by guard).
        # The raw query: info_hash is 20 percent-escaped bytes, not text.
        body = view.announce(request.raw_path.partition("?")[2], request.remote or "")
        return web.Response(body=body, content_type="text/plain")

    def restricted_manifest(request: web.Request) -> web.Response:
        assert restricted is not None
        info = request.match_info
        body, signature = _door(lambda: restricted.manifest_door(
            info["name"], info["version"], request.method, request.raw_path, request.headers))
        return web.Response(body=body, content_type="application/octet-stream",
                            headers={"X-P2pdata-Manifest-Signature": signature})

    def restricted_torrent(request: web.Request) -> web.Response:
        assert restricted is not None
        manifest_id = request.match_info["manifest_id"]
        body = _door(lambda: restricted.torrent_door(
            manifest_id, request.method, request.raw_path, request.headers))
        return web.Response(body=body, content_type="application/x-bittorrent")

    def restricted_certificate(request: web.Request) -> web.Response:
        assert restricted is not None
        manifest_id = request.match_info["manifest_id"]
        key = request.query.get("key", "")
        body = _door(lambda: restricted.certificate_door(
            manifest_id, key, request.method, request.raw_path, request.headers))
        return web.Response(body=body, content_type="application/x-pem-file")

    def restricted_granted(request: web.Request) -> web.Response:
        assert restricted is not None
        body = _door(lambda: restricted.granted_door(request.method, request.raw_path,
                                                     request.headers))
        return _etagged(request, body, hashlib.sha256(body).hexdigest())

    app = web.Application(middlewares=[guard], client_max_size=_MAX_REQUEST_BYTES)
    app.router.add_get("/v1/info", info)
    app.router.add_get("/v1/catalog", catalog)
    app.router.add_get("/v1/datasets/{manifest_id}/torrent", torrent)
    app.router.add_get("/v1/have", have)
    app.router.add_get("/announce", announce)
    if restricted is not None:
        app.router.add_get("/v1/restricted/granted", _async(restricted_granted))
        app.router.add_get("/v1/restricted/{name}/{version}/manifest", _async(restricted_manifest))
        app.router.add_get(r"/v1/restricted/{manifest_id:[0-9a-f]{64}}/torrent",
                           _async(restricted_torrent))
        app.router.add_get(r"/v1/restricted/{manifest_id:[0-9a-f]{64}}/certificate",
                           _async(restricted_certificate))
    return app


def _etagged(request: web.Request, body: bytes, etag: str) -> web.Response:
    """`body`, or 304 when the caller already holds it (If-None-Match)."""
    quoted = f'"{etag}"'
    if request.headers.get("If-None-Match") == quoted:
        return web.Response(status=304, headers={"ETag": quoted})
    return web.Response(body=body, content_type="application/octet-stream", headers={"ETag": quoted})


def _async(handler: Callable[[web.Request], web.Response]) -> Any:
    async def route(request: web.Request) -> web.Response:
        return handler(request)

    return route
