"""DHT records: what is believed (check_item), what is remembered (SeenStore), and the
discovery loop's decisions, with a fake item store and clock (pure logic, no network)."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, replace

import pytest

from p2pdata.catalog import Identity
from p2pdata.catalog.identity import bep44_message
from p2pdata.db import open_db
from p2pdata.peers.dht import (
    SALT,
    Advert,
    DhtDiscovery,
    DhtRecord,
    DhtRefused,
    Published,
    PutPlan,
    SeenStore,
    check_item,
    next_put,
)
from p2pdata.transfer import PutResult

NOW = 1_800_000_000
DAY = 24 * 3600.0


@dataclass(frozen=True)
class Item:
    public_key: bytes
    salt: bytes
    seq: int
    value: bytes | None
    signature: bytes


def record(identity: Identity, *, urls: tuple[str, ...] = ("http://127.0.0.1:7420",),
           version: int = 3, issued: int = NOW) -> DhtRecord:
    return DhtRecord(identity.cluster_id, urls, version, hashlib.sha256(b"catalog").digest(), issued)


def item(signer: Identity, rec: DhtRecord, seq: int | None = None, key: Identity | None = None) -> Item:
    """An item as a DHT node hands it over, signed by `signer`, filed under `key`'s public key;
    its sequence number is the record's catalog version unless told otherwise."""
    seq = rec.catalog_version if seq is None else seq
    value = rec.encode()
    signature = signer.sign(bep44_message(SALT, seq, value))
    return Item((key or signer).public_key, SALT, seq, value, signature)


@pytest.fixture
def alpha() -> Identity:
    return Identity.generate()


def check(alpha: Identity, it: Item, seen: int | None = None, now: float = NOW) -> DhtRecord:
    return check_item(it, cluster_id=alpha.cluster_id, public_key=alpha.public_key, seen_version=seen,
                      now=now, max_age=2 * DAY)


def refused(alpha: Identity, it: Item, seen: int | None = None, now: float = NOW) -> str:
    with pytest.raises(DhtRefused) as caught:
        check(alpha, it, seen, now)
    return caught.value.reason


def test_a_good_item_is_believed(alpha: Identity) -> None:
    rec = record(alpha, urls=("http://A.example:7420/", "https://10.0.0.1:443"))
    got = check(alpha, item(alpha, rec))
    assert got.urls == ("http://a.example:7420", "https://10.0.0.1:443")  # normalised
    assert got.catalog_version == 3 and got.cluster == alpha.cluster_id


def test_forged_items_are_refused(alpha: Identity) -> None:
    mallory = Identity.generate()
    rec = record(alpha)
    # Signed by another key, under that key: not the pinned one.
    assert refused(alpha, item(mallory, rec)) == "wrong-key"
    # Signed by another key, filed under alpha's key: the signature does not hold.
    assert refused(alpha, item(mallory, rec, key=alpha)) == "bad-signature"
    # A good signature over other bytes (the value changed after signing).
    good = item(alpha, rec)
    tampered = replace(good, value=record(alpha, urls=("http://evil:1",)).encode())
    assert refused(alpha, tampered) == "bad-signature"
    # Alpha's key, but another cluster named inside.
    other = replace(rec, cluster=mallory.cluster_id)
    assert refused(alpha, item(alpha, other)) == "wrong-cluster"
    # Not a p2pdata record at all, or not a string value.
    assert refused(alpha, replace(good, value=None)) == "malformed"
    junk = b"not msgpack \xc1"
    assert refused(alpha, Item(alpha.public_key, SALT, 9, junk,
                               alpha.sign(bep44_message(SALT, 9, junk)))) == "malformed"
    assert refused(alpha, replace(good, salt=b"other")) == "malformed"
    # Genuinely signed, but its sequence number is not the catalog version it names.
    assert refused(alpha, item(alpha, rec, seq=9)) == "seq-mismatch"


def test_replayed_and_rolled_back_items_are_refused(alpha: Identity) -> None:
    old = item(alpha, record(alpha, version=3, issued=NOW - 600))
    new = item(alpha, record(alpha, version=4, issued=NOW))
    seen = check(alpha, new).catalog_version
    assert refused(alpha, old, seen) == "rollback"  # lower sequence number: a replay
    # Issued later makes no difference: the sequence number (catalog version) decides.
    assert refused(alpha, item(alpha, record(alpha, version=3, issued=NOW + 1)), seen) == "rollback"
    # The same item again is fine (the DHT hands it over on every lookup), a newer one too.
    assert check(alpha, new, seen).catalog_version == 4
    assert check(alpha, item(alpha, record(alpha, version=5)), seen).catalog_version == 5


def test_stale_and_future_items_are_refused(alpha: Identity) -> None:
    assert refused(alpha, item(alpha, record(alpha, issued=NOW - int(3 * DAY)), seq=1)) == "stale"
    assert refused(alpha, item(alpha, record(alpha, issued=NOW + 3600), seq=1)) == "future"


def test_records_stay_within_bep44_size() -> None:
    identity = Identity.generate()
    with pytest.raises(ValueError, match="over 990"):
        record(identity, urls=tuple(f"http://host-{i}-{'x' * 200}.example:7420" for i in range(8))).encode()


def test_seen_survives_a_restart(tmp_path) -> None:
    db = open_db(tmp_path / "state.db")
    SeenStore(db).put("abcdefghijklmnop", 3)
    db.close()
    again = SeenStore(open_db(tmp_path / "state.db"))
    assert again.get("abcdefghijklmnop") == 3
    assert again.get("qrstuvwxyzabcdef") is None


def test_seen_rows_of_an_older_daemon_keep_their_catalog_version(tmp_path) -> None:
    """Older daemons kept the item's seq (once libtorrent's own numbering) and issue time too."""
    db = open_db(tmp_path / "state.db")
    db.execute("CREATE TABLE dht_seen (cluster_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
               "catalog_version INTEGER NOT NULL, issued INTEGER NOT NULL)")
    db.execute("INSERT INTO dht_seen VALUES ('abcdefghijklmnop', 40, 4, ?)", (NOW,))
    seen = SeenStore(db)
    assert seen.get("abcdefghijklmnop") == 4  # the catalog version decides, not the old seq
    seen.put("qrstuvwxyzabcdef", 2)
    assert seen.get("qrstuvwxyzabcdef") == 2


class FakeDht:
    """Items by (key, salt), every version kept (what nodes could replay); a put answers as
    BEP 44 nodes do: refused below the highest seq, kept silently at an equal one."""

    def __init__(self) -> None:
        self.items: dict[tuple[bytes, bytes], list[Item]] = {}
        self.puts: list[tuple[int, bytes]] = []

    async def put(self, private_key, value, salt, seq, timeout=30.0) -> PutResult:
        identity = Identity(private_key)
        held = self.items.setdefault((identity.public_key, salt), [])
        top = max(held, key=lambda i: i.seq, default=None)
        if top is not None and top.seq > seq:
            return PutResult("behind", 0, "3 refused: 302 old sequence number", None)
        if top is not None and top.seq == seq and top.value != value:
            return PutResult("conflict", 0, f"another value at {seq}")
        held.append(Item(identity.public_key, salt, seq, value,
                         identity.sign(bep44_message(salt, seq, value))))
        self.puts.append((seq, value))
        return PutResult("stored", 3, "3 of 3 DHT nodes stored it")

    async def get(self, public_key, salt, timeout=30.0) -> list[Item]:
        return list(self.items.get((public_key, salt), []))


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


def test_next_put_needs_a_new_catalog_version_for_a_new_record() -> None:
    advert = Advert(("http://127.0.0.1:1",), 5, b"\0" * 32)
    last = Published(advert, DhtRecord("c" * 16, advert.urls, 5, b"\0" * 32, NOW), at=NOW)

    def step(now: float = NOW + 10, **changes: object) -> str:
        return next_put(last, replace(advert, **changes), now, republish=1800, reissue=DAY)

    assert next_put(None, advert, NOW, republish=1800, reissue=DAY) == "new"
    assert step() == "none"
    assert step(now=NOW + 1800) == "again"  # the very same record, refreshed
    assert step(catalog_version=6) == "new"
    assert step(urls=("http://127.0.0.1:2",)) == "renew"  # same version, other URLs
    assert step(now=NOW + DAY) == "renew"  # before readers find it too old


def test_put_plan_does_not_hammer_a_dht_that_holds_a_higher_version() -> None:
    plan = PutPlan(republish=1800, reissue=DAY)
    advert = Advert(("http://127.0.0.1:1",), 5, b"\0" * 32)
    record = DhtRecord("c" * 16, advert.urls, 5, b"\0" * 32, NOW)
    assert plan.step(advert, NOW) == "new"
    plan.done(advert, record, "behind", "the DHT holds seq 9", NOW)
    assert plan.published is None and "below the sequence number" in (plan.error or "")
    assert "seq 9" in (plan.error or "")
    assert plan.step(advert, NOW + 1799) == "none"  # the refused version: not before republish
    assert plan.step(replace(advert, catalog_version=6), NOW + 10) == "new"  # a new version: at once
    assert plan.step(advert, NOW + 1800) == "new"  # and the refused one, once the interval is up
    newer = replace(advert, catalog_version=10)
    plan.done(newer, replace(record, catalog_version=10), "stored", "8 nodes", NOW + 1800)
    assert plan.error is None and plan.published == Published(newer, replace(record, catalog_version=10),
                                                              NOW + 1800)
    assert plan.step(advert, NOW + 1801) == "new"  # the refusal is forgotten once stored


def test_put_plan_renews_after_a_conflict_and_records_failures() -> None:
    assert PutPlan.renew_after("conflict")
    assert not any(PutPlan.renew_after(o) for o in ("stored", "behind", "unreached"))
    plan = PutPlan(republish=1800, reissue=DAY)
    advert = Advert(("http://127.0.0.1:1",), 5, b"\0" * 32)
    plan.done(advert, DhtRecord("c" * 16, advert.urls, 5, b"\0" * 32, NOW), "unreached", "no node", NOW)
    assert plan.error == "could not publish our record: no node" and plan.published is None
    assert plan.step(advert, NOW + 1) == "new"  # unreached: tried again at the next round
    plan.failed("timed out")
    assert plan.error == "timed out"


def test_discovery_puts_the_catalog_version_as_sequence_number(tmp_path) -> None:
    me, dht, clock = Identity.generate(), FakeDht(), Clock()
    advert = Advert(("http://127.0.0.1:1",), 1, b"\0" * 32)
    current = [advert]

    def adverts(renew: bool) -> Advert:
        if renew:  # what the daemon does: sign a new catalog version
            current[0] = replace(current[0], catalog_version=current[0].catalog_version + 1)
        return current[0]

    discovery = DhtDiscovery(
        node=dht, private_key=me.private_key, cluster_id=me.cluster_id, advert=adverts,
        wanted=dict, trusted=set, prove=None, seen=SeenStore(open_db(tmp_path / "s.db")),  # type: ignore[arg-type]
        on_found=lambda url, cid: None, on_lost=lambda url: None, republish=1800, clock=clock,
    )

    async def run() -> None:
        await discovery.publish()
        await discovery.publish()  # unchanged, not due
        assert [seq for seq, _ in dht.puts] == [1]
        current[0] = replace(current[0], catalog_version=2)
        await discovery.publish()
        clock.now += 1800
        await discovery.publish()  # republish: the same bytes at the same seq
        assert [seq for seq, _ in dht.puts] == [1, 2, 2] and dht.puts[1] == dht.puts[2]
        # Restarted on another port, same catalog version: a new version is signed first.
        current[0] = replace(current[0], urls=("http://127.0.0.1:9",))
        await discovery.publish()
        assert dht.puts[-1][0] == 3 and current[0].catalog_version == 3
        assert discovery.status()["published"]["catalog_version"] == 3

        # A daemon restarted with the same URLs and version: the DHT holds another record of
        # ours at that version (issued earlier), so a new version is signed and put.
        clock.now += 60
        again = DhtDiscovery(
            node=dht, private_key=me.private_key, cluster_id=me.cluster_id, advert=adverts,
            wanted=dict, trusted=set, prove=None, seen=SeenStore(open_db(tmp_path / "t.db")),  # type: ignore[arg-type]
            on_found=lambda url, cid: None, on_lost=lambda url: None, clock=clock,
        )
        await again.publish()
        assert dht.puts[-1][0] == 4 and again.status()["published"]["catalog_version"] == 4

        # Our catalog version went backwards (state restored from a backup): refused by the
        # DHT, reported, and not tried again until the version changes or republish is due.
        current[0] = replace(current[0], catalog_version=2)
        restored = DhtDiscovery(
            node=dht, private_key=me.private_key, cluster_id=me.cluster_id, advert=adverts,
            wanted=dict, trusted=set, prove=None, seen=SeenStore(open_db(tmp_path / "u.db")),  # type: ignore[arg-type]
            on_found=lambda url, cid: None, on_lost=lambda url: None, clock=clock,
        )
        calls = []
        put = dht.put

        async def counted(*args, **kwargs):
            calls.append(args[3])
            return await put(*args, **kwargs)

        dht.put = counted  # type: ignore[method-assign]
        await restored.publish()
        await restored.publish()
        error = restored.status()["publish_error"]
        assert "catalog version 2 is below" in error and "restored" in error, error
        assert calls == [2] and restored.status()["published"] is None
        current[0] = replace(current[0], catalog_version=5)
        await restored.publish()
        assert calls == [2, 5] and restored.status()["publish_error"] is None

    asyncio.run(run())


def test_discovery_adds_proved_urls_and_drops_those_that_fail(tmp_path) -> None:
    alpha, me, dht, clock = Identity.generate(), Identity.generate(), FakeDht(), Clock()
    found: list[tuple[str, str | None]] = []
    lost: list[str] = []
    impostors = {"http://mallory:1"}
    trusted = {alpha.cluster_id}

    async def prove(url: str, cluster_id: str, key: bytes) -> None:
        assert cluster_id == alpha.cluster_id and key == alpha.public_key
        if url in impostors:
            raise DhtRefused("impostor", f"{url} answers as cluster someone, not {cluster_id}")

    seen = SeenStore(open_db(tmp_path / "s.db"))
    discovery = DhtDiscovery(
        node=dht, private_key=me.private_key, cluster_id=me.cluster_id,
        advert=lambda renew: Advert(("http://me:1",), 1, b"\0" * 32),
        wanted=lambda: {alpha.cluster_id: alpha.public_key} if trusted else {},
        trusted=lambda: trusted, prove=prove, seen=seen,
        on_found=lambda url, cid: found.append((url, cid)), on_lost=lost.append, clock=clock,
    )

    async def put(urls: tuple[str, ...], version: int) -> None:
        await dht.put(alpha.private_key, record(alpha, urls=urls, version=version,
                                                issued=int(clock.now)).encode(), SALT, version)

    async def run() -> None:
        await discovery.step()  # nothing published yet
        assert discovery.status()["not_found"] == [alpha.cluster_id] and found == []
        await put(("http://a1:1", "http://mallory:1"), 3)
        await discovery.step()
        assert found == [("http://a1:1", alpha.cluster_id)]
        assert "mallory" in discovery.status()["refused"][alpha.cluster_id]
        assert discovery.status()["not_found"] == []
        assert seen.get(alpha.cluster_id) == 3
        clock.now += 10
        await put(("http://a2:1",), 4)  # alpha moved
        await discovery.step()
        assert found[-1] == ("http://a2:1", alpha.cluster_id) and lost == ["http://a1:1"]
        assert alpha.cluster_id not in discovery.status()["refused"]
        # Every node now hands over an older item only (a replay): refused, nothing changes.
        dht.items[(alpha.public_key, SALT)] = dht.items[(alpha.public_key, SALT)][:1]
        await discovery.step()
        assert "version) 3, below 4 seen" in discovery.status()["refused"][alpha.cluster_id]
        assert found[-1] == ("http://a2:1", alpha.cluster_id) and lost == ["http://a1:1"]
        # Trust removed: what was found of alpha is lost, and its status entries go.
        trusted.clear()
        await discovery.step()
        assert lost == ["http://a1:1", "http://a2:1"]
        assert discovery.status()["found"] == {} and discovery.status()["refused"] == {}

    asyncio.run(run())


def test_peers_the_dht_found_wait_after_a_restart_until_found_again() -> None:
    from p2pdata.peers import PeerHealth, PeerState, PeerStatus, Source

    url = "http://10.0.0.9:7420"
    health = PeerHealth()
    saved = PeerStatus(url, frozenset({Source.DHT}), PeerState.HEALTHY, cluster_id="a" * 16,
                       last_seen=990, next_attempt=1200)
    status = health.restore(saved, now=1000)
    assert status is not None and status.next_attempt is None
    assert status.state is PeerState.UNREACHABLE
    assert health.add(url, Source.DHT, now=1001, cluster_id="a" * 16).next_attempt == 1001


def test_dht_settings_are_checked_at_load(tmp_path) -> None:
    from p2pdata.config import load_config
    from p2pdata.errors import ConfigError

    assert load_config(tmp_path).discovery.dht is False  # off unless asked for
    assert load_config(tmp_path).discovery.dht_bootstrap == []  # and no router of anyone's
    (tmp_path / "config.toml").write_text('[discovery]\ndht = true\ndht_bootstrap = ["router"]\n')
    with pytest.raises(ConfigError, match=r"discovery\.dht_bootstrap: expected HOST:PORT, got 'router'"):
        load_config(tmp_path)


async def test_a_url_must_prove_the_cluster_key() -> None:
    from p2pdata.peers import PeerInfo, prove_cluster

    alpha, mallory = Identity.generate(), Identity.generate()

    class Client:  # what /v1/info said, as the client checked it
        def __init__(self, info: PeerInfo) -> None:
            self.answer = info

        async def info(self, url: str) -> PeerInfo:
            return self.answer

    def info(who: Identity, proven: bool) -> PeerInfo:
        return PeerInfo(who.cluster_id, who.public_key, "x", "1", "http://a:1", (), proven=proven)

    url = "http://a:1"
    await prove_cluster(Client(info(alpha, True)), url, alpha.cluster_id, alpha.public_key)
    for answer, reason in ((info(mallory, True), "impostor"), (info(alpha, False), "unproven")):
        with pytest.raises(DhtRefused) as refused:
            await prove_cluster(Client(answer), url, alpha.cluster_id, alpha.public_key)
        assert refused.value.reason == reason
