"""The status page, its login and `/metrics`, mounted on the control app.

Access is the control token, carried by an HttpOnly, SameSite=Strict cookie
that the control API's own guard accepts. The cookie is set by the login
form (token compared in constant time) or by a one-time link from
`POST /v1/login-link`: the link carries a short-lived single-use code, never
the token, so nothing secret lingers in access logs or browser history.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from p2pdata.display import named_ref, publisher
from p2pdata.errors import P2pdataError
from p2pdata.events import EventHub
from p2pdata.fetch_states import FINAL_STATES
from p2pdata.web.control_api import TOKEN_COOKIE, ControlService, Handler
from p2pdata.web.metrics import CONTENT_TYPE, Telemetry, staging_usage

_HERE = Path(__file__).parent
LINK_TTL = 120.0  # seconds a one-time login link stays valid
_LOG_TAIL_BYTES = 4096
_LOG_TAIL_RUNS = 5  # only the newest runs get a log tail, to keep the page small
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_WATCHER = web.AppKey("p2pdata_status_watcher", asyncio.Task)


class LoginCodes:
    """Single-use, short-lived codes that stand in for the token in a login link."""

    def __init__(self, ttl: float = LINK_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._codes: dict[str, float] = {}  # code -> expiry

    def new(self) -> str:
        now = self.clock()
        self._codes = {code: expiry for code, expiry in self._codes.items() if expiry > now}
        code = secrets.token_urlsafe(24)
        self._codes[code] = now + self.ttl
        return code

    def redeem(self, code: str) -> bool:
        """True once per valid code: it is removed whatever the outcome."""
        expiry = self._codes.pop(code, None)
        return expiry is not None and expiry > self.clock()


def status_routes(app: web.Application, service: ControlService, *, token: str,
                  codes: LoginCodes | None = None) -> None:
    """Add the page, login, metrics and static routes to a control app not yet started;
    `token` is the control token the login form and links stand in for."""
    codes = codes or LoginCodes()
    telemetry = Telemetry(service.status)
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    )
    templates.filters.update(size=human_size, duration=human_duration, ago=_ago, publisher=publisher,
                             ref=named_ref)

    def html(name: str, status: int = 200, **context: Any) -> web.Response:
        response = web.Response(text=templates.get_template(name).render(**context),
                                content_type="text/html", status=status)
        response.headers.update(_SECURITY_HEADERS)
        return response

    @web.middleware
    async def to_login(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Outermost: a browser without the cookie is sent to the login form, not a JSON 401.
        try:
            return await handler(request)
        except web.HTTPUnauthorized:
            if request.method == "GET" and request.path in ("/", "/partial", "/dataset"):
                raise web.HTTPSeeOther("/login") from None
            raise

    async def page(request: web.Request) -> web.Response:
        return html("page.html", **await _view(service, telemetry, request.query))

    async def partial(request: web.Request) -> web.Response:
        return html("sections.html", **await _view(service, telemetry, request.query))

    async def dataset(request: web.Request) -> web.Response:
        ref = request.query.get("ref", "")
        status = service.status()
        context = {"cluster": status.get("cluster", {}), "publishers": status.get("publishers", {}),
                   "now": time.time(), "ref": ref}
        try:
            return html("dataset.html", d=service.dataset_info(ref), error=None, **context)
        except P2pdataError as exc:
            return html("dataset.html", status=404, d=None, error=str(exc), **context)

    async def login_form(request: web.Request) -> web.Response:
        return html("login.html", error=None)

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        supplied = str(form.get("token", "")).strip()
        if not supplied or not hmac.compare_digest(supplied.encode(), token.encode()):
            return html("login.html", status=403, error="That is not this daemon's control token.")
        return _logged_in(token)

    async def login_link(request: web.Request) -> web.Response:
        # Behind the token guard: only the token holder (the CLI) can mint a code.
        return web.json_response({"url": f"{request.url.origin()}/login/{codes.new()}", "expires_in": codes.ttl})

    async def redeem(request: web.Request) -> web.Response:
        if not codes.redeem(request.match_info["code"]):
            return html("login.html", status=403,
                        error="This login link is used or expired; run `p2pdata status --web` for a new one.")
        return _logged_in(token)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=telemetry.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def watch(app: web.Application) -> None:
        task = asyncio.create_task(_consume(service.events, telemetry))
        # Let the task reach its first await, so it is subscribed before anything is emitted.
        await asyncio.sleep(0)
        app[_WATCHER] = task

    async def stop_watching(app: web.Application) -> None:
        task = app[_WATCHER]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.middlewares.insert(0, to_login)
    app.router.add_get("/", page)
    app.router.add_get("/partial", partial)
    app.router.add_get("/dataset", dataset)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_get("/login/{code}", redeem)
    app.router.add_post("/v1/login-link", login_link)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static/", _HERE / "static")
    app.on_startup.append(watch)
    app.on_cleanup.append(stop_watching)



async def _consume(events: EventHub, telemetry: Telemetry) -> None:
    async for event in events.subscribe():
        telemetry.consume(event)


def _logged_in(token: str) -> web.Response:
    response = web.Response(status=303, headers={"Location": "/"})
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
    response.headers.update(_SECURITY_HEADERS)
    return response


async def _view(service: ControlService, telemetry: Telemetry,
                query: Mapping[str, str]) -> dict[str, Any]:
    """Everything the page shows, as plain data for the templates."""
    status = service.status()
    filters = {key: query[key] for key in ("format", "publisher") if query.get(key)}
    q = query.get("q", "")
    datasets = await service.search(q, **filters)
    now = time.time()
    jobs = [{**job, "progress": {"rate": 0, "eta": None, "peers": 0, **telemetry.progress.get(job["id"], {})}}
            for job in status.get("jobs", [])]
    # Active transfers first, then the newest finished ones.
    jobs.sort(key=lambda job: (job["state"] in FINAL_STATES, -(job.get("created") or 0)))
    jobs = _grouped(jobs)
    runs = [
        {**run, "duration": _run_duration(run, now),
         "log_tail": await asyncio.to_thread(_log_tail, run.get("logs") or []) if index < _LOG_TAIL_RUNS else ""}
        for index, run in enumerate(sorted(status.get("runs", []), key=lambda run: -(run.get("created") or 0)))
    ]
    staging = staging_usage(status.get("cluster", {}).get("staging"))
    disk = shutil.disk_usage(staging["path"]) if staging["path"] and Path(staging["path"]).exists() else None
    return {
        "cluster": status.get("cluster", {}), "staging": staging, "disk": disk,
        "peers": status.get("peers", []), "jobs": jobs, "landed": status.get("landed", []), "runs": runs,
        "datasets": datasets, "q": q, "filters": filters, "now": now,
        "publishers": status.get("publishers", {}),
        "seeding": status.get("transfer", {}),
    }


def _grouped(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per dataset: the first job of each ref (active, else newest) carries the others
    as `earlier`, so ten retries of one fetch do not push everything else off the page."""
    first: dict[str, dict[str, Any]] = {}
    for job in jobs:
        if job["ref"] in first:
            first[job["ref"]]["earlier"].append(job)
        else:
            first[job["ref"]] = {**job, "earlier": []}
    return list(first.values())


def _run_duration(run: dict[str, Any], now: float) -> float | None:
    started = run.get("started")
    if not started:
        return None
    return (run.get("finished") or now) - started


def _log_tail(paths: list[str]) -> str:
    """The end of the first worker's log (the chief's, where TF writes its progress)."""
    for name in paths[:1]:
        with contextlib.suppress(OSError), open(name, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - _LOG_TAIL_BYTES))
            lines = handle.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-20:])
    return ""


def human_size(n: float | None) -> str:
    if n is None:
        return "\u2013"  # en dash: "unknown" in tables
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    index = 0
    while abs(n) >= 1024 and index < len(units) - 1:
        n, index = n / 1024, index + 1
    return f"{n:.0f} B" if index == 0 else f"{n:.1f} {units[index]}"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "\u2013"  # en dash: "unknown" in tables
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _ago(timestamp: float | None, now: float) -> str:
    return "never" if not timestamp else f"{human_duration(max(0.0, now - timestamp))} ago"
