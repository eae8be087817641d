"""The CLI's control client: every answer of the daemon becomes data or one clear error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from p2pdata.config import load_config, secure_home, write_default_config
from p2pdata.errors import NotFound, P2pdataError
from p2pdata.web.client import ControlClient


async def _crash(request: web.Request) -> web.Response:
    raise RuntimeError("a bug in a handler")  # aiohttp answers 500 in plain text


async def _refused(request: web.Request) -> web.Response:
    return web.json_response({"error": "P2pdataError", "message": "no dataset x"}, status=400)


async def _missing(request: web.Request) -> web.Response:
    return web.json_response({"error": "NotHeld", "message": "no dataset x@1 in any held catalog"},
                             status=404)


async def _ok(request: web.Request) -> web.Response:
    return web.json_response([1, 2])


async def _stuck(request: web.Request) -> web.Response:
    await asyncio.Event().wait()  # a daemon that accepted the request and never answers
    raise AssertionError("unreachable")


async def _other_token(request: web.Request) -> web.Response:
    return web.json_response({"error": "Unauthorized", "message": "missing or wrong control token"},
                             status=401)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[ControlClient]:
    app = web.Application()
    app.router.add_get("/crash", _crash)
    app.router.add_get("/refused", _refused)
    app.router.add_get("/ok", _ok)
    app.router.add_get("/missing", _missing)
    app.router.add_get("/stuck", _stuck)
    app.router.add_get("/other", _other_token)
    runner = web.AppRunner(app, shutdown_timeout=1)  # the stuck handler is cut off
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    secure_home(tmp_path)
    write_default_config(tmp_path, "x")
    config = load_config(tmp_path)
    config.token_file.write_text("t")
    (tmp_path / "daemon.json").write_text(json.dumps({"control_url": f"http://127.0.0.1:{port}"}))
    yield ControlClient(config, read_timeout=0.5)
    await runner.cleanup()


async def test_plain_text_errors_are_one_clear_error(client: ControlClient) -> None:
    assert await client.call("GET", "/ok") == [1, 2]
    with pytest.raises(P2pdataError, match=r"^no dataset x$"):
        await client.call("GET", "/refused")
    with pytest.raises(NotFound, match=r"^no dataset x@1 in any held catalog$"):  # a notebook catches it
        await client.call("GET", "/missing")
    with pytest.raises(P2pdataError, match=r"control API GET /crash: HTTP 500 .*Internal Server Error"):
        await client.call("GET", "/crash")
    with pytest.raises(P2pdataError, match=r"control API GET /nowhere: HTTP 404"):
        await client.call("GET", "/nowhere")


async def test_a_stuck_daemon_is_one_clear_error_not_a_hang(client: ControlClient) -> None:
    with pytest.raises(P2pdataError, match=r"did not answer GET /stuck within 0.5 s: it runs but is stuck"):
        await asyncio.wait_for(client.call("GET", "/stuck"), 10)


async def test_another_homes_daemon_is_named(client: ControlClient) -> None:
    with pytest.raises(P2pdataError, match=r"refused the control token of .*another home's daemon"):
        await client.call("GET", "/other")


def test_a_damaged_daemon_record_falls_back_to_the_configured_address(tmp_path: Path) -> None:
    secure_home(tmp_path)
    write_default_config(tmp_path, "x")
    config = load_config(tmp_path)
    config.token_file.write_text("t")
    (tmp_path / "daemon.json").write_text("{bad")
    client = ControlClient(config)
    assert client.base == f"http://{config.control.host}:{config.control.port}"
