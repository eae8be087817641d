"""The BitTorrent DHT through a libtorrent session of its own (DHT only: no torrents, no TCP).

Kept apart from the swarm session so that turning the DHT on changes nothing in how swarms
run, and so that restricted datasets, whose swarms live in the other session, can never be
announced here. The node joins only through the bootstrap nodes it is given: libtorrent's
default routers are replaced, never added to, so a node given none talks to no one.

Gets of BEP 44 mutable items go through libtorrent (it checks the signature and hands over
the highest sequence number found). Puts do not: libtorrent's Python binding numbers items
itself and binds no `dht_direct_request`, so `put` speaks KRPC from a UDP socket of its own
(`bep44.MutablePut` decides what to send), with the sequence number the caller signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import libtorrent as lt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from p2pdata.catalog.identity import bep44_message
from p2pdata.errors import TransferError
from p2pdata.transfer.alerts import AlertPump
from p2pdata.transfer.bep44 import MAX_DATAGRAM, Endpoint, MutableItem, MutablePut, PutResult, start_nodes

log = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

MAX_VALUE = 1000  # BEP 44: the bencoded value may be at most 1000 bytes


@dataclass(frozen=True)
class DhtSettings:
    listen: str = "0.0.0.0:6882"  # UDP
    bootstrap: tuple[str, ...] = ()  # "host:port" of nodes to join through; none = alone


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"DHT node {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _settings(settings: DhtSettings) -> dict[str, Any]:
    cat = lt.alert_category
    return {
        "listen_interfaces": settings.listen,
        "enable_dht": True,
        # Replaces libtorrent's default routers (dht.libtorrent.org and friends).
        "dht_bootstrap_nodes": ",".join(settings.bootstrap),
        "user_agent": "p2pdata",
        # This session carries no torrents: no TCP peers, nothing broadcast or mapped.
        "enable_outgoing_tcp": False,
        "enable_incoming_tcp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        # A private DHT (several clusters behind one address, or a LAN) is a legal DHT here:
        # nodes on local addresses, several per IP, node ids not derived from the address.
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_prefer_verified_node_ids": False,
        "dht_ignore_dark_internet": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": cat.dht | cat.dht_operation | cat.error | cat.status,
        "alert_queue_size": 10_000,
    }


class DhtNode:
    """One DHT node per daemon. Every method waits for its answer with a deadline."""

    def __init__(self, settings: DhtSettings) -> None:
        for node in settings.bootstrap:
            _endpoint(node)  # a malformed entry fails the start, not the first lookup
        self.settings = settings
        self._ses: lt.session | None = None
        self._alerts: AlertPump | None = None
        self._gets: dict[tuple[bytes, bytes], list[_Collect[MutableItem]]] = defaultdict(list)
        self._peers: dict[bytes, list[_Collect[tuple[str, int]]]] = defaultdict(list)

    async def start(self) -> None:
        self._ses = lt.session(_settings(self.settings))
        if self._ses.listen_port() == 0:  # bound synchronously: no port means no socket
            holder = [self._ses]
            self._ses = None
            await asyncio.to_thread(holder.clear)
            raise TransferError(f"the DHT node cannot listen on {self.settings.listen} "
                                "([discovery] dht_listen): no such address here, or not allowed")
        self._alerts = AlertPump(self._ses, self._dispatch)
        for node in self.settings.bootstrap:
            self._ses.add_dht_node(_endpoint(node))

    async def close(self) -> None:
        if self._ses is None:
            return
        if self._alerts is not None:
            await self._alerts.stop()
        ses, self._ses = self._ses, None
        holder = [ses]
        del ses
        await asyncio.to_thread(holder.clear)
        if self._alerts is not None:  # only now: libtorrent may write to it until it is gone
            self._alerts.close()
            self._alerts = None

    @property
    def port(self) -> int:
        return self._session().listen_port()

    def session_settings(self) -> dict[str, Any]:
        """What libtorrent was really told (tests assert no public router is in it)."""
        return self._session().get_settings()

    def node_count(self) -> int:
        with warnings.catch_warnings():  # deprecated, but the one synchronous count there is
            warnings.simplefilter("ignore", DeprecationWarning)
            return int(self._session().status().dht_nodes)

    async def put(self, private_key: Ed25519PrivateKey, value: bytes, salt: bytes, seq: int,
                  timeout: float = 30.0) -> PutResult:
        """Store `value` under our key and `salt` at sequence number `seq`, signed here.

        Never raises for what the DHT answered: the result says whether nodes stored it, hold
        a higher sequence number (`behind`) or another value at this one (`conflict`).
        """
        if len(value) + len(str(len(value))) + 1 > MAX_VALUE:
            raise TransferError(f"a DHT item holds at most {MAX_VALUE} bytes; this one is {len(value)}")
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        item = MutableItem(public, salt, seq, value, private_key.sign(bep44_message(salt, seq, value)))
        host = self.settings.listen.rpartition(":")[0].strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        loop = asyncio.get_running_loop()
        bootstrap = await asyncio.gather(*(_resolve(loop, node, family, timeout / 4)
                                           for node in self.settings.bootstrap))
        own = ("::1" if family == socket.AF_INET6 else "127.0.0.1") if host in ("0.0.0.0", "::") else host
        put = MutablePut(item, start_nodes((own, self.port), [b for b in bootstrap if b]),
                         now=loop.time(), node_id=os.urandom(20), timeout=timeout,
                         ipv6=family == socket.AF_INET6)
        arrived = asyncio.Event()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Krpc(put, arrived), local_addr=(host, 0), family=family)
        except OSError as exc:
            raise TransferError(f"no UDP socket for a DHT put on {host}: {exc}") from exc
        try:
            while True:
                for endpoint, data in put.poll(loop.time()):
                    transport.sendto(data, endpoint)
                if put.result is not None:
                    return put.result
                arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), max(0.0, put.wake_at() - loop.time()))
        finally:
            transport.close()

    async def get(self, public_key: bytes, salt: bytes, timeout: float = 30.0,
                  settle: float = 3.0) -> list[MutableItem]:
        """Every item seen under (key, salt), newest first; may be empty.

        Waits until the lookup has heard from every node it asked, or `settle` seconds after
        the first item came (one dead node in the way would otherwise hold the answer for
        libtorrent's full request timeout), or `timeout`.
        """
        if len(public_key) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        collect: _Collect[MutableItem] = _Collect(settle)
        key = (public_key, salt)
        self._gets[key].append(collect)
        try:
            self._session().dht_get_mutable_item(public_key, salt)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(collect.done.wait(), timeout)
        finally:
            collect.cancel()
            _discard(self._gets, key, collect)
        return sorted(collect.items, key=lambda item: -item.seq)

    def announce(self, info_hash: bytes, port: int) -> None:
        """Say on the DHT that we seed this torrent on `port` (the swarm session's)."""
        self._session().dht_announce(_sha1_hash(info_hash), port, 0)

    async def get_peers(self, info_hash: bytes, timeout: float = 30.0) -> list[tuple[str, int]]:
        """Peers the DHT knows for this torrent; what arrived before the deadline."""
        collect: _Collect[tuple[str, int]] = _Collect()
        key = _truncated(info_hash)
        self._peers[key].append(collect)
        try:
            self._session().dht_get_peers(_sha1_hash(info_hash))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(collect.done.wait(), timeout)
        finally:
            collect.cancel()
            _discard(self._peers, key, collect)
        return list(dict.fromkeys(collect.items))

    # ---- alerts -------------------------------------------------------------------------------

    def _session(self) -> lt.session:
        if self._ses is None:
            raise TransferError("the DHT node is not running")
        return self._ses

    def _dispatch(self, alert: lt.alert) -> None:
        if isinstance(alert, lt.dht_mutable_item_alert):
            key = (bytes(alert.key), bytes(alert.salt))
            item = _item(alert)
            for collect in self._gets.get(key, []):
                if item is not None:
                    collect.add([item])
                if alert.authoritative:  # the lookup heard from every node it will hear from
                    collect.done.set()
        elif isinstance(alert, lt.dht_get_peers_reply_alert):
            found = [(str(host), int(port)) for host, port in alert.peers()]
            for collect in self._peers.get(_truncated(bytes(alert.info_hash.to_bytes())), []):
                collect.add(found)
        elif isinstance(alert, lt.listen_failed_alert):
            log.error("DHT: %s", alert.message())


class _Krpc(asyncio.DatagramProtocol):
    """Hands each datagram (bounded) to the put it belongs to, and wakes its loop."""

    def __init__(self, put: MutablePut, arrived: asyncio.Event) -> None:
        self._put = put
        self._arrived = arrived

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) <= MAX_DATAGRAM:
            self._put.on_datagram((str(addr[0]), int(addr[1])), data,
                                  asyncio.get_running_loop().time())
            self._arrived.set()

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP unreachable: that node timed out
        log.debug("DHT put: %s", exc)


async def _resolve(loop: asyncio.AbstractEventLoop, node: str, family: int,
                   timeout: float) -> Endpoint | None:
    """A bootstrap node as the address its answers will come from (None if it has none, or
    if the resolver does not answer within `timeout`: a put never waits on it for long)."""
    host, port = _endpoint(node)
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM), timeout)
    except (OSError, TimeoutError) as exc:
        log.warning("DHT bootstrap node %s: %s", node, str(exc) or "no address in time")
        return None
    return (str(infos[0][4][0]), int(infos[0][4][1])) if infos else None


class _Collect(Generic[T]):
    """What one lookup gathered; `done` is set `settle` seconds after the first find."""

    def __init__(self, settle: float = 0.0) -> None:
        self.items: list[T] = []
        self.done = asyncio.Event()
        self._settle = settle
        self._timer: asyncio.TimerHandle | None = None

    def add(self, found: list[T]) -> None:
        self.items.extend(found)
        if self.items and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._settle, self.done.set)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _item(alert: Any) -> MutableItem | None:
    if alert.seq <= 0:  # the lookup's end when nothing was found
        return None
    value = alert.item
    return MutableItem(
        public_key=bytes(alert.key),
        salt=bytes(alert.salt),
        seq=int(alert.seq),
        value=value if isinstance(value, bytes) else None,
        signature=bytes(alert.signature),
    )


def _truncated(info_hash: bytes) -> bytes:
    # The DHT addresses torrents by 20 bytes: a v2 (SHA-256) info hash is truncated.
    return info_hash[:20]


def _sha1_hash(info_hash: bytes) -> lt.sha1_hash:
    return lt.sha1_hash(_truncated(info_hash))


def _discard(table: dict[K, list[V]], key: K, value: V) -> None:
    waiting = table.get(key)
    if waiting is not None:
        with contextlib.suppress(ValueError):
            waiting.remove(value)
        if not waiting:
            del table[key]

