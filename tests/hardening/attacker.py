"""A hostile HTTP server on loopback, in a thread: the malicious web page or peer of a test."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
from aiohttp import web

from p2pdata.catalog import Identity, encode_public_key


class Attacker:
    """Serves `setup(app)`'s routes on 127.0.0.1 at `url` until `close()`."""

    def __init__(self, setup: Callable[[web.Application], None], **runner_options: object) -> None:
        self.loop = asyncio.new_event_loop()
        self.url = ""
        app = web.Application()
        setup(app)
        self.runner = web.AppRunner(app, **runner_options)
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        if not started.wait(10):
            raise RuntimeError("the attacker's server did not start")

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", 0).start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        started.set()
        self.loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def raw_signed(identity: Identity, body: dict[str, Any]) -> bytes:
    """A signed catalog envelope around any body: what a hostile publisher can build by hand,
    past the checks `sign_catalog` makes on its own side."""
    def canonical(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: canonical(value[key]) for key in sorted(value)}
        if isinstance(value, list):
            return [canonical(item) for item in value]
        return value

    data = msgpack.packb(canonical(body), use_bin_type=True)
    return msgpack.packb({"catalog": data, "signature": identity.sign(data)}, use_bin_type=True)


def catalog_body(identity: Identity, datasets: list[dict[str, Any]], version: int = 1) -> dict[str, Any]:
    now = int(time.time())
    return {"format": 1, "cluster": identity.cluster_id, "key": identity.public_key, "version": version,
            "issued": now, "expires": now + 3600, "datasets": datasets}


def dataset(identity: Identity, name: str, files: list[tuple[str, int]], **fields: Any) -> dict[str, Any]:
    return {"name": name, "version": "1", "owner": identity.cluster_id, "created": 1, "format": "files",
            "description": "", "tags": [], "license": "", "schema": [], "access": {"mode": "public", "allow": []},
            "files": [{"path": path, "size": size, "sha256": bytes(32)} for path, size in files], **fields}


class FakePeer(Attacker):
    """A peer API under the test's control: its identity, and whatever catalog bytes it is given.

    `catalog_handler`, when set, replaces the catalog route (to stall, to trickle).
    """

    def __init__(self, identity: Identity | None = None) -> None:
        self.identity = identity or Identity.generate()
        self.catalog = b""
        self.catalog_handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        self.info_overrides: dict[str, Any] = {}
        super().__init__(self._routes)

    def _routes(self, app: web.Application) -> None:
        async def info(_: web.Request) -> web.Response:
            return web.json_response({
                "cluster_id": self.identity.cluster_id, "public_key": encode_public_key(self.identity.public_key),
                "name": "fake", "software_version": "0", "peer_api": self.url, "torrent_endpoints": [],
                **self.info_overrides})

        async def catalog(request: web.Request) -> web.StreamResponse:
            if self.catalog_handler is not None:
                return await self.catalog_handler(request)
            return web.Response(body=self.catalog)

        async def have(_: web.Request) -> web.Response:
            return web.json_response({"datasets": []})

        app.router.add_get("/v1/info", info)
        app.router.add_get("/v1/catalog", catalog)
        app.router.add_get("/v1/have", have)
