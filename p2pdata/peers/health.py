"""Per-peer health: which peers we know, how they are doing, and when to sync each next.

A plain class with no I/O: every method takes the time, jitter comes from an injected
random source, and every change is reported to an injected `on_change` (the daemon saves it),
so backoff, scheduling and what survives a restart are tested with a fake clock.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from p2pdata.peers.urls import normalize_peer_url


class Source(StrEnum):
    ZEROCONF = "zeroconf"
    STATIC = "static"  # from config.toml
    ADDED = "added"  # `p2pdata peers add`
    DHT = "dht"  # a cluster's signed record on the BitTorrent DHT


# Sources that find peers by themselves (rather than being told): after a restart a peer they
# found is listed but not asked until they find it again.
DISCOVERED = frozenset({Source.ZEROCONF, Source.DHT})


class PeerState(StrEnum):
    UNKNOWN = "unknown"  # known but not contacted yet
    HEALTHY = "healthy"
    UNREACHABLE = "unreachable"  # failed, or withdrawn from zeroconf
    REJECTED = "rejected"  # answered, but served something we refuse (e.g. a bad catalog)


@dataclass(frozen=True)
class PeerStatus:
    url: str
    sources: frozenset[Source]  # empty once every way we knew it by has gone
    state: PeerState
    cluster_id: str | None = None
    last_seen: float | None = None  # last successful contact
    failures: int = 0  # consecutive
    last_error: str | None = None
    next_attempt: float | None = None  # None: not scheduled (withdrawn, nothing to retry)

    @property
    def active(self) -> bool:
        return bool(self.sources)


OnChange = Callable[[str, PeerStatus | None], None]
"""(url, its new status, or None once forgotten)."""


class PeerHealth:
    """The table of peers keyed by normalised URL."""

    def __init__(
        self,
        *,
        sync_interval: float = 300.0,
        base_backoff: float = 5.0,
        max_backoff: float = 900.0,
        jitter: float = 0.2,
        random: Callable[[], float] = _random.random,
        on_change: OnChange | None = None,
    ) -> None:
        if not 0 <= jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")
        self.sync_interval = sync_interval
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.jitter = jitter
        self._random = random
        self._on_change = on_change
        self._peers: dict[str, PeerStatus] = {}

    def _put(self, status: PeerStatus) -> PeerStatus:
        self._peers[status.url] = status
        if self._on_change is not None:
            self._on_change(status.url, status)
        return status

    def add(self, url: str, source: Source, now: float, cluster_id: str | None = None) -> PeerStatus:
        """A peer was found (zeroconf), configured or added: sync it now if it is new or returns."""
        key = normalize_peer_url(url)
        old = self._peers.get(key)
        if old is None:
            status = PeerStatus(
                key, frozenset({source}), PeerState.UNKNOWN, cluster_id=cluster_id, next_attempt=now
            )
        else:
            status = replace(
                old,
                sources=old.sources | {source},
                cluster_id=cluster_id or old.cluster_id,
                # A peer that re-announces itself is worth trying at once, backoff or not.
                next_attempt=now if source in DISCOVERED or not old.active else old.next_attempt,
            )
        return self._put(status)

    def restore(self, saved: PeerStatus, now: float) -> PeerStatus | None:
        """Health an earlier daemon saved: failures, last seen, errors and backoff carry on.

        Call it after adding the peers configured now (static, added), which keep their
        sources: a healthy or new one is synced at once (what it seeds is known only in
        memory), a failing one keeps its backoff. A peer zeroconf or the DHT found last time
        is listed, not scheduled, until it is found again. One that was only configured and is
        configured no more is forgotten. Returns what is listed, if anything.
        """
        key = normalize_peer_url(saved.url)
        current = self._peers.get(key)
        sources = current.sources if current is not None else frozenset()
        status = replace(saved, url=key, sources=sources)
        fresh = status.state in (PeerState.HEALTHY, PeerState.UNKNOWN)
        if not sources:
            if not saved.sources & DISCOVERED:
                self._peers.pop(key, None)
                if self._on_change is not None:
                    self._on_change(key, None)  # its saved row goes too
                return None
            status = replace(status, next_attempt=None)
            if fresh:  # nothing says it is still there
                status = replace(status, state=PeerState.UNREACHABLE,
                                 last_error="not seen since the daemon restarted")
        elif fresh or status.next_attempt is None:
            status = replace(status, next_attempt=now)
        else:  # bounded, in case the clock went back while we were down
            status = replace(status, next_attempt=min(status.next_attempt, now + self.max_backoff))
        return self._put(status)

    def withdraw(self, url: str, source: Source, now: float) -> PeerStatus | None:
        """One way of knowing the peer went away (zeroconf goodbye, removed from config).

        The peer stays listed; with no source left it is unreachable and no longer scheduled.
        """
        key = normalize_peer_url(url)
        old = self._peers.get(key)
        if old is None:
            return None
        sources = old.sources - {source}
        status = replace(old, sources=sources)
        if not sources:
            status = replace(
                status,
                state=PeerState.UNREACHABLE,
                last_error=f"withdrawn ({source.value})",
                next_attempt=None,
            )
        return self._put(status)

    def forget(self, url: str) -> bool:
        """`p2pdata peers remove`: drop the peer entirely."""
        key = normalize_peer_url(url)
        if self._peers.pop(key, None) is None:
            return False
        if self._on_change is not None:
            self._on_change(key, None)
        return True

    def succeeded(self, url: str, now: float, cluster_id: str | None = None) -> PeerStatus:
        old = self._get(url)
        status = replace(
            old,
            state=PeerState.HEALTHY,
            cluster_id=cluster_id or old.cluster_id,
            last_seen=now,
            failures=0,
            last_error=None,
            next_attempt=now + self._jittered(self.sync_interval) if old.active else None,
        )
        return self._put(status)

    def failed(self, url: str, now: float, error: str) -> PeerStatus:
        """The peer did not answer usefully (refused, timeout, garbage): back off."""
        return self._setback(url, now, error, PeerState.UNREACHABLE, seen=False)

    def rejected(self, url: str, now: float, error: str, cluster_id: str | None = None) -> PeerStatus:
        """The peer answered but what it served was refused (bad signature, rollback...)."""
        return self._setback(url, now, error, PeerState.REJECTED, seen=True, cluster_id=cluster_id)

    def _setback(self, url: str, now: float, error: str, state: PeerState, seen: bool,
                 cluster_id: str | None = None) -> PeerStatus:
        old = self._get(url)
        failures = old.failures + 1
        return self._put(replace(
            old,
            state=state,
            cluster_id=cluster_id or old.cluster_id,
            failures=failures,
            last_error=error,
            last_seen=now if seen else old.last_seen,
            next_attempt=now + self.backoff(failures) if old.active else None,
        ))

    def backoff(self, failures: int) -> float:
        """Delay after `failures` consecutive failures: doubling from the base, capped, jittered."""
        delay = min(self.max_backoff, self.base_backoff * 2 ** min(failures - 1, 64))
        return self._jittered(delay)

    def _jittered(self, delay: float) -> float:
        # Only ever shorten: the cap stays a cap, and peers restarted together spread out.
        return delay * (1 - self.jitter * self._random())

    def due(self, now: float) -> list[str]:
        """URLs whose sync is due, most overdue first."""
        ready = [
            s for s in self._peers.values() if s.next_attempt is not None and s.next_attempt <= now
        ]
        return [s.url for s in sorted(ready, key=lambda s: (s.next_attempt, s.url))]

    def next_attempt(self) -> float | None:
        """The earliest scheduled attempt, for a sync loop to sleep until."""
        times = [s.next_attempt for s in self._peers.values() if s.next_attempt is not None]
        return min(times, default=None)

    def get(self, url: str) -> PeerStatus | None:
        return self._peers.get(normalize_peer_url(url))

    def peers(self) -> list[PeerStatus]:
        return sorted(self._peers.values(), key=lambda s: s.url)

    def _get(self, url: str) -> PeerStatus:
        status = self.get(url)
        if status is None:
            raise KeyError(f"unknown peer {url}")
        return status


def merge_peer_urls(static: Iterable[str], discovered: Iterable[str]) -> dict[str, Source]:
    """Map normalised URL -> source; config wins over zeroconf, and any invalid URL raises."""
    merged: dict[str, Source] = {}
    for url in discovered:
        merged[normalize_peer_url(url)] = Source.ZEROCONF
    for url in static:
        merged[normalize_peer_url(url)] = Source.STATIC
    return merged
