"""Connection limits for the HTTP servers: a per-address cap and a deadline for headers.

A flood of half-open requests must not exhaust the process's file descriptors and take
both APIs down. Each server accepts at most `per_ip` connections from one address and
`total` overall; a connection that has not sent a complete request head within
`header_timeout` seconds (from connecting, or from its last answer) is closed. A flood is
logged when it starts and when it ends, never once per refused connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger("p2pdata.web.guard")

_ALL = "*"  # the gate's key for the total count


@dataclass(frozen=True)
class ConnectionLimits:
    per_ip: int = 32
    total: int = 512
    # Seconds to send a request head; aiohttp's keep-alive timer enforces it, because it
    # closes a connection whose handler is still waiting for a complete request.
    header_timeout: float = 10.0


class ConnectionGate:
    """Counts open connections per address; a plain class, the protocol below drives it."""

    def __init__(self, limits: ConnectionLimits, name: str) -> None:
        self.limits = limits
        self.name = name
        self.open: dict[str, int] = {}
        self.refused: dict[str, int] = {}  # per flooding address (and _ALL): refused so far

    def admit(self, address: str) -> bool:
        over = (self.open.get(_ALL, 0) >= self.limits.total and _ALL) or (
            self.open.get(address, 0) >= self.limits.per_ip and address)
        if over:
            if not self.refused.get(over):
                log.warning("%s: connection flood from %s: over %d open connections, refusing more "
                            "(logged again when it ends)", self.name,
                            "all addresses" if over == _ALL else address,
                            self.limits.total if over == _ALL else self.limits.per_ip)
            self.refused[over] = self.refused.get(over, 0) + 1
            return False
        for key in (address, _ALL):
            self.open[key] = self.open.get(key, 0) + 1
        return True

    def release(self, address: str) -> None:
        for key in (address, _ALL):
            left = self.open[key] = self.open[key] - 1
            if not left:
                del self.open[key]
            if left <= (self.limits.total if key == _ALL else self.limits.per_ip) // 2 and self.refused.get(key):
                log.warning("%s: connection flood from %s ended: %d connections refused", self.name,
                            "all addresses" if key == _ALL else key, self.refused.pop(key))


class _GatedProtocol(asyncio.Protocol):
    """Admits a connection through the gate, then hands everything to aiohttp's protocol."""

    def __init__(self, inner: Any, gate: ConnectionGate) -> None:
        self.inner, self.gate = inner, gate
        self.address: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else "?"
        if not self.gate.admit(address):
            transport.abort()
            return
        self.address = address
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.address is not None:
            self.gate.release(self.address)
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.address is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.address is not None else None

    def pause_writing(self) -> None:
        if self.address is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.address is not None:
            self.inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections pass a ConnectionGate."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: ConnectionGate, *,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self.gate = gate

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _GatedProtocol(server(), self.gate), self._host, self._port,
            ssl=self._ssl_context, backlog=self._backlog,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


def guarded_runner(app: web.Application, limits: ConnectionLimits) -> web.AppRunner:
    """An AppRunner whose keep-alive timer is the header deadline (see ConnectionLimits)."""
    return web.AppRunner(app, keepalive_timeout=limits.header_timeout)
