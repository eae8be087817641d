"""The BitTorrent DHT through a libtorrent session of its own (DHT only: no torrents, no TCP).

Kept apart from the swarm session so that turning the DHT on changes nothing in how swarms
run, and so that restricted datasets, whose swarms live in the other session, can never be
announced here. The node joins only through the bootstrap nodes it is given: libtorrent's
default routers are replaced, never added to, so a node given none talks to no one.

BEP 44 mutable items are signed by libtorrent with the cluster's own Ed25519 key.
libtorrent wants the 64-byte expanded secret key (SHA-512 of the 32-byte seed, clamped),
not the seed: `expanded_secret_key` makes it. libtorrent's Python binding also chooses the
sequence number itself (the highest found on the DHT, plus one), so a caller cannot set
it; whatever must order items belongs inside the signed value too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import libtorrent as lt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pdata.errors import TransferError
from p2pdata.transfer.alerts import AlertPump

log = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

MAX_VALUE = 1000  # BEP 44: the bencoded value may be at most 1000 bytes


@dataclass(frozen=True)
class DhtSettings:
    listen: str = "0.0.0.0:6882"  # UDP
    bootstrap: tuple[str, ...] = ()  # "host:port" of nodes to join through; none = alone


@dataclass(frozen=True)
class MutableItem:
    """A BEP 44 mutable item as a DHT node handed it over: check it before believing it."""

    public_key: bytes
    salt: bytes
    seq: int
    value: bytes | None  # the bencoded string's bytes; None when the value is not a string
    signature: bytes


def expanded_secret_key(private_key: Ed25519PrivateKey) -> bytes:
    """The 64-byte secret key libtorrent's ed25519 signs with, made from an RFC 8032 seed."""
    seed = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    expanded = bytearray(hashlib.sha512(seed).digest())
    expanded[0] &= 248
    expanded[31] &= 63
    expanded[31] |= 64
    return bytes(expanded)


def _public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


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
        self._puts: dict[bytes, list[asyncio.Future[int]]] = defaultdict(list)
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

    def add_node(self, endpoint: str) -> None:
        self._session().add_dht_node(_endpoint(endpoint))

    async def put(self, private_key: Ed25519PrivateKey, value: bytes, salt: bytes,
                  timeout: float = 30.0) -> int:
        """Store `value` under our key and `salt`; the sequence number libtorrent chose.

        Raises TransferError when no node accepted it in time.
        """
        if len(value) + len(str(len(value))) + 1 > MAX_VALUE:
            raise TransferError(f"a DHT item holds at most {MAX_VALUE} bytes; this one is {len(value)}")
        public = _public_key(private_key)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._puts[public].append(future)
        try:
            self._session().dht_put_mutable_item(expanded_secret_key(private_key), public, value, salt)
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TransferError(f"no DHT node answered our put within {timeout:g} s") from None
        finally:
            _discard(self._puts, public, future)

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
        if isinstance(alert, lt.dht_put_alert) and len(alert.public_key) == 32:
            for future in self._puts.get(bytes(alert.public_key), []):
                if future.done():
                    continue
                if alert.num_success > 0:
                    future.set_result(int(alert.seq))
                else:
                    future.set_exception(TransferError("no DHT node stored our item"))
        elif isinstance(alert, lt.dht_mutable_item_alert):
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

