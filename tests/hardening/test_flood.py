"""Half-open requests from one address: capped, timed out, logged once; others still served."""

from __future__ import annotations

import asyncio
import http.client
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from p2pdata.devcluster import wait_for

FLOOD = 120
PER_IP = 16


def _half_open(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    return sock


def _closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_a_flood_of_half_open_requests_is_capped_timed_out_and_logged_once(make_daemon: Any) -> None:
    alpha = make_daemon("alpha", peer_api={"header_timeout": 2, "connections_per_ip": PER_IP})
    address = urlsplit(alpha.peer_url)
    started = time.monotonic()
    flood = [_half_open(address.hostname, address.port) for _ in range(FLOOD)]
    # Only PER_IP stay open; the rest are closed at once.
    wait_for(lambda: sum(not _closed(s) for s in flood) <= PER_IP, timeout=10,
             what="connections over the per-address cap to be closed")

    # Another address (a peer behind its own IP) is served meanwhile.
    honest = http.client.HTTPConnection(address.hostname, address.port, timeout=10,
                                        source_address=("127.0.0.2", 0))
    honest.request("GET", "/v1/info")
    assert honest.getresponse().status == 200
    honest.close()

    # The ones let in never finish their head: closed at the header deadline.
    wait_for(lambda: all(_closed(s) for s in flood), timeout=20, what="half-open requests to time out")
    assert time.monotonic() - started >= 2
    for sock in flood:
        sock.close()
    log = wait_for(lambda: (text := alpha.log.read_text()) and "flood from 127.0.0.1 ended" in text and text,
                   timeout=10, what="the flood's end in the log")
    assert log.count("refusing more") == 1, log


async def test_a_trickled_control_body_times_out() -> None:
    from aiohttp import web

    from p2pdata.events import EventHub
    from p2pdata.web import control_app

    class Idle:
        events = EventHub()

        async def add_peer(self, url: str) -> dict[str, str]:
            raise AssertionError("a body that never arrived was handled")

    runner = web.AppRunner(control_app(Idle(), "token", body_timeout=1))  # type: ignore[arg-type]
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/peers HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer token\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{" % port)
        await writer.drain()  # and never the other 99 bytes
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.startswith(b"HTTP/1.1 408"), status
        writer.close()
    finally:
        await runner.cleanup()
