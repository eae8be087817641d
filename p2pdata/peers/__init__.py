"""Peers: finding other clusters' daemons (listed, zeroconf, the DHT) and talking to them.

Imports only the catalog room and p2pdata.errors; the daemon composes the pieces.
"""

from p2pdata.peers.client import CatalogFetch, ClientLimits, PeerClient, PeerInfo, tls_context
from p2pdata.peers.dht import (
    Advert,
    DhtDiscovery,
    DhtRecord,
    DhtRefused,
    SeenStore,
    check_item,
    prove_cluster,
)
from p2pdata.peers.directory import PeerDirectory
from p2pdata.peers.discovery import SERVICE_TYPE, ListedPeers, PeerSource, ZeroconfDiscovery
from p2pdata.peers.errors import (
    InvalidPeerUrl,
    PeerBadResponse,
    PeerHttpError,
    PeerRequestError,
    PeerTimeout,
    PeerTlsError,
    PeerTooLarge,
    PeerUnreachable,
)
from p2pdata.peers.health import PeerHealth, PeerState, PeerStatus, Source, merge_peer_urls
from p2pdata.peers.store import HealthStore
from p2pdata.peers.sync import SyncOutcome, SyncResult, SyncScheduler, catalog_verifier, sync_peer
from p2pdata.peers.urls import normalize_peer_url

__all__ = [
    "SERVICE_TYPE",
    "Advert",
    "CatalogFetch",
    "ClientLimits",
    "DhtDiscovery",
    "DhtRecord",
    "DhtRefused",
    "HealthStore",
    "InvalidPeerUrl",
    "ListedPeers",
    "PeerBadResponse",
    "PeerClient",
    "PeerDirectory",
    "PeerHealth",
    "PeerHttpError",
    "PeerInfo",
    "PeerRequestError",
    "PeerSource",
    "PeerState",
    "PeerStatus",
    "PeerTimeout",
    "PeerTlsError",
    "PeerTooLarge",
    "PeerUnreachable",
    "SeenStore",
    "Source",
    "SyncOutcome",
    "SyncResult",
    "SyncScheduler",
    "ZeroconfDiscovery",
    "catalog_verifier",
    "check_item",
    "merge_peer_urls",
    "normalize_peer_url",
    "prove_cluster",
    "sync_peer",
    "tls_context",
]
