"""Sources of peers, behind one small protocol: a listed set (config, `peers add`), zeroconf
on the LAN, and the BitTorrent DHT (`p2pdata.peers.dht`). Each is built with the callbacks it
reports to, and the daemon starts whichever the configuration asks for.

Zeroconf advertises our peer API as `_p2pdata._tcp.local.` and browses for others. Only the configured interfaces are used (loopback in tests). What a browse finds is untrusted
input: an advert with a malformed cluster id, scheme or address is ignored, and so is our own.
Callbacks run on the event loop and must not block.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from p2pdata.peers.client import CLUSTER_ID
from p2pdata.peers.errors import InvalidPeerUrl
from p2pdata.peers.health import Source
from p2pdata.peers.urls import normalize_peer_url

SERVICE_TYPE = "_p2pdata._tcp.local."
API_VERSION = "1"
RESOLVE_TIMEOUT_MS = 3000

log = logging.getLogger(__name__)

OnFound = Callable[[str, str], None]
"""(peer base URL, cluster id) -> None"""
OnLost = Callable[[str], None]
"""(peer base URL) -> None"""


class PeerSource(Protocol):
    """A way of finding peers: reports them to the callbacks it was built with between
    `start` and `close`, and says which `source` it is (shown with every peer)."""

    source: Source

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class ListedPeers:
    """Peers someone named: `discovery.static_peers`, or those added with `p2pdata peers add`."""

    def __init__(self, urls: Iterable[str], source: Source,
                 on_found: Callable[[str, str | None], None]) -> None:
        self.urls = [normalize_peer_url(url) for url in urls]  # a bad entry fails the start
        self.source = source
        self._on_found = on_found

    async def start(self) -> None:
        for url in self.urls:
            self._on_found(url, None)

    async def close(self) -> None:
        pass


class ZeroconfDiscovery:
    source = Source.ZEROCONF

    def __init__(
        self,
        *,
        interfaces: Sequence[str],
        service_name: str,
        port: int,
        cluster_id: str,
        on_found: OnFound,
        on_lost: OnLost,
        scheme: str = "http",
        properties: Mapping[str, str] | None = None,
        max_found: int = 256,
    ) -> None:
        """`interfaces`: IPv4 addresses to listen and advertise on; there is no "all" default.
        `max_found`: adverts followed at once (anyone on the LAN may advertise thousands)."""
        if not interfaces:
            raise ValueError("zeroconf needs at least one interface address")
        for address in interfaces:
            if ipaddress.ip_address(address).version != 4 or address == "0.0.0.0":
                raise ValueError(f"zeroconf interface {address!r}: expected a specific IPv4 address")
        if len(service_name.encode()) > 63 or "." in service_name or not service_name:
            raise ValueError(f"service name {service_name!r}: 1 to 63 bytes, no dots")
        if not CLUSTER_ID.fullmatch(cluster_id):
            raise ValueError(f"{cluster_id!r} is not a cluster id")
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme {scheme!r}: expected http or https")
        self._interfaces = list(interfaces)
        self._cluster_id = cluster_id
        self._on_found = on_found
        self._on_lost = on_lost
        self._info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{service_name}.{SERVICE_TYPE}",
            port=port,
            addresses=[ipaddress.ip_address(a).packed for a in self._interfaces],
            properties={**(properties or {}), "cid": cluster_id, "scheme": scheme, "api": API_VERSION},
        )
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._found: dict[str, str] = {}  # service instance name -> peer URL
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._max_found = max_found
        self._full = False  # over max_found: said once in the log, until there is room again

    @property
    def found(self) -> dict[str, str]:
        """Peer URLs currently advertised by others, by service instance name."""
        return dict(self._found)

    async def start(self) -> None:
        self._zc = AsyncZeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
        # A name clash (two daemons called alike) gets a suffix instead of failing start-up.
        await (await self._zc.async_register_service(self._info, allow_name_change=True))
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_state_change]
        )

    async def close(self) -> None:
        if self._zc is None:
            return
        zc, self._zc = self._zc, None
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        for task in self._resolving.values():
            task.cancel()
        await asyncio.gather(*self._resolving.values(), return_exceptions=True)
        self._resolving.clear()
        # Awaiting the returned task is what actually sends the goodbye packets.
        await (await zc.async_unregister_service(self._info))
        await zc.async_close()

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if name == self._info.name or self._zc is None:
            return
        pending = self._resolving.pop(name, None)
        if pending is not None:
            pending.cancel()
        if state_change is ServiceStateChange.Removed:
            self._drop(name)
        elif name not in self._found and not self._room(len(self._found) + len(self._resolving)):
            return
        else:
            task = asyncio.get_running_loop().create_task(self._resolve(name))
            self._resolving[name] = task

    async def _resolve(self, name: str) -> None:
        try:
            await self._resolve_once(name)
        finally:
            if self._resolving.get(name) is asyncio.current_task():
                del self._resolving[name]

    async def _resolve_once(self, name: str) -> None:
        zc = self._zc
        if zc is None:
            return
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(zc.zeroconf, RESOLVE_TIMEOUT_MS):
            log.debug("zeroconf: %s did not resolve", name)
            return
        advert = _parse_advert(info)
        if advert is None:
            log.info("zeroconf: ignoring malformed advert %s", name)
            return
        url, cluster_id = advert
        if cluster_id == self._cluster_id:
            return  # ourselves, under another name or interface
        old = self._found.get(name)
        if old == url:
            return
        if old is not None:
            self._drop(name)
        elif not self._room(len(self._found)):
            return
        self._found[name] = url
        _call(self._on_found, url, cluster_id)

    def _room(self, followed: int) -> bool:
        """Whether one more advert may be followed; a flood is logged once, not per advert."""
        full = followed >= self._max_found
        if full and not self._full:
            log.warning("zeroconf: %d adverts followed already: ignoring more (a flood on the LAN?)",
                        self._max_found)
        self._full = full
        return not full

    def _drop(self, name: str) -> None:
        url = self._found.pop(name, None)
        # Two adverts can name one URL (a renamed daemon); lost only when none is left.
        if url is not None and url not in self._found.values():
            _call(self._on_lost, url)


def _parse_advert(info: AsyncServiceInfo) -> tuple[str, str] | None:
    props = {
        key.decode("utf-8", "replace"): (value or b"").decode("utf-8", "replace")
        for key, value in info.properties.items()
    }
    cluster_id = props.get("cid", "")
    scheme = props.get("scheme", "http")
    if props.get("api") != API_VERSION or not CLUSTER_ID.fullmatch(cluster_id):
        return None
    addresses = info.parsed_addresses(IPVersion.V4Only)
    if not addresses or not info.port:
        return None
    try:
        return normalize_peer_url(f"{scheme}://{addresses[0]}:{info.port}"), cluster_id
    except InvalidPeerUrl:
        return None


def _call(callback: Callable[..., None], *args: str) -> None:
    # A failing callback must not stop discovery of the next peer.
    try:
        callback(*args)
    except Exception:
        log.exception("zeroconf discovery callback %r failed", callback)
