"""One catalog sync of one peer: info, conditional catalog fetch, verification, health update.

The daemon calls `sync_peer` for each URL `PeerHealth.due(now)` returns and stores what it
gets back; verification is passed in (the catalog room's verifier, closed over the trust store
and the catalog held for that peer), so this module decides nothing about trust.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from p2pdata.catalog.catalog import (
    HeldCatalog,
    Limits,
    TrustCheck,
    VerifiedCatalog,
    WrongSigner,
    check_signature,
    check_trust,
    read_body,
)
from p2pdata.errors import BadSignature, CatalogError
from p2pdata.peers.client import PeerClient, PeerInfo
from p2pdata.peers.errors import PeerError
from p2pdata.peers.health import PeerHealth, PeerStatus
from p2pdata.peers.urls import normalize_peer_url

V = TypeVar("V")

Verify = Callable[[bytes, PeerInfo], V | Awaitable[V]]
"""(catalog bytes, the peer's /v1/info) -> verified catalog; raises CatalogError to refuse."""


class SyncResult(StrEnum):
    UPDATED = "updated"  # new catalog, verified: store `verified`
    NOT_MODIFIED = "not-modified"  # 304: keep what is held
    UNREACHABLE = "unreachable"  # the peer failed to answer usefully
    REJECTED = "rejected"  # it answered, but its catalog was refused: keep the last good one
    REMOVED = "removed"  # `peers remove` while we were asking: keep nothing it said


@dataclass(frozen=True)
class SyncOutcome(Generic[V]):
    url: str
    result: SyncResult
    status: PeerStatus | None  # None only when REMOVED
    info: PeerInfo | None = None
    verified: V | None = None
    etag: str | None = None  # of the new catalog (UPDATED) or the one held (NOT_MODIFIED)
    error: str | None = None


async def sync_peer(
    client: PeerClient,
    health: PeerHealth,
    url: str,
    verify: Verify[V],
    *,
    etag: str | None,
    clock: Callable[[], float],
) -> SyncOutcome[V]:
    """Sync one peer; never raises PeerError or CatalogError, it reports them in the outcome."""
    failure: PeerError | None = None
    try:
        info = await client.info(url)
        fetched = await client.catalog(url, etag)
    except PeerError as exc:
        failure = exc
    if health.get(url) is None:  # removed while we were asking
        return SyncOutcome(normalize_peer_url(url), SyncResult.REMOVED, None)
    if failure is not None:
        status = health.failed(url, clock(), str(failure))
        return SyncOutcome(status.url, SyncResult.UNREACHABLE, status, error=str(failure))
    if fetched.data is None:
        status = health.succeeded(url, clock(), info.cluster_id)
        return SyncOutcome(status.url, SyncResult.NOT_MODIFIED, status, info, etag=fetched.etag)
    try:
        checked = verify(fetched.data, info)
        verified = await checked if inspect.isawaitable(checked) else checked
    except CatalogError as exc:
        error = f"catalog refused ({type(exc).__name__}): {exc}"
        status = health.rejected(url, clock(), error, info.cluster_id)
        return SyncOutcome(status.url, SyncResult.REJECTED, status, info, error=error)
    status = health.succeeded(url, clock(), info.cluster_id)
    return SyncOutcome(status.url, SyncResult.UPDATED, status, info, verified, fetched.etag)


def catalog_verifier(
    trusted: TrustCheck,
    held: Callable[[str], HeldCatalog | None],
    clock: Callable[[], float],
    limits: Limits | None = None,
) -> Verify[VerifiedCatalog]:
    """The usual `verify`: the catalog room's rules, plus the catalog must be the peer's own.

    `held(cluster_id)` returns what is already held of that publisher (rollback protection).
    A peer may only serve its own catalog here: one signed by a third cluster is refused.
    The signature is checked against the key the peer showed, and its trust, before the
    body is decoded; checking and decoding run in a thread, so a large catalog never
    stalls the event loop. Only the trust check (SQLite) runs on the loop.
    """
    chosen = limits or Limits()

    async def verify(blob: bytes, info: PeerInfo) -> VerifiedCatalog:
        try:
            signed = await asyncio.to_thread(check_signature, blob, chosen, info.public_key)
        except WrongSigner as exc:
            raise BadSignature(f"peer says it is cluster {info.cluster_id} but serves the catalog of "
                               f"cluster {exc.signer}") from None
        check_trust(signed, trusted)
        return await asyncio.to_thread(read_body, signed, now=int(clock()), held=held(info.cluster_id),
                                       limits=chosen)

    return verify
