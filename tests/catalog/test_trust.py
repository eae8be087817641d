"""Trust store: pinning by cluster id or key, removal, and trust on first use."""

from __future__ import annotations

import logging

import pytest

from p2pdata.catalog import (
    Identity,
    TrustStore,
    encode_public_key,
    sign_catalog,
    verify_catalog,
)
from p2pdata.errors import IdentityError, NotFound, UntrustedKey
from tests.catalog.conftest import NOW


def test_pin_by_cluster_id(conn, identity: Identity, other_identity: Identity) -> None:
    trust = TrustStore(conn)
    assert not trust.is_trusted(identity.cluster_id, identity.public_key)
    assert trust.add(identity.cluster_id, name="lab") == identity.cluster_id
    assert trust.is_trusted(identity.cluster_id, identity.public_key)
    # Another key claiming the pinned id does not match its fingerprint.
    assert not trust.is_trusted(identity.cluster_id, other_identity.public_key)
    assert not trust.is_trusted(other_identity.cluster_id, other_identity.public_key)
    [entry] = trust.list()
    assert (entry.cluster_id, entry.name, entry.public_key, entry.first_use) == (
        identity.cluster_id, "lab", None, False)


def test_pin_by_public_key(conn, identity: Identity) -> None:
    trust = TrustStore(conn)
    text = encode_public_key(identity.public_key)
    assert trust.add(text) == identity.cluster_id
    assert trust.is_trusted(identity.cluster_id, identity.public_key)
    assert trust.list()[0].public_key == text
    # Re-adding by id keeps the known key.
    trust.add(identity.cluster_id, name="renamed")
    assert trust.list()[0].public_key == text
    assert trust.add(identity.public_key) == identity.cluster_id


def test_remove(conn, identity: Identity) -> None:
    trust = TrustStore(conn)
    trust.add(identity.cluster_id)
    trust.remove(identity.cluster_id)
    assert trust.list() == []
    assert not trust.is_trusted(identity.cluster_id, identity.public_key)
    with pytest.raises(NotFound):
        trust.remove(identity.cluster_id)


@pytest.mark.parametrize("bad", ["short", "ABCDEFGHIJKLMNOP", "ed25519:!!", "ed25519:AAAA"])
def test_add_rejects_garbage(conn, bad: str) -> None:
    with pytest.raises(IdentityError):
        TrustStore(conn).add(bad)


def test_trust_on_first_use(conn, identity: Identity, caplog) -> None:
    trust = TrustStore(conn, trust_on_first_use=True, clock=lambda: 42)
    with caplog.at_level(logging.WARNING):
        assert trust.is_trusted(identity.cluster_id, identity.public_key)
    assert identity.cluster_id in caplog.text
    assert encode_public_key(identity.public_key) in caplog.text
    [entry] = trust.list()
    assert entry.first_use and entry.added == 42
    # Pinned now: a strict store on the same database trusts it, without a new warning.
    caplog.clear()
    assert TrustStore(conn).is_trusted(identity.cluster_id, identity.public_key)
    assert caplog.text == ""


def test_as_verifier_callable(conn, identity: Identity, manifest) -> None:
    trust = TrustStore(conn)
    blob = sign_catalog(identity, [manifest()], version=1, now=NOW, lifetime=60)
    with pytest.raises(UntrustedKey):
        verify_catalog(blob, trusted=trust.is_trusted, now=NOW)
    trust.add(identity.cluster_id)
    assert verify_catalog(blob, trusted=trust.is_trusted, now=NOW).catalog.version == 1
