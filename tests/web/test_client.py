"""The CLI's control client: every answer of the daemon becomes data or one clear error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from p2pdata.config import load_config, secure_home, write_default_config
from p2pdata.errors import P2pdataError
from p2pdata.web.client import ControlClient


async def _crash(request: web.Request) -> web.Response:
    raise RuntimeError("a bug in a handler")  # aiohttp answers 500 in plain text


async def _refused(request: web.Request) -> web.Response:
    return web.json_response({"error": "P2pdataError", "message": "no dataset x"}, status=400)


async def _ok(request: web.Request) -> web.Response:
    return web.json_response([1, 2])


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[ControlClient]:
    app = web.Application()
    app.router.add_get("/crash", _crash)
    app.router.add_get("/refused", _refused)
    app.router.add_get("/ok", _ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    secure_home(tmp_path)
    write_default_config(tmp_path, "x")
    config = load_config(tmp_path)
    config.token_file.write_text("t")
    (tmp_path / "daemon.json").write_text(json.dumps({"control_url": f"http://127.0.0.1:{port}"}))
    yield ControlClient(config)
    await runner.cleanup()


async def test_plain_text_errors_are_one_clear_error(client: ControlClient) -> None:
    assert await client.call("GET", "/ok") == [1, 2]
    with pytest.raises(P2pdataError, match=r"^no dataset x$"):
        await client.call("GET", "/refused")
    with pytest.raises(P2pdataError, match=r"control API GET /crash: HTTP 500 .*Internal Server Error"):
        await client.call("GET", "/crash")
    with pytest.raises(P2pdataError, match=r"control API GET /nowhere: HTTP 404"):
        await client.call("GET", "/nowhere")
