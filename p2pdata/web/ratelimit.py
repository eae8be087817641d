"""Per-client token buckets, who a signed client is, and which peer API request is let in:
plain classes fed with a clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from p2pdata.catalog.access import H_URL, BadRequestSignature, claimed_caller, read_signed_request

_MAX_CLIENTS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(per_minute // 4, 10))
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, client: str, now: float) -> bool:
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= _MAX_CLIENTS:
                # Bounded memory under many source addresses: forget the idle ones.
                self._buckets = {k: b for k, b in self._buckets.items() if now - b.updated < 60}
            bucket = self._buckets[client] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True


class SignedCallers:
    """Which known cluster signed a peer API request, so it is limited on its own budget.

    The per-address limit alone lets a flood from an address a real peer shares (NAT, a
    proxy, one host) lock that peer's syncs out. A request signed for this daemon's URL
    by a cluster it knows (`known`: trusted, granted,
    or a peer it syncs) is counted under that cluster instead, once its address is over
    budget (see Admission). Seen nonces are kept in
    memory for the window, so a replayed request falls back to its address's budget.
    """

    def __init__(self, urls: Callable[[], tuple[str, ...]], cluster_id: str,
                 known: Callable[[str, bytes], bool], *, window: int = 60, max_nonces: int = 100_000) -> None:
        self.urls = urls  # this daemon's own peer API URLs
        self.cluster_id = cluster_id
        self.known = known
        self.window = window
        self.max_nonces = max_nonces
        self._nonces: dict[str, float] = {}  # nonce -> when it may be forgotten

    def known_claim(self, headers: Mapping[str, str]) -> str | None:
        """The cluster the request claims to come from, if one we know (no signature checked:
        cheap); None for an unsigned request or a cluster nobody here knows."""
        claimed = claimed_caller(headers)
        return claimed[0] if claimed is not None and self.known(*claimed) else None

    def proves(self, cluster: str, method: str, path: str, headers: Mapping[str, str], now: float) -> bool:
        """Whether the request is signed by `cluster` (a claim `known_claim` accepted) for us,
        inside the window, with a nonce not seen before."""
        # Sync requests are signed for our URL, restricted ones for our cluster id.
        for audience in (headers.get(H_URL, ""), self.cluster_id):
            try:
                signed = read_signed_request(method, path, headers, audience, self.urls())
            except BadRequestSignature:
                continue
            return signed.cluster == cluster and abs(now - signed.time) <= self.window \
                and self._fresh(signed.nonce, now)
        return False

    def _fresh(self, nonce: str, now: float) -> bool:
        if nonce in self._nonces:
            return False
        if len(self._nonces) >= self.max_nonces:
            self._nonces = {n: t for n, t in self._nonces.items() if t > now}
            if len(self._nonces) >= self.max_nonces:
                return False
        self._nonces[nonce] = now + 2 * self.window
        return True


class Callers(Protocol):
    """Who signed a request (see SignedCallers)."""

    def known_claim(self, headers: Mapping[str, str]) -> str | None: ...
    def proves(self, cluster: str, method: str, path: str, headers: Mapping[str, str], now: float) -> bool: ...


class Admission:
    """Which peer API request is let in: the address's budget first, at no signature check.

    Past it, a request that claims a known cluster may prove it (up to two Ed25519
    checks, see SignedCallers), at most `checks_per_minute` proofs per address, and is
    then counted on that cluster's own budget: an unsigned flood from the address a peer
    shares does not lock the peer out, and a flood of forged claims costs at most that
    many checks a minute per address (it may then delay the peer sharing it: the price
    of not checking every claim).
    """

    def __init__(self, per_minute: int, callers: Callers | None, *,
                 checks_per_minute: int | None = None) -> None:
        self.callers = callers
        self.addresses = RateLimiter(per_minute)
        self.checks = RateLimiter(checks_per_minute or per_minute)
        self.clusters = RateLimiter(per_minute)

    def admit(self, address: str, method: str, path: str, headers: Mapping[str, str], *,
              now: float, wall: float) -> bool:
        """`now` is monotonic (the buckets), `wall` the time signed requests carry."""
        if self.addresses.allow(address, now):
            return True
        if self.callers is None:
            return False
        cluster = self.callers.known_claim(headers)  # the one read of what we know per request
        if cluster is None or not self.checks.allow(address, now):
            return False
        return self.callers.proves(cluster, method, path, headers, wall) and self.clusters.allow(cluster, now)
