"""The peer directory: what each peer said of itself, who seeds what, whom to ask."""

from __future__ import annotations

import pytest

from p2pdata.errors import NotFound
from p2pdata.peers import PeerDirectory, PeerInfo


def info(cluster: str, port: int, *, proven: bool = True) -> PeerInfo:
    return PeerInfo(cluster, b"key-" + cluster.encode(), cluster, "1", f"http://{cluster}",
                    ((cluster, port),), ((cluster, port + 1),), proven=proven)


def test_seeders_owner_and_ssl_endpoints():
    directory = PeerDirectory()
    directory.answered("http://a", info("a", 10))
    directory.seeds("http://a", {"m1"})
    directory.answered("http://b", info("b", 20))
    directory.seeds("http://b", {"m2"})
    assert directory.seeders({"m1"}) == [("a", 10)]
    assert sorted(directory.seeders({"m1", "m2"})) == [("a", 10), ("b", 20)]
    assert directory.owner("b") == ("http://b", b"key-b")
    assert sorted(directory.ssl_seeders("m1", owner="b")) == [("a", 11), ("b", 21)]
    with pytest.raises(NotFound, match="not among our reachable peers"):
        directory.owner("c")
    # A URL that claims b's id and key without proving it is never asked as b's owner.
    directory.forget("http://b")
    directory.answered("http://impostor", info("b", 30, proven=False))
    with pytest.raises(NotFound):
        directory.owner("b")


def test_an_unreachable_peer_is_no_source_until_it_answers_again():
    directory = PeerDirectory()
    directory.answered("http://a", info("a", 10))
    directory.seeds("http://a", {"m1"})
    directory.catalog_held("http://a", "etag")
    directory.drop("http://a", unreachable=True)
    assert directory.seeders({"m1"}) == [] and directory.unreachable() == ["http://a"]
    assert directory.etag("http://a") == "etag"  # the catalog we hold is still good
    directory.answered("http://a", info("a", 10))
    assert directory.unreachable() == []
    directory.forget("http://a")
    assert directory.etag("http://a") is None and directory.info("http://a") is None


def test_only_a_proven_key_is_known():
    """Anyone can claim a cluster's key in /v1/info; only a proof makes it count (rate-limit budget)."""
    directory = PeerDirectory()
    directory.answered("http://impostor", info("alpha", 1, proven=False))
    assert not directory.knows_key(b"key-alpha")
    directory.answered("http://alpha", info("alpha", 2))
    assert directory.knows_key(b"key-alpha")
