"""This cluster's own catalog: add/remove, immutable versions, monotonic catalog version."""

from __future__ import annotations

import pytest

from p2pdata.catalog import (
    CatalogStore,
    FileEntry,
    HeldCatalog,
    Identity,
    LocalCatalog,
    Torrent,
    verify_catalog,
)
from p2pdata.errors import NotFound, PublishError
from tests.catalog.conftest import NOW, make_manifest


def test_add_list_remove(conn, identity: Identity, manifest) -> None:
    local = LocalCatalog(conn, identity)
    local.add(manifest("b", "1.10"))
    local.add(manifest("b", "1.9"))
    local.add(manifest("a", "1"))
    assert [m.ref for m in local.datasets()] == ["a@1", "b@1.9", "b@1.10"]
    local.remove("b", "1.9")
    assert [m.ref for m in local.datasets()] == ["a@1", "b@1.10"]
    with pytest.raises(NotFound):
        local.remove("b", "1.9")
    with pytest.raises(NotFound):
        local.get("zzz", "1")


def test_same_version_other_files_refused(conn, identity: Identity, manifest) -> None:
    local = LocalCatalog(conn, identity)
    local.add(manifest())
    other = manifest(files=(FileEntry("x", 1, b"\x01" * 32),))
    with pytest.raises(PublishError, match="different files"):
        local.add(other)


def test_identical_is_noop_metadata_update_keeps_created(conn, identity, manifest) -> None:
    local = LocalCatalog(conn, identity)
    first = local.add(manifest())
    assert local.add(manifest(created=NOW + 100)) == first  # re-publishing the same directory
    updated = local.add(manifest(description="better words", created=NOW + 200))
    assert updated.description == "better words" and updated.created == NOW
    torrent = Torrent(b"\x02" * 32, b"t")
    local.add(manifest(torrent=torrent))
    assert local.add(manifest()).torrent == torrent  # a re-publish does not lose the torrent


def test_foreign_owner_refused(conn, identity: Identity, other_identity: Identity) -> None:
    with pytest.raises(PublishError, match="not this cluster"):
        LocalCatalog(conn, identity).add(make_manifest(other_identity.cluster_id))


def test_signed_version_monotonic(conn, identity: Identity, manifest) -> None:
    local = LocalCatalog(conn, identity)
    assert local.version == 0

    def check(blob: bytes, held: HeldCatalog | None):
        return verify_catalog(blob, trusted=lambda c, k: True, now=NOW, held=held)

    first = local.signed(NOW, 3600)
    v1 = check(first, None)
    assert v1.catalog.version == 1 and v1.catalog.datasets == ()
    # Same content within half the lifetime: the very same bytes.
    assert local.signed(NOW + 100, 3600) == first
    local.add(manifest())
    second = check(local.signed(NOW + 200, 3600), HeldCatalog(1, v1.body_sha256))
    assert second.catalog.version == 2 and len(second.catalog.datasets) == 1
    # Unchanged content, but re-signed when half the lifetime has gone: a new version.
    third = check(local.signed(NOW + 200 + 1800, 3600),
                  HeldCatalog(2, second.body_sha256))
    assert third.catalog.version == 3
    # The version survives a restart (a new LocalCatalog on the same database).
    again = LocalCatalog(conn, identity)
    assert again.version == 3
    local.remove("demo", "1")
    assert check(again.signed(NOW + 2100, 3600), None).catalog.version == 4


def test_own_datasets_are_searchable(conn, identity: Identity, manifest) -> None:
    local = LocalCatalog(conn, identity)
    local.add(manifest("mnist", description="handwritten digits"))
    store = CatalogStore(conn)
    [hit] = store.search("digits")
    assert hit.publisher == identity.cluster_id and hit.manifest.name == "mnist"
    assert store.resolve("mnist").ref == "mnist@1"
    local.remove("mnist", "1")
    assert store.search("digits") == []
