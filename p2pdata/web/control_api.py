"""The control API: local only, every request carries the owner's token.

Handlers are thin: they parse the request, call the daemon's service object
and turn its result or error into JSON.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from p2pdata.errors import Ambiguous, NotFound, NotHeld, P2pdataError
from p2pdata.events import EventHub

_MAX_REQUEST_BYTES = 1024 * 1024
# The fields of the calls whose body or query is passed on whole: a misspelt one is refused
# by name (not a TypeError's 500, nor a filter silently ignored). Spelt out, not read from the
# methods' signatures: what a client may set is the API's contract, and a keyword added to a
# method for the daemon's own use must not become settable unseen. A test holds them to the
# signatures (Daemon.publish, Fetcher.fetch, Daemon.search).
_PUBLISH_FIELDS = frozenset({"directory", "name", "version", "description", "tags", "license",
                             "access", "allow", "format"})
_PUBLISH_REQUIRED = ("directory", "name", "version")
_FETCH_FIELDS = frozenset({"ref", "tier", "to", "train", "files", "verify", "peers"})
_SEARCH_FIELDS = frozenset({"q", "format", "publisher", "tag", "min_size", "max_size"})
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
    async def retry_job(self, job_id: str) -> dict[str, Any]: ...
    def peers(self) -> list[dict[str, Any]]: ...
    def refused_peers(self) -> int: ...
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
    def dataset_info(self, ref: str) -> dict[str, Any]: ...
    def publishers(self) -> dict[str, str]: ...
    def remove_training_job(self, name: str) -> dict[str, Any]: ...
    async def unpublish(self, ref: str) -> dict[str, Any]: ...
    async def sync_now(self) -> list[dict[str, Any]]: ...


def token_ok(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    supplied = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    supplied = supplied or request.cookies.get(TOKEN_COOKIE, "")
    return bool(supplied) and hmac.compare_digest(supplied.encode(), token.encode())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# A header no HTML form can set and no cross-origin script can send without a CORS
# preflight, which this API never answers (OWASP: custom request headers).
REQUEST_HEADER = "X-P2pdata-Request"


class SameOrigin:
    """Cross-site request forgery and DNS rebinding checks (OWASP's CSRF cheat sheet).

    A page on `http://127.0.0.1:<other port>` (a notebook, a dev server) is the same *site*
    as the control API, so the browser sends the SameSite=Strict cookie with its requests.
    So: the Host header must name this API (a rebound DNS name does not), and a request
    that changes state must come from this very origin when the browser says where it
    comes from (Origin, Sec-Fetch-Site).
    """

    def __init__(self, host: str) -> None:
        names = set(_LOOPBACK_NAMES) | {host.strip("[]").lower()}
        if host in ("0.0.0.0", "::", ""):
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.names = frozenset(names - {"0.0.0.0", "::", ""})

    def refusal(self, request: web.Request) -> str | None:
        """Why this request is refused, or None."""
        name, port = _split_host(request.headers.get("Host", ""))
        if name not in self.names:
            return (f"Host {request.headers.get('Host', '')!r} is not this control API "
                    "(a DNS rebinding attempt, or reach it by its address)")
        local_port = _local_port(request)
        if port is not None and local_port is not None and port != local_port:
            return f"Host {request.headers.get('Host')!r} names another port than this control API's"
        if request.method in _SAFE_METHODS:
            return None
        own = f"{request.scheme}://{request.headers['Host']}".lower()
        origin = request.headers.get("Origin")
        # "null" is what a browser sends from a page with Referrer-Policy: no-referrer (the
        # status page's own) as well as from a sandboxed frame: Sec-Fetch-Site decides then.
        if origin not in (None, "null") and origin.lower() != own:
            return f"cross-origin request refused: Origin {origin!r} is not this control API ({own})"
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
        return None


def _simple_request_refusal(request: web.Request) -> str | None:
    """A cookie-authenticated call that changes state must be one a form cannot make."""
    if request.method in _SAFE_METHODS or request.headers.get("Authorization"):
        return None
    if request.content_type == "application/json" or REQUEST_HEADER in request.headers:
        return None
    return (f"refused a {request.content_type or 'bodiless'} request authenticated by cookie: "
            f"send Content-Type: application/json or the {REQUEST_HEADER} header")


def _split_host(header: str) -> tuple[str, int | None]:
    """("name", port) of a Host header; the name lower-case, IPv6 without brackets."""
    header = header.strip().lower()
    if header.startswith("["):
        name, _, rest = header[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        name, _, port = header.partition(":")
    return name, int(port) if port.isdigit() else None


def _local_port(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return sockname[1] if isinstance(sockname, tuple) else None  # a unix socket has a path


def control_app(service: ControlService, token: str, *, open_paths: tuple[str, ...] = (),
                host: str = "127.0.0.1", body_timeout: float = 30.0) -> web.Application:
    """`open_paths` are prefixes served without the token (the status page's login form);
    `host` is the configured bind address, for the Host header check."""
    sameness = SameOrigin(host)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        refusal = sameness.refusal(request)
        if refusal:
            return web.json_response({"error": "Forbidden", "message": refusal}, status=403)
        if not request.path.startswith(open_paths or ("\0",)):
            if not token_ok(request, token):
                raise web.HTTPUnauthorized(
                    text=json.dumps({"error": "Unauthorized", "message": "missing or wrong control token"}),
                    content_type="application/json",
                )
            refusal = _simple_request_refusal(request)
            if refusal:
                return web.json_response({"error": "Forbidden", "message": refusal}, status=403)
        try:
            return await handler(request)
        except NotHeld as exc:  # a peer whose catalog we refuse may hold it: say so
            return _error(404, exc, NotHeld.hint(service.refused_peers()))
        except (NotFound, KeyError) as exc:
            return _error(404, exc)
        except Ambiguous as exc:
            return _error(409, exc)
        except P2pdataError as exc:
            return _error(400, exc)

    async def body(request: web.Request) -> dict[str, Any]:
        try:
            async with asyncio.timeout(body_timeout):  # a trickled body must not hold a slot forever
                data = await request.json()
        except TimeoutError:
            raise web.HTTPRequestTimeout(text=f"request body not received within {body_timeout} s") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise web.HTTPBadRequest(text=f"request body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="request body must be a JSON object")
        return data

    def known(fields: dict[str, Any], allowed: frozenset[str], required: tuple[str, ...] = ()) -> None:
        problems = []
        if unknown := sorted(set(fields) - allowed):
            problems.append(f"unknown field(s) {', '.join(unknown)}")
        if missing := [name for name in required if name not in fields]:
            problems.append(f"missing {', '.join(missing)}")
        if problems:
            raise P2pdataError(f"{'; '.join(problems)} (fields: {', '.join(sorted(allowed))})")

    def reply(result: Any) -> web.Response:
        return web.json_response(result)

    routes = web.RouteTableDef()

    @routes.post("/v1/publish")
    async def publish(request: web.Request) -> web.Response:
        options = await body(request)
        known(options, _PUBLISH_FIELDS, _PUBLISH_REQUIRED)
        return reply(await service.publish(**options))

    @routes.get("/v1/search")
    async def search(request: web.Request) -> web.Response:
        query = dict(request.query)
        known(query, _SEARCH_FIELDS)
        return reply(await service.search(query.pop("q", ""), **query))

    @routes.get("/v1/torrent")
    async def torrent(request: web.Request) -> web.Response:
        return reply(service.torrent_export(request.query.get("ref", "")))

    @routes.post("/v1/fetch")
    async def fetch(request: web.Request) -> web.Response:
        options = await body(request)
        known(options, _FETCH_FIELDS)
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

    @routes.post("/v1/jobs/{job_id}/retry")
    async def retry_job(request: web.Request) -> web.Response:
        return reply(await service.retry_job(request.match_info["job_id"]))

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

    @routes.post("/v1/training/jobs/remove")
    async def remove_training_job(request: web.Request) -> web.Response:
        return reply(service.remove_training_job(str((await body(request)).get("name", ""))))

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

    @routes.get("/v1/datasets/info")
    async def dataset_info(request: web.Request) -> web.Response:
        return reply(service.dataset_info(request.query.get("ref", "")))

    @routes.get("/v1/publishers")
    async def publishers(request: web.Request) -> web.Response:
        return reply(service.publishers())

    @routes.post("/v1/unpublish")
    async def unpublish(request: web.Request) -> web.Response:
        return reply(await service.unpublish(str((await body(request)).get("ref", ""))))

    @routes.post("/v1/sync")
    async def sync(request: web.Request) -> web.Response:
        return reply(await service.sync_now())

    @routes.get("/v1/events")
    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        # A comment line first, so clients know the stream is open before any event arrives.
        await response.write(b": connected\n\n")
        try:
            async for event in service.events.subscribe():
                payload = json.dumps(event, separators=(",", ":"))
                await response.write(f"id: {event['id']}\nevent: {event['type']}\ndata: {payload}\n\n".encode())
        except ConnectionError:  # the client went away (e.g. an attached fetch ended): not an error
            pass
        return response

    app = web.Application(middlewares=[guard], client_max_size=_MAX_REQUEST_BYTES)
    app.add_routes(routes)
    return app


def _error(status: int, exc: BaseException, hint: str = "") -> web.Response:
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return web.json_response({"error": type(exc).__name__, "message": message + hint}, status=status)
