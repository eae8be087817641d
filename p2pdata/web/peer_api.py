"""The peer API other clusters call: read-only, small requests, rate-limited per client."""

from __future__ import annotations

import re
import time
from typing import Any, Protocol

from aiohttp import web

from p2pdata.web.ratelimit import RateLimiter

_MANIFEST_ID = re.compile(r"[0-9a-f]{64}")
_MAX_REQUEST_BYTES = 8 * 1024


class PeerView(Protocol):
    """What the daemon exposes to other clusters."""

    def info(self) -> dict[str, Any]: ...
    def catalog(self) -> tuple[bytes, str]: ...  # signed bytes, etag
    def torrent(self, manifest_id: str) -> bytes | None: ...
    def have(self) -> list[str]: ...


def peer_app(view: PeerView, *, requests_per_minute: int = 600) -> web.Application:
    limiter = RateLimiter(requests_per_minute)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        if request.content_length or len(request.raw_path) > 1024:
            raise web.HTTPRequestEntityTooLarge(max_size=0, actual_size=request.content_length or 0)
        if not limiter.allow(request.remote or "?", time.monotonic()):
            raise web.HTTPTooManyRequests(text="rate limit exceeded, slow down\n")
        return await handler(request)

    async def info(request: web.Request) -> web.Response:
        return web.json_response(view.info())

    async def catalog(request: web.Request) -> web.Response:
        body, etag = view.catalog()
        quoted = f'"{etag}"'
        if request.headers.get("If-None-Match") == quoted:
            return web.Response(status=304, headers={"ETag": quoted})
        return web.Response(body=body, content_type="application/octet-stream", headers={"ETag": quoted})

    async def torrent(request: web.Request) -> web.Response:
        manifest_id = request.match_info["manifest_id"]
        data = view.torrent(manifest_id) if _MANIFEST_ID.fullmatch(manifest_id) else None
        if data is None:
            raise web.HTTPNotFound(text="no such dataset\n")
        return web.Response(body=data, content_type="application/x-bittorrent")

    async def have(request: web.Request) -> web.Response:
        return web.json_response({"datasets": view.have()})

    app = web.Application(middlewares=[guard], client_max_size=_MAX_REQUEST_BYTES)
    app.router.add_get("/v1/info", info)
    app.router.add_get("/v1/catalog", catalog)
    app.router.add_get("/v1/datasets/{manifest_id}/torrent", torrent)
    app.router.add_get("/v1/have", have)
    return app
