"""Delegation tokens: sent instead of user.name on every request, never logged.

Without Kerberos, Hadoop 2.7.3 ignores ``delegation=`` and runs the request as its default
web user (dr.who), and drops the token from its DataNode redirects; so a recording
stand-in WebHDFS checks what the client sends, and the real cluster what it accepts.
"""

from __future__ import annotations

import getpass
import logging
import traceback
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import MultiDictProxy

from p2pdata.hdfs import HdfsConnectionError, HdfsError, HdfsRemoteError, WebHdfsClient
from p2pdata.hdfs.localcluster import LocalHdfs

TOKEN = "HAAEcm9vdARyb290AIoBmUpSEcOKAZluXpXDAQIUsecretsecretsecretXX8SV0VCSERGUyBkZWxlZ2F0aW9u"
Seen = list[tuple[str, str, str, MultiDictProxy[str]]]


@pytest.fixture
async def fake_webhdfs() -> AsyncIterator[tuple[str, Seen]]:
    """A NameNode and DataNode stand-in on 127.0.0.1 that records every request."""
    seen: Seen = []

    async def namenode(request: web.Request) -> web.StreamResponse:
        path, op = request.match_info["path"], request.query["op"]
        seen.append(("namenode", request.method, op, request.query))
        if path.startswith("/echo"):  # an error that quotes the request back
            return web.json_response({"RemoteException": {
                "exception": "IOException", "javaClassName": "java.io.IOException",
                "message": f"cannot use {request.query_string}"}}, status=500)
        if path == "/loop":
            return web.Response(status=307, headers={"Location": str(request.url)})
        if path == "/badlocation":
            return web.Response(status=307, headers={"Location": "http://127.0.0.1:99999/x?op=OPEN"})
        if op in ("CREATE", "APPEND", "OPEN", "GETFILECHECKSUM"):
            location = (f"http://127.0.0.1:{request.url.port}/datanode/webhdfs/v1{path}"
                        f"?op={op}&namenoderpcaddress=127.0.0.1:8020")
            if path.startswith("/secure"):  # a secure NameNode copies the token itself
                location += "&delegation=" + request.query.get("delegation", "")
            return web.Response(status=307, headers={"Location": location})
        if op == "GETFILESTATUS":
            return web.json_response({"FileStatus": {"type": "FILE", "length": 4}})
        return web.json_response({"boolean": True})

    async def datanode(request: web.Request) -> web.StreamResponse:
        op = request.query["op"]
        seen.append(("datanode", request.method, op, request.query))
        await request.read()
        if op == "OPEN":
            return web.Response(body=b"data")
        if op == "GETFILECHECKSUM":
            return web.json_response({"FileChecksum": {"algorithm": "MD5", "length": 28}})
        return web.Response(status=201 if op == "CREATE" else 200)

    app = web.Application()
    app.router.add_route("*", "/webhdfs/v1{path:.*}", namenode)
    app.router.add_route("*", "/datanode/webhdfs/v1{path:.*}", datanode)
    runner = web.AppRunner(app, access_log=None)  # the stand-in server's log is not ours
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_token_replaces_user_name_on_every_request(
        fake_webhdfs: tuple[str, Seen]) -> None:
    url, seen = fake_webhdfs
    async with WebHdfsClient(url, user="alice", delegation=TOKEN) as client:
        await client.mkdirs("/d")
        await client.create("/d/f", b"data")
        await client.append("/d/f", b"more")
        assert await client.read("/d/f") == b"data"
        assert (await client.checksum("/d/f"))["length"] == 28
        assert (await client.status("/d/f")).length == 4
        await client.create("/secure/f", b"data")
    hops = [(node, op) for node, _, op, _ in seen]
    assert hops == [("namenode", "MKDIRS"),
                    ("namenode", "CREATE"), ("datanode", "CREATE"),
                    ("namenode", "APPEND"), ("datanode", "APPEND"),
                    ("namenode", "OPEN"), ("datanode", "OPEN"),
                    ("namenode", "GETFILECHECKSUM"), ("datanode", "GETFILECHECKSUM"),
                    ("namenode", "GETFILESTATUS"),
                    ("namenode", "CREATE"), ("datanode", "CREATE")]
    for node, _, op, query in seen:
        assert query.getall("delegation") == [TOKEN], (node, op)  # once, even if copied
        assert "user.name" not in query, (node, op)


async def test_user_name_reaches_the_datanode_without_a_token(
        fake_webhdfs: tuple[str, Seen]) -> None:
    url, seen = fake_webhdfs
    async with WebHdfsClient(url, user="alice") as client:
        await client.create("/d/f", b"data")
        assert await client.read("/d/f") == b"data"
    assert [q.getall("user.name") for _, _, _, q in seen] == [["alice"]] * 4
    assert not any("delegation" in q for _, _, _, q in seen)


async def test_token_is_never_logged_or_shown(fake_webhdfs: tuple[str, Seen],
                                              caplog: pytest.LogCaptureFixture) -> None:
    url, _ = fake_webhdfs
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with WebHdfsClient(url, delegation=TOKEN, retries=2, backoff=0.01) as client:
        # A 5xx that quotes the token is retried (logged), then raised.
        with pytest.raises(HdfsRemoteError, match="<delegation token>") as echoed:
            await client.status("/echo")
        errors.append(echoed.value)
        # aiohttp's own error names the (bad) redirect URL the token was added to.
        with pytest.raises(HdfsConnectionError) as bad_url:
            await client.read("/badlocation")
        errors.append(bad_url.value)
        with pytest.raises(HdfsError, match="more than 5 redirects") as loop:
            await client.read("/loop")
        errors.append(loop.value)
    async with WebHdfsClient("http://127.0.0.1:9", delegation=TOKEN, retries=1,
                             backoff=0.01) as dead:
        with pytest.raises(HdfsConnectionError) as refused:
            await dead.status("/")
        errors.append(refused.value)
    assert "retry" in caplog.text
    shown = caplog.text + "".join(
        "".join(traceback.format_exception(error)) + repr(error) for error in errors)
    assert TOKEN not in shown and TOKEN[:20] not in shown


@pytest.mark.hdfs
async def test_real_namenode_issues_and_ignores_tokens_without_kerberos(
        hdfs_cluster: LocalHdfs, unique: str) -> None:
    me = getpass.getuser()
    async with aiohttp.ClientSession() as session, session.get(
            f"{hdfs_cluster.webhdfs_url}/webhdfs/v1/",
            params={"op": "GETDELEGATIONTOKEN", "renewer": me, "user.name": me}) as resp:
        body: dict[str, Any] = await resp.json()
    token = body["Token"]["urlString"]
    assert resp.status == 200 and len(token) > 40

    async with WebHdfsClient(hdfs_cluster.webhdfs_url, user=me) as owner:
        await owner.mkdirs(f"/{unique}/shared", permission="777")
    async with WebHdfsClient(hdfs_cluster.webhdfs_url, user=me, delegation=token) as client:
        await client.create(f"/{unique}/shared/f", b"with a token")
        assert await client.read(f"/{unique}/shared/f") == b"with a token"
        # No user.name was sent, so HDFS without security runs it as its default web user.
        assert (await client.status(f"/{unique}/shared/f")).owner == "dr.who"
