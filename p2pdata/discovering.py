"""Discovery wiring: the peer sources the configuration asks for, and the DHT for public swarms.

The daemon asks `peer_sources` for its sources and starts them all; what each one is and
when it is on is decided here, from `[discovery]`. The DHT node (`discovery.dht = true`) is
shared by DHT discovery and by `DhtSeeds`, which lets public datasets find seeders on the DHT.
Restricted datasets never touch it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from p2pdata.catalog import Identity, LocalCatalog, Manifest, TrustStore
from p2pdata.catalog.identity import decode_public_key
from p2pdata.config import Config
from p2pdata.peers import (
    Advert,
    DhtDiscovery,
    ListedPeers,
    PeerClient,
    PeerHealth,
    PeerSource,
    PeerState,
    SeenStore,
    Source,
    ZeroconfDiscovery,
    prove_cluster,
)
from p2pdata.transfer import DhtNode, DhtSettings, SwarmJob

__all__ = ["DhtNode", "DhtSeeds", "dht_status", "peer_sources", "start_dht", "wake"]

log = logging.getLogger(__name__)

OnFound = Callable[[str, str | None], None]
OnLost = Callable[[str], None]


class SwarmView(Protocol):
    """A torrent in the transfer session: a seed, or a fetch's `SwarmJob`."""

    @property
    def manifest(self) -> Manifest: ...


class Swarms(Protocol):
    """The transfer session, as far as the DHT's part in swarms needs it."""

    @property
    def listen_port(self) -> int: ...

    def swarms(self) -> Sequence[SwarmView]: ...


class DiscoveryHost(Protocol):
    """What the sources need of the daemon."""

    config: Config
    identity: Identity
    conn: sqlite3.Connection
    client: PeerClient
    trust: TrustStore
    health: PeerHealth
    local_catalog: LocalCatalog
    peer_url: str
    dht: DhtNode | None

    def catalog(self, renew: bool = False) -> tuple[bytes, str]: ...

    def peer_callbacks(self, source: Source) -> tuple[OnFound, OnLost]: ...


async def start_dht(config: Config) -> DhtNode | None:
    """The daemon's DHT node, joined through `discovery.dht_bootstrap` only; None when off."""
    if not config.discovery.dht:
        return None
    node = DhtNode(DhtSettings(listen=config.discovery.dht_listen,
                               bootstrap=tuple(config.discovery.dht_bootstrap)))
    await node.start()
    return node


def peer_sources(host: DiscoveryHost, added: Iterable[str], peer_port: int) -> list[PeerSource]:
    """Every source `[discovery]` turns on, listed ones first."""
    config = host.config.discovery
    sources: list[PeerSource] = [
        ListedPeers(config.static_peers, Source.STATIC, host.peer_callbacks(Source.STATIC)[0]),
        ListedPeers(added, Source.ADDED, host.peer_callbacks(Source.ADDED)[0]),
    ]
    if config.zeroconf:
        found, lost = host.peer_callbacks(Source.ZEROCONF)
        sources.append(ZeroconfDiscovery(
            interfaces=config.interfaces,
            service_name=f"p2pdata-{host.identity.cluster_id}",
            port=peer_port,
            cluster_id=host.identity.cluster_id,
            on_found=found,
            on_lost=lost,
            scheme="https" if host.config.peer_api.tls_cert else "http",
        ))
    if host.dht is not None:
        sources.append(_dht_discovery(host, host.dht))
    return sources


def _dht_discovery(host: DiscoveryHost, node: DhtNode) -> DhtDiscovery:
    own = host.identity.cluster_id

    def advert(renew: bool) -> Advert:
        # Signs a new version when the content changed, or when asked to (`renew`).
        signed, _ = host.catalog(renew)
        return Advert((host.peer_url,), host.local_catalog.version, hashlib.sha256(signed).digest())

    def wanted() -> dict[str, bytes]:
        """Trusted clusters whose key we know and that no peer of ours reaches now."""
        reached = {s.cluster_id for s in host.health.peers()
                   if s.active and s.state is PeerState.HEALTHY}
        return {t.cluster_id: decode_public_key(t.public_key) for t in host.trust.list()
                if t.public_key and t.cluster_id != own and t.cluster_id not in reached}

    async def prove(url: str, cluster_id: str, key: bytes) -> None:
        await prove_cluster(host.client, url, cluster_id, key)

    found, lost = host.peer_callbacks(Source.DHT)
    config = host.config.discovery
    return DhtDiscovery(
        node=node, private_key=host.identity.private_key, cluster_id=own, advert=advert,
        wanted=wanted, trusted=lambda: {t.cluster_id for t in host.trust.list()}, prove=prove, seen=SeenStore(host.conn), on_found=found, on_lost=lost,
        interval=config.dht_interval, republish=config.dht_republish,
    )


class DhtSeeds:
    """Public datasets on the DHT: what we seed is announced, running fetches get seeders.

    It watches the transfer session's swarms rather than being told of each fetch: a seed or
    a finished fetch is announced (again every `announce_every` seconds), and every
    `interval` each running fetch asks the DHT for seeders of its torrent and hands them to
    its swarm. Restricted datasets are skipped here, whatever the caller: their swarms are
    SSL torrents whose members only the owner decides, and their info hashes stay off the DHT.
    """

    def __init__(self, node: DhtNode, transfer: Swarms, *, interval: float = 15.0,
                 announce_every: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._node = node
        self._transfer = transfer
        self.interval = interval
        self.announce_every = announce_every
        self._clock = clock
        self._announced: dict[bytes, float] = {}  # info hash -> when
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def step(self) -> None:
        now = self._clock()
        fetching = []
        for swarm in self._transfer.swarms():
            info_hash = _public_info_hash(swarm.manifest)
            if info_hash is None:
                continue
            if isinstance(swarm, SwarmJob) and not swarm.state.terminal:
                fetching.append((swarm, info_hash))
            elif now >= self._announced.get(info_hash, -math.inf) + self.announce_every:
                self._node.announce(info_hash, self._transfer.listen_port)
                self._announced[info_hash] = now
        await asyncio.gather(*(self._feed(swarm, info_hash) for swarm, info_hash in fetching))

    async def _feed(self, swarm: SwarmJob, info_hash: bytes) -> None:
        peers = await self._node.get_peers(info_hash, timeout=self.interval)
        if peers and not swarm.state.terminal:
            log.info("DHT: %d seeder(s) of %s", len(peers), swarm.manifest.ref)
            swarm.add_peers(peers)

    async def _loop(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:  # one bad round must not end the DHT's part in swarms
                log.exception("DHT: seeders round failed")
            await asyncio.sleep(self.interval)


def _public_info_hash(manifest: Manifest) -> bytes | None:
    if manifest.access.mode != "public" or manifest.torrent is None:
        return None
    return manifest.torrent.info_hash


def wake(sources: Iterable[PeerSource]) -> None:
    """Something we publish or trust changed: the DHT publishes and looks up now."""
    for source in sources:
        if isinstance(source, DhtDiscovery):
            source.wake()


def dht_status(host: DiscoveryHost, sources: Iterable[PeerSource]) -> dict[str, object] | None:
    """The DHT's part of `p2pdata status`: our record, who was found, what was refused."""
    if host.dht is None:
        return None
    found = next((s for s in sources if isinstance(s, DhtDiscovery)), None)
    told = host.dht.session_settings()  # what libtorrent really uses, not what we meant
    return {"port": host.dht.port, "nodes": host.dht.node_count(),
            "bootstrap": [n for n in told["dht_bootstrap_nodes"].split(",") if n],
            # Trusted by id alone: the DHT is addressed by the key, so these cannot be looked up.
            "key_unknown": [t.cluster_id for t in host.trust.list() if not t.public_key],
            **(found.status() if found is not None else {})}
