"""Catalog sync: one sync of one peer (info, conditional catalog fetch, verification, health
update), and the scheduler that runs one task per due peer.

The daemon's sync (around `sync_peer`) runs for each URL `PeerHealth.due(now)` returns and
stores what it gets back; verification is passed in (the catalog room's verifier, closed over the trust store
and the catalog held for that peer), so this module decides nothing about trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
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

log = logging.getLogger("p2pdata.peers.sync")

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


class SyncScheduler:
    """Runs each due peer's sync in a task of its own, under a deadline.

    One `gather` over all due peers let a peer trickling its catalog hold every honest
    peer's next sync for as long as its own took. Here a slow peer delays only itself: its
    sync is abandoned at the deadline and counted as a failure, so it is backed off like
    a peer that does not answer, while the others are synced on their own schedule.
    """

    def __init__(self, health: PeerHealth, sync: Callable[[str], Awaitable[None]], *,
                 deadline: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.health = health
        self.sync = sync
        self.deadline = deadline
        self.clock = clock
        self.running: dict[str, asyncio.Task[None]] = {}

    async def run(self, wakeup: asyncio.Event) -> None:
        """Until cancelled: start due syncs, then sleep until the next is due or `wakeup`."""
        try:
            while True:
                for url in self.health.due(self.clock()):
                    if url not in self.running:
                        self.running[url] = asyncio.create_task(self._one(url, wakeup))
                waiting = [s.next_attempt for s in self.health.peers()
                           if s.next_attempt is not None and s.url not in self.running]
                delay = max(0.05, min(waiting) - self.clock()) if waiting else 60.0
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout=delay)
        finally:
            for task in self.running.values():
                task.cancel()
            await asyncio.gather(*self.running.values(), return_exceptions=True)

    async def _one(self, url: str, wakeup: asyncio.Event) -> None:
        try:
            async with asyncio.timeout(self.deadline):
                await self.sync(url)
        except TimeoutError:
            if self.health.get(url) is not None:
                self.health.failed(url, self.clock(), f"peer {url}: sync did not finish within "
                                                      f"{self.deadline:.0f} s")
            log.warning("sync with %s abandoned after %.0f s", url, self.deadline)
        except Exception:  # one peer's bug must not stop syncing the others
            log.exception("sync with %s failed", url)
        finally:
            self.running.pop(url, None)
            wakeup.set()  # its next attempt is now scheduled: the loop sleeps until then
