"""Held catalogs, ref resolution, version ordering and search."""

from __future__ import annotations

import pytest

from p2pdata.catalog import (
    CatalogStore,
    Column,
    FileEntry,
    HeldCatalog,
    Identity,
    LocalCatalog,
    sign_catalog,
    verify_catalog,
    version_key,
)
from p2pdata.errors import Ambiguous, NotFound, Rollback
from tests.catalog.conftest import NOW, make_manifest


def publish(store: CatalogStore, identity: Identity, manifests, version: int = 1,
            lifetime: int = 3600) -> None:
    blob = sign_catalog(identity, manifests, version=version, now=NOW, lifetime=lifetime)
    verified = verify_catalog(blob, trusted=lambda c, k: True, now=NOW,
                              held=store.held(identity.cluster_id))
    store.store(verified, source="http://peer:1")


def sized(owner: str, name: str, size: int, **kw):
    return make_manifest(owner, name, files=(FileEntry("f", size, b"\x00" * 32),), **kw)


@pytest.fixture
def store(conn) -> CatalogStore:
    return CatalogStore(conn, clock=lambda: NOW)


def test_store_held_and_replace(store: CatalogStore, identity: Identity) -> None:
    assert store.held(identity.cluster_id) is None
    owner = identity.cluster_id
    publish(store, identity, [make_manifest(owner, "a"), make_manifest(owner, "b")])
    held = store.held(identity.cluster_id)
    assert isinstance(held, HeldCatalog) and held.version == 1
    publish(store, identity, [make_manifest(owner, "c", description="new")], version=2)
    assert [m.name for m in store.manifests()] == ["c"]
    assert [r.manifest.name for r in store.search("new")] == ["c"]
    [info] = store.publishers()
    assert (info.cluster, info.version, info.datasets, info.source) == (owner, 2, 1,
                                                                       "http://peer:1")


def test_store_refuses_going_back(store: CatalogStore, identity: Identity) -> None:
    publish(store, identity, [], version=5)
    old = verify_catalog(sign_catalog(identity, [], version=4, now=NOW, lifetime=60),
                         trusted=lambda c, k: True, now=NOW)
    with pytest.raises(Rollback):
        store.store(old, source="x")


def test_forget(store: CatalogStore, identity: Identity) -> None:
    publish(store, identity, [make_manifest(identity.cluster_id, "a")])
    store.forget(identity.cluster_id)
    assert store.held(identity.cluster_id) is None and store.manifests() == []


def test_version_order() -> None:
    versions = ["1.9", "1.10", "1.2", "1.2-rc1", "2", "10", "1.0", "2024-01-05", "1.a"]
    assert sorted(versions, key=version_key) == [
        "1.a", "1.0", "1.2", "1.2-rc1", "1.9", "1.10", "2", "10", "2024-01-05"]


def test_resolve(store: CatalogStore, identity: Identity, other_identity: Identity) -> None:
    me, peer = identity.cluster_id, other_identity.cluster_id
    publish(store, identity, [make_manifest(me, "imgs", v) for v in ("1.9", "1.10", "1.2")]
            + [make_manifest(me, "shared", "1")])
    publish(store, other_identity, [make_manifest(peer, "shared", "3")])
    assert store.resolve("imgs").version == "1.10"
    assert store.resolve("imgs@1.9").version == "1.9"
    assert store.resolve(f"{me}/imgs@1.2").version == "1.2"
    assert store.resolve(f"{peer}/shared").owner == peer
    assert store.resolve("shared@3").owner == peer  # only one publisher has version 3
    with pytest.raises(Ambiguous) as caught:
        store.resolve("shared")
    assert f"{me}/shared@1" in str(caught.value) and f"{peer}/shared@3" in str(caught.value)
    for missing in ("nope", "imgs@7", f"{peer}/imgs"):
        with pytest.raises(NotFound):
            store.resolve(missing)
    assert store.get(me, "imgs", "1.9").version == "1.9"
    with pytest.raises(NotFound):
        store.get(me, "imgs", "0")
    assert [m.version for m in store.manifests(name="imgs")] == ["1.2", "1.9", "1.10"]
    assert len(store.manifests(cluster=peer)) == 1


def test_expired_peer_catalog_left_out_with_now(store, identity, other_identity, conn) -> None:
    publish(store, other_identity, [make_manifest(other_identity.cluster_id, "old")],
            lifetime=60)
    LocalCatalog(conn, identity).add(make_manifest(identity.cluster_id, "mine"))
    assert {r.manifest.name for r in store.search("")} == {"old", "mine"}
    assert {r.manifest.name for r in store.search("", now=NOW + 60)} == {"mine"}
    assert store.resolve("old").name == "old"
    with pytest.raises(NotFound):
        store.resolve("old", now=NOW + 60)


@pytest.fixture
def indexed(store: CatalogStore, identity: Identity, other_identity: Identity) -> CatalogStore:
    me, peer = identity.cluster_id, other_identity.cluster_id
    publish(store, identity, [
        sized(me, "imagenet", 1000, description="large visual database", tags=("vision",),
              format="parquet"),
        sized(me, "cifar", 50, description="tiny images like imagenet thumbnails",
              tags=("vision", "small"), format="tfrecord"),
        sized(me, "census", 10, description="income table", tags=("tabular",), format="csv",
              schema=(Column("age", "int64"), Column("income_usd", "double"))),
    ])
    publish(store, other_identity, [
        sized(peer, "imagenet-mirror", 1000, description="copy", tags=("vision",),
              format="parquet"),
    ])
    return store


def names(results) -> list[str]:
    return [r.manifest.name for r in results]


def test_search_ranking_name_beats_description(indexed: CatalogStore) -> None:
    results = indexed.search("imagenet")
    assert set(names(results)) == {"imagenet", "imagenet-mirror", "cifar"}
    assert names(results)[-1] == "cifar"  # only its description matches
    assert results[0].score >= results[1].score > results[2].score > 0


def test_search_fields_and_prefixes(indexed: CatalogStore, other_identity: Identity) -> None:
    assert names(indexed.search("income")) == ["census"]  # description and column
    assert names(indexed.search("age")) == ["census"]  # schema column only
    assert names(indexed.search("usd")) == ["census"]  # part of a column name
    assert names(indexed.search("tabular")) == ["census"]  # tag
    assert names(indexed.search("imag"))[0].startswith("imagenet")  # prefix
    assert names(indexed.search(other_identity.cluster_id)) == ["imagenet-mirror"]
    assert names(indexed.search("visual database")) == ["imagenet"]  # all words must match
    assert indexed.search("zebra") == []
    assert names(indexed.search('"; DROP TABLE x; --')) == []  # query syntax is neutralised


def test_search_filters(indexed: CatalogStore, identity: Identity,
                        other_identity: Identity) -> None:
    assert set(names(indexed.search(format="parquet"))) == {"imagenet", "imagenet-mirror"}
    assert names(indexed.search("imagenet", format="tfrecord")) == ["cifar"]
    assert names(indexed.search("imagenet", publisher=other_identity.cluster_id)) == [
        "imagenet-mirror"]
    assert len(indexed.search(publisher=identity.cluster_id)) == 3
    assert names(indexed.search(tags=["vision", "small"])) == ["cifar"]
    assert names(indexed.search(tags=["tabular"])) == ["census"]
    assert set(names(indexed.search(min_size=1000))) == {"imagenet", "imagenet-mirror"}
    assert set(names(indexed.search(max_size=50))) == {"cifar", "census"}
    assert names(indexed.search(min_size=11, max_size=999)) == ["cifar"]
    assert names(indexed.search()) == ["census", "cifar", "imagenet", "imagenet-mirror"]
    assert len(indexed.search(limit=2)) == 2
    [hit] = indexed.search("census")
    assert hit.publisher == identity.cluster_id and hit.manifest.total_size == 10



def test_search_words_never_match_filter_values(indexed: CatalogStore) -> None:
    # Filters are tokens in the same index: "f" + hex("parquet"), "t" + hex("vision").
    assert indexed.search("f7061") == [] and indexed.search("t76") == []
    assert names(indexed.search("tiny", format="tfrecord", tags=["small"])) == ["cifar"]


def test_search_with_more_matches_than_it_ranks_keeps_name_matches_first(
    store: CatalogStore, identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = identity.cluster_id
    # Indexed first, so outside the window of the newest matches.
    publish(store, identity, [sized(me, "zebra", 5, description="zebra stripes")]
            + [sized(me, f"other-{i}", 5, description=f"zebra {'zebra ' * i}crossing {i}")
               for i in range(6)])
    everything = names(store.search("zebra"))
    monkeypatch.setattr("p2pdata.catalog.store.RANKED_AT_MOST", 3)
    windowed = names(store.search("zebra"))
    assert windowed[0] == everything[0] == "zebra"
    # The rest: the 3 newest matches, by score, as the full ranking orders them.
    assert windowed[1:] == [n for n in everything if n in {"other-3", "other-4", "other-5"}]
    assert names(store.search("zebra", max_size=4)) == []
