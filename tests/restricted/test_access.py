"""Signed peer requests and the grants table: plain classes, a fake clock."""

from __future__ import annotations

import pytest

from p2pdata.catalog import Identity
from p2pdata.catalog.access import (
    H_CLUSTER,
    H_KEY,
    H_SIGNATURE,
    BadRequestSignature,
    GrantTable,
    RequestExpired,
    RequestReplayed,
    RequestVerifier,
    sign_request,
)
from p2pdata.db import open_db

PATH = "/v1/restricted/clicks/1/manifest"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def owner() -> Identity:
    return Identity.generate()


@pytest.fixture
def caller() -> Identity:
    return Identity.generate()


@pytest.fixture
def conn(tmp_path):
    return open_db(tmp_path / "state.db")


def nonces(conn) -> int:
    return conn.execute("SELECT count(*) FROM request_nonces").fetchone()[0]


def test_a_signed_request_names_its_caller(owner, caller, conn):
    clock = Clock()
    verifier = RequestVerifier(owner.cluster_id, conn, clock)
    headers = sign_request(caller, "GET", PATH, owner.cluster_id, now=int(clock()))
    assert verifier.verify("GET", PATH, headers) == caller.cluster_id


def test_an_unsigned_request_is_refused(owner, conn):
    verifier = RequestVerifier(owner.cluster_id, conn, Clock())
    with pytest.raises(BadRequestSignature, match="unsigned"):
        verifier.verify("GET", PATH, {})


@pytest.mark.parametrize("change", ["path", "method", "signature", "key", "audience", "cluster"])
def test_forged_requests_are_refused(owner, caller, conn, change):
    clock = Clock()
    verifier = RequestVerifier(owner.cluster_id, conn, clock)
    audience = Identity.generate().cluster_id if change == "audience" else owner.cluster_id
    headers = sign_request(caller, "GET", PATH, audience, now=int(clock()))
    method, path = "GET", PATH
    if change == "path":
        path = "/v1/restricted/other/1/manifest"
    elif change == "method":
        method = "HEAD"
    elif change == "signature":
        headers[H_SIGNATURE] = sign_request(Identity.generate(), "GET", PATH, owner.cluster_id,
                                            now=int(clock()))[H_SIGNATURE]
    elif change == "key":  # an impostor signs with its own key but claims the caller's id
        impostor = Identity.generate()
        headers = sign_request(impostor, "GET", PATH, owner.cluster_id, now=int(clock()))
        headers[H_CLUSTER] = caller.cluster_id
    elif change == "cluster":
        headers[H_KEY] = sign_request(Identity.generate(), "GET", PATH, owner.cluster_id,
                                      now=int(clock()))[H_KEY]
    with pytest.raises(BadRequestSignature):
        verifier.verify(method, path, headers)


@pytest.mark.parametrize("skew", [-61, 61, -3600])
def test_requests_outside_the_window_are_refused(owner, caller, conn, skew):
    clock = Clock()
    verifier = RequestVerifier(owner.cluster_id, conn, clock, window=60)
    headers = sign_request(caller, "GET", PATH, owner.cluster_id, now=int(clock()) + skew)
    with pytest.raises(RequestExpired):
        verifier.verify("GET", PATH, headers)


def test_a_replayed_request_is_refused_inside_and_after_the_window(owner, caller, conn):
    clock = Clock()
    verifier = RequestVerifier(owner.cluster_id, conn, clock, window=60)
    headers = sign_request(caller, "GET", PATH, owner.cluster_id, now=int(clock()))
    verifier.verify("GET", PATH, headers)
    clock.now += 30
    with pytest.raises(RequestReplayed):
        verifier.verify("GET", PATH, headers)
    clock.now += 200  # the nonce is forgotten, but the timestamp now fails
    with pytest.raises(RequestExpired):
        verifier.verify("GET", PATH, headers)
    assert nonces(conn) == 0


def test_a_full_nonce_cache_refuses_rather_than_forgets(owner, caller, conn):
    clock = Clock()
    verifier = RequestVerifier(owner.cluster_id, conn, clock, max_nonces=2)
    for _ in range(2):
        verifier.verify("GET", PATH, sign_request(caller, "GET", PATH, owner.cluster_id, now=int(clock())))
    with pytest.raises(BadRequestSignature, match="too many"):
        verifier.verify("GET", PATH, sign_request(caller, "GET", PATH, owner.cluster_id, now=int(clock())))
    clock.now += 61 + 60
    headers = sign_request(caller, "GET", PATH, owner.cluster_id, now=int(clock()))
    assert verifier.verify("GET", PATH, headers) == caller.cluster_id


def test_seen_nonces_outlive_a_restart_until_they_expire(owner, caller, tmp_path):
    clock = Clock()
    headers = sign_request(caller, "GET", PATH, owner.cluster_id, now=int(clock()))
    before = open_db(tmp_path / "state.db")
    RequestVerifier(owner.cluster_id, before, clock).verify("GET", PATH, headers)
    before.close()
    clock.now += 30  # the daemon restarts inside the window: a new verifier on the same database
    conn = open_db(tmp_path / "state.db")
    restarted = RequestVerifier(owner.cluster_id, conn, clock, max_nonces=2)
    with pytest.raises(RequestReplayed):
        restarted.verify("GET", PATH, headers)
    restarted.verify("GET", PATH, sign_request(caller, "GET", PATH, owner.cluster_id, now=int(clock())))
    with pytest.raises(BadRequestSignature, match="too many"):  # the bound counts what it found
        restarted.verify("GET", PATH, sign_request(caller, "GET", PATH, owner.cluster_id,
                                                   now=int(clock())))
    clock.now += 31  # the first nonce's window is over: pruned, and its slot free again
    restarted.verify("GET", PATH, sign_request(caller, "GET", PATH, owner.cluster_id, now=int(clock())))
    assert nonces(conn) == 2


def test_grants_cover_a_dataset_name_until_revoked(tmp_path):
    grants = GrantTable(open_db(tmp_path / "state.db"))
    assert grants.grant("clicks", "aaaa", 1)
    assert not grants.grant("clicks", "aaaa", 2)
    assert grants.allowed("clicks", "aaaa")
    assert not grants.allowed("clicks", "bbbb")
    assert not grants.allowed("views", "aaaa")
    assert [g.cluster for g in grants.list("clicks")] == ["aaaa"]
    assert grants.revoke("clicks", "aaaa")
    assert not grants.revoke("clicks", "aaaa")
    assert not grants.allowed("clicks", "aaaa")


def test_a_flood_of_strangers_keys_cannot_crowd_out_a_granted_cluster(owner, caller, conn):
    clock = Clock()
    grants = GrantTable(conn)
    grants.grant("clicks", caller.cluster_id, int(clock()))
    verifier = RequestVerifier(owner.cluster_id, conn, clock, max_nonces=6, per_cluster=3,
                               favoured=grants.any_to)

    def sign(identity: Identity) -> dict[str, str]:
        return sign_request(identity, "GET", PATH, owner.cluster_id, now=int(clock()))

    strangers = [Identity.generate() for _ in range(3)]
    for stranger in strangers:  # each a key of its own, each signing validly
        for _ in range(2):
            verifier.verify("GET", PATH, sign(stranger))
    with pytest.raises(BadRequestSignature, match="too many"):  # the strangers' share is full
        verifier.verify("GET", PATH, sign(Identity.generate()))
    for _ in range(3):  # the granted cluster still gets through, up to its own share
        assert verifier.verify("GET", PATH, sign(caller)) == caller.cluster_id
    with pytest.raises(BadRequestSignature, match="too many"):
        verifier.verify("GET", PATH, sign(caller))
    clock.now += 61 + 60  # the window is over: every share is free again, and no more than that
    for stranger in strangers:
        for _ in range(2):
            assert verifier.verify("GET", PATH, sign(stranger)) == stranger.cluster_id
    with pytest.raises(BadRequestSignature, match="too many"):  # forgetting favoured nonces freed nothing
        verifier.verify("GET", PATH, sign(Identity.generate()))


def test_one_strangers_key_holds_no_more_than_its_share(owner, caller, conn):
    clock = Clock()
    verifier = RequestVerifier(owner.cluster_id, conn, clock, per_cluster=2)
    other = Identity.generate()

    def outcome(identity: Identity) -> str:
        try:
            return verifier.verify("GET", PATH, sign_request(identity, "GET", PATH, owner.cluster_id,
                                                             now=int(clock())))
        except BadRequestSignature as exc:
            return str(exc)

    outcomes = [outcome(who) for who in (caller, caller, caller, other)]
    assert outcomes[:2] == [caller.cluster_id] * 2 and outcomes[3] == other.cluster_id
    assert "too many" in outcomes[2]


def test_nonces_of_an_older_table_still_refuse_replays(owner, caller, conn):
    clock = Clock()
    headers = sign_request(caller, "GET", PATH, owner.cluster_id, now=int(clock()))
    conn.execute("CREATE TABLE request_nonces (nonce TEXT PRIMARY KEY, forget_after INTEGER NOT NULL)")
    conn.execute("INSERT INTO request_nonces VALUES (?, ?)", (headers["X-P2pdata-Nonce"], int(clock()) + 60))
    verifier = RequestVerifier(owner.cluster_id, conn, clock, max_nonces=2)
    with pytest.raises(RequestReplayed):
        verifier.verify("GET", PATH, headers)
    verifier.verify("GET", PATH, sign_request(caller, "GET", PATH, owner.cluster_id, now=int(clock())))
    with pytest.raises(BadRequestSignature, match="too many"):  # the old nonce counts
        verifier.verify("GET", PATH, sign_request(caller, "GET", PATH, owner.cluster_id, now=int(clock())))
