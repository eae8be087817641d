"""Peers: finding other clusters' daemons (zeroconf, static config) and talking to them.

Imports only the catalog room and p2pdata.errors; the daemon composes the pieces.
"""

from p2pdata.peers.client import CatalogFetch, ClientLimits, PeerClient, PeerInfo, tls_context
from p2pdata.peers.directory import PeerDirectory
from p2pdata.peers.discovery import SERVICE_TYPE, ZeroconfDiscovery
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
    "CatalogFetch",
    "ClientLimits",
    "HealthStore",
    "InvalidPeerUrl",
    "PeerBadResponse",
    "PeerClient",
    "PeerDirectory",
    "PeerHealth",
    "PeerHttpError",
    "PeerInfo",
    "PeerRequestError",
    "PeerState",
    "PeerStatus",
    "PeerTimeout",
    "PeerTlsError",
    "PeerTooLarge",
    "PeerUnreachable",
    "Source",
    "SyncOutcome",
    "SyncResult",
    "SyncScheduler",
    "ZeroconfDiscovery",
    "catalog_verifier",
    "merge_peer_urls",
    "normalize_peer_url",
    "sync_peer",
    "tls_context",
]
