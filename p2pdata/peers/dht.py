"""Finding clusters through the BitTorrent DHT: a BEP 44 mutable item per cluster, signed with
the cluster's own key, that says where its peer API is.

What goes on the DHT is a `DhtRecord`: the cluster id, its peer API URLs, and its current
catalog version and digest, with the time it was issued; never a dataset, a name or a file.
The item's BEP 44 sequence number is the catalog version, so the DHT itself refuses to store
an older record over a newer one. Anyone may read it; only the cluster key can sign it. A
reader trusts an item only if

- it is signed by the key pinned in the trust store for that cluster (a forged item, signed by
  any other key, is refused even where a DHT node let it through),
- its sequence number is the catalog version it names, and is not below what was already seen
  of that cluster (a replay; what was seen is kept in the state database, so a restart forgets
  nothing),
- it is not stale (`max_age`: a frozen item from a cluster long gone) nor issued in the future,

and then each URL in it must still prove, when contacted, that it holds the cluster's key
(it signs our nonce and its own URL) before it becomes a peer (source `dht`). The deciding is in `check_item`, a plain function of
its inputs and the time; `DhtDiscovery` is the thin loop around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from p2pdata.catalog.encoding import decode, encode
from p2pdata.catalog.identity import bep44_message, verify_signature
from p2pdata.db import drop_columns
from p2pdata.errors import CatalogError, P2pdataError, PeerError
from p2pdata.peers.client import CLUSTER_ID, PeerClient
from p2pdata.peers.errors import InvalidPeerUrl
from p2pdata.peers.health import Source
from p2pdata.peers.urls import normalize_peer_url

log = logging.getLogger(__name__)

SALT = b"p2pdata/1"  # our items' name under a cluster key: other uses of the key stay apart
MAX_VALUE = 990  # BEP 44 allows 1000 bytes of bencoded value; the length prefix takes a few
MAX_URLS = 8
CLOCK_SKEW = 600  # seconds an item may claim to be issued ahead of our clock


class DhtRefused(PeerError):
    """An item found on the DHT that is not believed; `reason` is a short stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class SignedItem(Protocol):
    """A BEP 44 mutable item as a DHT node gave it (see `p2pdata.transfer.dht.MutableItem`)."""

    @property
    def public_key(self) -> bytes: ...
    @property
    def salt(self) -> bytes: ...
    @property
    def seq(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def signature(self) -> bytes: ...


class PutReport(Protocol):
    """How a put went (`p2pdata.transfer.bep44.PutResult`)."""

    @property
    def outcome(self) -> str: ...  # stored | behind | conflict | unreached
    @property
    def detail(self) -> str: ...


class ItemStore(Protocol):
    """What discovery needs of a DHT node (`p2pdata.transfer.dht.DhtNode`)."""

    async def put(self, private_key: Ed25519PrivateKey, value: bytes, salt: bytes, seq: int,
                  timeout: float = ...) -> PutReport: ...

    async def get(self, public_key: bytes, salt: bytes,
                  timeout: float = ...) -> Sequence[SignedItem]: ...


@dataclass(frozen=True)
class DhtRecord:
    cluster: str
    urls: tuple[str, ...]
    catalog_version: int
    catalog_digest: bytes  # SHA-256 of the signed catalog the peer API serves
    issued: int

    def encode(self) -> bytes:
        data = encode({
            "cluster": self.cluster, "urls": list(self.urls), "catalog_version": self.catalog_version,
            "catalog_digest": self.catalog_digest, "issued": self.issued,
        })
        if len(data) > MAX_VALUE:
            raise ValueError(f"the DHT record is {len(data)} bytes, over {MAX_VALUE}: fewer or "
                             "shorter peer API URLs")
        return data

    @classmethod
    def decode(cls, data: bytes) -> DhtRecord:
        try:
            raw = decode(data, max_size=MAX_VALUE, what="DHT record")
        except CatalogError as exc:
            raise DhtRefused("malformed", f"not a p2pdata DHT record: {exc}") from exc
        if not isinstance(raw, dict):
            raise DhtRefused("malformed", "not a p2pdata DHT record: expected a map")
        try:
            cluster, urls = raw["cluster"], raw["urls"]
            version, digest, issued = raw["catalog_version"], raw["catalog_digest"], raw["issued"]
        except KeyError as exc:
            raise DhtRefused("malformed", f"DHT record without {exc.args[0]!r}") from None
        ok = (
            isinstance(cluster, str) and CLUSTER_ID.fullmatch(cluster)
            and isinstance(urls, list) and 0 < len(urls) <= MAX_URLS
            and all(isinstance(url, str) for url in urls)
            and type(version) is int and version >= 0
            and isinstance(digest, bytes) and len(digest) == 32
            and type(issued) is int and issued >= 0
        )
        if not ok:
            raise DhtRefused("malformed", "DHT record with a field of the wrong type or size")
        try:
            normalized = tuple(dict.fromkeys(normalize_peer_url(url) for url in urls))
        except InvalidPeerUrl as exc:
            raise DhtRefused("malformed", f"DHT record with a bad URL: {exc}") from None
        return cls(cluster, normalized, version, digest, issued)


def check_item(item: SignedItem, *, cluster_id: str, public_key: bytes, seen_version: int | None,
               now: float, max_age: float) -> DhtRecord:
    """The record in `item` if it is to be believed; DhtRefused with the reason if not.
    `seen_version`: the highest catalog version accepted from this cluster before."""
    if item.public_key != public_key:
        raise DhtRefused("wrong-key", f"DHT item for {cluster_id} is signed by another key")
    if item.salt != SALT or item.value is None:
        raise DhtRefused("malformed", f"DHT item for {cluster_id} is not a p2pdata record")
    if not verify_signature(public_key, bep44_message(item.salt, item.seq, item.value),
                            item.signature):
        raise DhtRefused("bad-signature", f"DHT item for {cluster_id}: bad signature")
    record = DhtRecord.decode(item.value)
    if record.cluster != cluster_id:
        raise DhtRefused("wrong-cluster", f"DHT item under {cluster_id}'s key names cluster "
                                          f"{record.cluster}")
    if record.issued > now + CLOCK_SKEW:
        raise DhtRefused("future", f"DHT item for {cluster_id} is issued in the future")
    if record.issued < now - max_age:
        raise DhtRefused("stale", f"DHT item for {cluster_id} was issued "
                                  f"{int(now - record.issued)} s ago, over {int(max_age)} s")
    if item.seq != record.catalog_version:
        raise DhtRefused("seq-mismatch", f"DHT item for {cluster_id} has sequence number {item.seq} "
                                         f"but names catalog version {record.catalog_version}")
    if seen_version is not None and item.seq < seen_version:
        raise DhtRefused("rollback", f"DHT item for {cluster_id} has sequence number (catalog "
                                     f"version) {item.seq}, below {seen_version} seen "
                                     "(a replayed item)")
    return record


_SCHEMA = """
CREATE TABLE IF NOT EXISTS dht_seen (
    cluster_id TEXT PRIMARY KEY,
    catalog_version INTEGER NOT NULL
)
"""
# Kept by older daemons, read by no decision (a row's catalog_version is what counts).
_DROPPED_COLUMNS = ("seq", "issued")


class SeenStore:
    """The highest catalog version accepted from each cluster on the DHT, so rollback
    protection survives a restart."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.execute(_SCHEMA)
        drop_columns(db, "dht_seen", _DROPPED_COLUMNS)

    def get(self, cluster_id: str) -> int | None:
        row = self.db.execute("SELECT catalog_version FROM dht_seen WHERE cluster_id = ?",
                              (cluster_id,)).fetchone()
        return None if row is None else row[0]

    def put(self, cluster_id: str, catalog_version: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO dht_seen (cluster_id, catalog_version) VALUES (?, ?)",
                        (cluster_id, catalog_version))


async def prove_cluster(client: PeerClient, url: str, cluster_id: str, public_key: bytes) -> None:
    """Raise PeerError unless the peer at `url` proves it holds that cluster's key.

    /v1/info must name the cluster and its pinned key, and sign our fresh nonce with that key
    naming `url` itself as its peer API (`PeerInfo.proven`): an impostor that relays another
    cluster's answers cannot. A bad signature is already refused by the client.
    """
    info = await client.info(url)
    if info.cluster_id != cluster_id or info.public_key != public_key:
        raise DhtRefused("impostor", f"{url} answers as cluster {info.cluster_id}, not {cluster_id}")
    if not info.proven:
        raise DhtRefused("unproven", f"{url} does not prove it holds the key of {cluster_id} "
                                     f"(no signature over our nonce naming this URL)")


@dataclass(frozen=True)
class Advert:
    """What we publish about ourselves; a new one (or the republish interval) means a new put."""

    urls: tuple[str, ...]
    catalog_version: int
    catalog_digest: bytes


@dataclass(frozen=True)
class Published:
    """Our record as it went on the DHT, and when it was last put."""

    advert: Advert
    record: DhtRecord
    at: float


PutStep = Literal["none", "again", "new", "renew"]


def next_put(last: Published | None, advert: Advert, now: float, *, republish: float,
             reissue: float) -> PutStep:
    """What our next put is, given what was put last and what we would advertise now.

    The sequence number is the catalog version, and a DHT node that holds our item keeps its
    value when a put brings the same sequence number with another value (libtorrent's node
    replaces only on a higher one, and answers without an error). So a record that changes
    needs a new catalog version: the daemon signs a new catalog (same datasets) rather than
    leave stale URLs on the DHT.

    - "new": the catalog version changed (a put below what the DHT holds is refused there);
    - "renew": same version, other URLs (a restart on another port), or our record is
      `reissue` seconds old (readers refuse records past their maximum age): sign a new
      catalog version, then put a record of it;
    - "again": nothing changed and the republish interval is up: the very same record (same
      bytes, same signature), which refreshes it where it is held and restores it where not;
    - "none".
    """
    if last is None or advert.catalog_version != last.advert.catalog_version:
        return "new"
    if advert.urls != last.advert.urls or now >= last.record.issued + reissue:
        return "renew"
    return "again" if now >= last.at + republish else "none"


class PutPlan:
    """Our puts' decisions, fed with what we would advertise, what the DHT answered and a clock:
    what to put next (`next_put`, and no hammering of a DHT that holds a higher version), and
    what our record's state is after each put."""

    def __init__(self, *, republish: float, reissue: float) -> None:
        self.republish = republish
        self.reissue = reissue
        self.published: Published | None = None
        self.error: str | None = None
        self._behind: tuple[int, float] | None = None  # catalog version the DHT refused, when

    def step(self, advert: Advert, now: float) -> PutStep:
        behind = self._behind
        if behind is not None and behind[0] == advert.catalog_version and now < behind[1] + self.republish:
            return "none"  # a refused version is tried again only after the republish interval
        return next_put(self.published, advert, now, republish=self.republish, reissue=self.reissue)

    @staticmethod
    def renew_after(outcome: str) -> bool:
        """Whether a put's `outcome` calls for one more, of a new catalog version: another
        record of ours holds this version (put before a restart), and nodes keep it."""
        return outcome == "conflict"

    def failed(self, error: str) -> None:
        self.error = error

    def done(self, advert: Advert, record: DhtRecord, outcome: str, detail: str, now: float) -> None:
        if outcome == "stored":
            self.published, self.error, self._behind = Published(advert, record, now), None, None
        elif outcome == "behind":
            # Our catalog version went backwards (this cluster's state restored from an older
            # copy?): the DHT rightly refuses; say so, and do not hammer it.
            self._behind = (advert.catalog_version, now)
            self.error = (f"not published: our catalog version {advert.catalog_version} is "
                          f"below the sequence number the DHT holds for our key "
                          f"({detail}); was this cluster's state restored from an "
                          "older copy? Tried again when the catalog version changes")
        else:
            self.error = f"could not publish our record: {detail}"


OnFound = Callable[[str, str | None], None]
OnLost = Callable[[str], None]
Prove = Callable[[str, str, bytes], Awaitable[None]]


class DhtDiscovery:
    """The DHT as a source of peers: publishes our record, looks up the clusters we want.

    `wanted()` gives the trusted clusters (id → pinned key) that no peer reaches now (found
    here before or not: a cluster whose URLs changed is found again here); `trusted()` the ids
    of all trusted clusters (what was found of any other is dropped: trust was removed);
    `advert(renew)` what to publish (with `renew`, after signing a new catalog version);
    `prove(url, cluster_id, key)` raises PeerError unless the peer there holds that key.
    """

    source = Source.DHT

    def __init__(
        self,
        *,
        node: ItemStore,
        private_key: Ed25519PrivateKey,
        cluster_id: str,
        advert: Callable[[bool], Advert],
        wanted: Callable[[], Mapping[str, bytes]],
        trusted: Callable[[], Collection[str]],
        prove: Prove,
        seen: SeenStore,
        on_found: OnFound,
        on_lost: OnLost,
        interval: float = 300.0,
        republish: float = 1800.0,
        max_age: float = 2 * 24 * 3600.0,
        reissue: float = 24 * 3600.0,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._node = node
        self._key = private_key
        self._cluster_id = cluster_id
        self._advert = advert
        self._wanted = wanted
        self._trusted = trusted
        self._prove = prove
        self._seen = seen
        self._on_found = on_found
        self._on_lost = on_lost
        self.interval = interval
        self.max_age = max_age
        self.timeout = timeout
        self._clock = clock
        self._plan = PutPlan(republish=republish, reissue=reissue)
        self._found: dict[str, tuple[str, ...]] = {}  # cluster id -> URLs it proved
        self._refused: dict[str, str] = {}  # cluster id -> why its item or URLs were refused
        self._missing: set[str] = set()  # looked up, and no record on the DHT
        self._wakes = (asyncio.Event(), asyncio.Event())  # publish loop, lookup loop
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        # Two loops: a put waits for every node it stored on, and lookups need not wait for it.
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._every(self.publish, self._wakes[0])),
                       loop.create_task(self._every(self.step, self._wakes[1]))]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def wake(self) -> None:
        """Publish and look up now (a dataset was published, a cluster trusted)."""
        for wake in self._wakes:
            wake.set()

    def status(self) -> dict[str, Any]:
        published = self._plan.published
        return {
            "published": None if published is None else {
                "urls": list(published.advert.urls), "catalog_version": published.advert.catalog_version,
                "at": published.at, "issued": published.record.issued,
            },
            "publish_error": self._plan.error,
            "found": {cluster: list(urls) for cluster, urls in self._found.items()},
            "refused": dict(self._refused),
            "not_found": sorted(self._missing),
        }

    async def _every(self, work: Callable[[], Awaitable[None]], wake: asyncio.Event) -> None:
        while True:
            wake.clear()
            try:
                await work()
            except Exception:  # one bad round must not end discovery
                log.exception("DHT discovery round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=self.interval)

    async def step(self) -> None:
        """One lookup round: every wanted cluster, at once."""
        self._forget_untrusted(set(self._trusted()))
        wanted = dict(self._wanted())
        await asyncio.gather(*(self.lookup(cluster, key) for cluster, key in wanted.items()))

    def _forget_untrusted(self, trusted: set[str]) -> None:
        for cluster in [c for c in self._found if c not in trusted]:
            for url in self._found.pop(cluster):
                self._on_lost(url)
        self._refused = {c: why for c, why in self._refused.items() if c in trusted}
        self._missing &= trusted

    async def publish(self) -> None:
        """Put our record if it changed or the republish interval is up (see `PutPlan`)."""
        now = self._clock()
        plan = self._plan
        advert = self._advert(False)
        step = plan.step(advert, now)
        if step == "none":
            return
        if step == "renew":
            advert = self._advert(True)
        last = plan.published
        record = last.record if step == "again" and last is not None else self._record(advert, now)
        try:
            report = await self._put(record)
            if plan.renew_after(report.outcome):
                advert = self._advert(True)
                record = self._record(advert, now)
                report = await self._put(record)
        except (P2pdataError, ValueError) as exc:
            plan.failed(str(exc))
            log.warning("DHT: could not publish our record: %s", exc)
            return
        plan.done(advert, record, report.outcome, report.detail, now)
        if report.outcome == "stored":
            log.info("DHT: published catalog version %d, %s (%s)",
                     advert.catalog_version, ", ".join(advert.urls), report.detail)
        else:
            log.log(logging.ERROR if report.outcome == "behind" else logging.WARNING, "DHT: %s", plan.error)

    def _record(self, advert: Advert, now: float) -> DhtRecord:
        return DhtRecord(self._cluster_id, advert.urls, advert.catalog_version,
                         advert.catalog_digest, int(now))

    async def _put(self, record: DhtRecord) -> PutReport:
        return await self._node.put(self._key, record.encode(), SALT, record.catalog_version,
                                    timeout=self.timeout)

    async def lookup(self, cluster_id: str, public_key: bytes) -> None:
        items = await self._node.get(public_key, SALT, timeout=self.timeout)
        if not items:
            self._missing.add(cluster_id)
            self._refused.pop(cluster_id, None)
            return
        self._missing.discard(cluster_id)
        record, refusals = None, []
        for item in sorted(items, key=lambda i: -i.seq):
            try:
                record = check_item(item, cluster_id=cluster_id, public_key=public_key,
                                    seen_version=self._seen.get(cluster_id), now=self._clock(),
                                    max_age=self.max_age)
            except DhtRefused as exc:
                refusals.append(str(exc))
                log.warning("DHT: refused: %s", exc)
                continue
            self._seen.put(cluster_id, record.catalog_version)  # not below what was seen: checked
            break
        if record is None:
            self._refused[cluster_id] = refusals[0]
            return
        proved = []
        failures = []
        for url in record.urls:
            try:
                await self._prove(url, cluster_id, public_key)
            except PeerError as exc:
                failures.append(f"{url}: {exc}")
                log.warning("DHT: %s, named by %s's record, did not prove it is that cluster: %s",
                            url, cluster_id, exc)
                continue
            proved.append(url)
        for url in set(self._found.get(cluster_id, ())) - set(proved):
            self._on_lost(url)
        self._found[cluster_id] = tuple(proved)
        if failures:
            self._refused[cluster_id] = "; ".join(failures)
        else:
            self._refused.pop(cluster_id, None)
        for url in proved:
            self._on_found(url, cluster_id)
