"""The control API: local only, every request carries the owner's token.

Handlers are thin: they parse the request, call the daemon's service object
and turn its result or error into JSON.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from p2pdata.errors import Ambiguous, NotFound, P2pdataError
from p2pdata.events import EventHub

_MAX_REQUEST_BYTES = 1024 * 1024
TOKEN_COOKIE = "p2pdata_token"


class ControlService(Protocol):
    """The daemon's operations, as the control API sees them."""

    events: EventHub

    async def publish(self, **options: Any) -> dict[str, Any]: ...
    async def search(self, query: str, **filters: Any) -> list[dict[str, Any]]: ...
    async def fetch(self, ref: str, **options: Any) -> dict[str, Any]: ...
    def torrent_export(self, ref: str) -> dict[str, Any]: ...
    def jobs(self) -> list[dict[str, Any]]: ...
    def job(self, job_id: str) -> dict[str, Any]: ...
    async def cancel_job(self, job_id: str) -> dict[str, Any]: ...
    def peers(self) -> list[dict[str, Any]]: ...
    async def add_peer(self, url: str) -> dict[str, Any]: ...
    async def remove_peer(self, url: str) -> dict[str, Any]: ...
    def trust_list(self) -> list[dict[str, Any]]: ...
    def trust_add(self, key_or_id: str, name: str | None) -> dict[str, Any]: ...
    def trust_remove(self, cluster_id: str) -> dict[str, Any]: ...
    def grant(self, name: str, cluster: str) -> dict[str, Any]: ...
    def revoke(self, name: str, cluster: str) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any]: ...
    async def set_tier(self, ref: str, tier: str, move: bool) -> dict[str, Any]: ...
    async def train(self, job_name: str, ref: str) -> dict[str, Any]: ...
    def runs(self) -> list[dict[str, Any]]: ...
    def run(self, run_id: str) -> dict[str, Any]: ...
    async def cancel_run(self, run_id: str) -> dict[str, Any]: ...
    def add_training_job(self, spec_toml: str, filename: str, base_dir: str | None = None) -> dict[str, Any]: ...
    def training_jobs(self) -> list[dict[str, Any]]: ...


def token_ok(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    supplied = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    supplied = supplied or request.cookies.get(TOKEN_COOKIE, "")
    return bool(supplied) and hmac.compare_digest(supplied.encode(), token.encode())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def control_app(service: ControlService, token: str, *, open_paths: tuple[str, ...] = ()) -> web.Application:
    """`open_paths` are prefixes served without the token (the status page's login form)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(open_paths or ("\0",)) and not token_ok(request, token):
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": "Unauthorized", "message": "missing or wrong control token"}),
                content_type="application/json",
            )
        try:
            return await handler(request)
        except (NotFound, KeyError) as exc:
            return _error(404, exc)
        except Ambiguous as exc:
            return _error(409, exc)
        except P2pdataError as exc:
            return _error(400, exc)

    async def body(request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise web.HTTPBadRequest(text=f"request body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="request body must be a JSON object")
        return data

    def reply(result: Any) -> web.Response:
        return web.json_response(result)

    routes = web.RouteTableDef()

    @routes.post("/v1/publish")
    async def publish(request: web.Request) -> web.Response:
        return reply(await service.publish(**await body(request)))

    @routes.get("/v1/search")
    async def search(request: web.Request) -> web.Response:
        query = dict(request.query)
        return reply(await service.search(query.pop("q", ""), **query))

    @routes.get("/v1/torrent")
    async def torrent(request: web.Request) -> web.Response:
        return reply(service.torrent_export(request.query.get("ref", "")))

    @routes.post("/v1/fetch")
    async def fetch(request: web.Request) -> web.Response:
        options = await body(request)
        return reply(await service.fetch(options.pop("ref", ""), **options))

    @routes.get("/v1/jobs")
    async def jobs(request: web.Request) -> web.Response:
        return reply(service.jobs())

    @routes.get("/v1/jobs/{job_id}")
    async def job(request: web.Request) -> web.Response:
        return reply(service.job(request.match_info["job_id"]))

    @routes.post("/v1/jobs/{job_id}/cancel")
    async def cancel_job(request: web.Request) -> web.Response:
        return reply(await service.cancel_job(request.match_info["job_id"]))

    @routes.get("/v1/peers")
    async def peers(request: web.Request) -> web.Response:
        return reply(service.peers())

    @routes.post("/v1/peers")
    async def add_peer(request: web.Request) -> web.Response:
        return reply(await service.add_peer(str((await body(request)).get("url", ""))))

    @routes.post("/v1/peers/remove")
    async def remove_peer(request: web.Request) -> web.Response:
        return reply(await service.remove_peer(str((await body(request)).get("url", ""))))

    @routes.get("/v1/trust")
    async def trust_list(request: web.Request) -> web.Response:
        return reply(service.trust_list())

    @routes.post("/v1/trust")
    async def trust_add(request: web.Request) -> web.Response:
        data = await body(request)
        return reply(service.trust_add(str(data.get("key", "")), data.get("name")))

    @routes.post("/v1/trust/remove")
    async def trust_remove(request: web.Request) -> web.Response:
        return reply(service.trust_remove(str((await body(request)).get("cluster_id", ""))))

    @routes.post("/v1/grants")
    async def grant(request: web.Request) -> web.Response:
        data = await body(request)
        return reply(service.grant(str(data.get("name", "")), str(data.get("cluster", ""))))

    @routes.post("/v1/grants/revoke")
    async def revoke(request: web.Request) -> web.Response:
        data = await body(request)
        return reply(service.revoke(str(data.get("name", "")), str(data.get("cluster", ""))))

    @routes.get("/v1/status")
    async def status(request: web.Request) -> web.Response:
        return reply(service.status())

    @routes.post("/v1/tier")
    async def tier(request: web.Request) -> web.Response:
        data = await body(request)
        return reply(
            await service.set_tier(
                str(data.get("ref", "")), str(data.get("tier", "")), bool(data.get("move"))
            )
        )

    @routes.get("/v1/training/jobs")
    async def training_jobs(request: web.Request) -> web.Response:
        return reply(service.training_jobs())

    @routes.post("/v1/training/jobs")
    async def add_training_job(request: web.Request) -> web.Response:
        data = await body(request)
        spec, filename = str(data.get("spec", "")), str(data.get("filename", "job.toml"))
        return reply(service.add_training_job(spec, filename, data.get("base_dir")))

    @routes.post("/v1/train")
    async def train(request: web.Request) -> web.Response:
        data = await body(request)
        return reply(await service.train(str(data.get("job", "")), str(data.get("ref", ""))))

    @routes.get("/v1/runs")
    async def runs(request: web.Request) -> web.Response:
        return reply(service.runs())

    @routes.get("/v1/runs/{run_id}")
    async def run(request: web.Request) -> web.Response:
        return reply(service.run(request.match_info["run_id"]))

    @routes.post("/v1/runs/{run_id}/cancel")
    async def cancel_run(request: web.Request) -> web.Response:
        return reply(await service.cancel_run(request.match_info["run_id"]))

    @routes.get("/v1/events")
    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        # A comment line first, so clients know the stream is open before any event arrives.
        await response.write(b": connected\n\n")
        async for event in service.events.subscribe():
            payload = json.dumps(event, separators=(",", ":"))
            await response.write(f"id: {event['id']}\nevent: {event['type']}\ndata: {payload}\n\n".encode())
        return response

    app = web.Application(middlewares=[guard], client_max_size=_MAX_REQUEST_BYTES)
    app.add_routes(routes)
    return app


def _error(status: int, exc: BaseException) -> web.Response:
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return web.json_response({"error": type(exc).__name__, "message": message}, status=status)
