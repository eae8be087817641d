"""The status page, its login paths and the live event stream, against a fake service."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from p2pdata.web.control_api import TOKEN_COOKIE
from p2pdata.web.status import LoginCodes
from tests.web.conftest import TOKEN, FakeService, log_in, make_app

Client = TestClient[Any, Any]


async def test_page_redirects_to_login_without_token(client: Client) -> None:
    for path in ("/", "/partial"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == "/login"
    api = await client.get("/v1/status")
    assert api.status == 401  # the API stays JSON for programs


async def test_login_form_is_served_without_token(client: Client) -> None:
    response = await client.get("/login")
    assert response.status == 200
    text = await response.text()
    assert '<form method="post" action="/login">' in text
    assert TOKEN not in text


async def test_wrong_token_is_refused(client: Client) -> None:
    response = await client.post("/login", data={"token": "guess"}, allow_redirects=False)
    assert response.status == 403
    assert TOKEN_COOKIE not in response.cookies
    assert "not this daemon" in await response.text()
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_login_sets_a_strict_http_only_cookie(client: Client) -> None:
    response = await client.post("/login", data={"token": TOKEN}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    page = await client.get("/")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")


async def test_page_shows_every_section(client: Client, service: FakeService) -> None:
    await log_in(client)
    response = await client.get("/")
    text = await response.text()
    for needle in (
        "c-abc123", "north", str(service.state["cluster"]["root"]), "not enforced", "3.0 MiB used", "1.0 GiB budget",
        "http://10.0.0.2:7001", "healthy", "v7", "5s ago", "rejected",
        'data-job="f-0001"', 'value="10485760" max="41943040"', "10.0 MiB / 40.0 MiB (25.0%)",
        "c-south/mnist@2", "file:///data/mnist/2", "ALL_SSD",
        "train-mnist", "running", "30s", "step 39 loss 0.39",
        "<code>application_17_0001</code> RUNNING",
        'href="http://rm.example:8088/proxy/application_17_0001/"',
        "imagenet", "parquet", "<code>label</code>: int64", "vision",
        '<script src="/static/status.js" defer></script>',
    ):
        assert needle in text, needle
    assert "step 0 loss" not in text.split("log tail")[1]  # a tail, not the whole log
    # Autoescaped: a peer's error message is text, not markup.
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"


async def test_empty_daemon_renders(client: Client, service: FakeService) -> None:
    service.state.update(peers=[], jobs=[], landed=[], runs=[])
    service.state["cluster"]["staging"] = 0
    service.catalog = []
    await log_in(client)
    text = await (await client.get("/")).text()
    assert "No peers yet" in text
    assert "No transfers" in text
    assert "No dataset in any verified catalog yet" in text


async def test_search_form_calls_service_search(client: Client, service: FakeService) -> None:
    await log_in(client)
    text = await (await client.get("/", params={"q": "image", "format": "parquet", "publisher": ""})).text()
    assert service.searches[-1] == ("image", {"format": "parquet"})
    assert "imagenet" in text
    assert 'value="image"' in text
    text = await (await client.get("/", params={"q": "nothing"})).text()
    assert "No dataset matches" in text


async def test_partial_renders_sections_only(client: Client) -> None:
    await log_in(client)
    text = await (await client.get("/partial")).text()
    assert '<section id="transfers">' in text
    assert "<html" not in text


async def test_progress_events_show_rate_eta_and_peers(client: Client, service: FakeService) -> None:
    await log_in(client)
    service.events.emit("fetch.progress", job="f-0001", done_bytes=20 * 1024**2, total_bytes=40 * 1024**2,
                        rate=2 * 1024**2, eta=10, peers=3)
    await asyncio.sleep(0.01)
    text = await (await client.get("/")).text()
    assert "20.0 MiB / 40.0 MiB (50.0%)" in text
    assert "2.0 MiB/s · ETA 10s · 3 peers" in text


async def test_static_files_need_no_token(client: Client) -> None:
    for name, kind in (("status.js", "javascript"), ("status.css", "text/css")):
        response = await client.get(f"/static/{name}")
        assert response.status == 200
        assert kind in response.headers["Content-Type"]
    assert (await client.get("/static/..%2fstatus.py")).status in (403, 404)


async def test_one_time_link_works_once(client: Client) -> None:
    assert (await client.post("/v1/login-link")).status == 401  # only the token holder mints links
    response = await client.post("/v1/login-link", headers={"Authorization": f"Bearer {TOKEN}"})
    url = (await response.json())["url"]
    assert TOKEN not in url
    path = url.removeprefix(str(client.make_url("")))
    assert path.startswith("/login/")

    first = await client.get(path, allow_redirects=False)
    assert first.status == 303
    assert first.headers["Location"] == "/"  # the code leaves the address bar at once
    assert "HttpOnly" in first.headers["Set-Cookie"]
    assert (await client.get("/")).status == 200

    client.session.cookie_jar.clear()
    second = await client.get(path, allow_redirects=False)
    assert second.status == 403
    assert "Set-Cookie" not in second.headers
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_one_time_link_expires(service: FakeService) -> None:
    now = [1000.0]
    codes = LoginCodes(ttl=60, clock=lambda: now[0])
    async with TestClient(TestServer(make_app(service, codes))) as client:
        fresh, stale = codes.new(), codes.new()
        now[0] += 61
        assert (await client.get(f"/login/{stale}", allow_redirects=False)).status == 403
        assert (await client.get(f"/login/{fresh}", allow_redirects=False)).status == 403
        assert (await client.get("/login/made-up", allow_redirects=False)).status == 403


async def test_event_stream_with_the_login_cookie(client: Client, service: FakeService) -> None:
    await log_in(client)
    async with client.get("/v1/events") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert await response.content.readline() == b": connected\n"
        await response.content.readline()
        service.events.emit("fetch.progress", job="f-0001", done_bytes=1, total_bytes=2, rate=1, eta=1, peers=1)
        lines = [await response.content.readline() for _ in range(3)]
    assert lines[1] == b"event: fetch.progress\n"
    data = json.loads(lines[2].removeprefix(b"data: "))
    assert data["job"] == "f-0001"
    assert data["done_bytes"] == 1


async def test_seeding_shows_bytes_sent_per_dataset_and_per_remote_peer(
        client: Client, service: FakeService) -> None:
    service.state["transfer"] = {
        "uploaded": 3 * 2**20, "upload_rate": 0.0,
        "datasets": [{"dataset": "c-abc123/clicks@1", "sent": 3 * 2**20}],
        # The client name comes from the remote peer's handshake: outside text.
        "peers": [{"address": "127.0.0.1:51413", "client": "<b>qBittorrent</b>", "sent": 3 * 2**20}],
    }
    await log_in(client)
    text = await (await client.get("/")).text()
    seeding = text.split('<section id="seeding">')[1].split("</section>")[0]
    assert "3.0 MiB sent" in seeding
    assert "clicks@1" in seeding and "127.0.0.1:51413" in seeding
    assert "&lt;b&gt;qBittorrent&lt;/b&gt;" in seeding and "<b>" not in seeding
    service.state["transfer"] = {"uploaded": 0, "upload_rate": 0.0, "datasets": [], "peers": []}
    assert "Nothing sent to other clusters yet" in await (await client.get("/")).text()
