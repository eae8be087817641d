"""A peer serving a tampered or rolled-back catalog is rejected, reported, and its last good catalog kept."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from p2pdata.catalog import FileEntry, Manifest, sign_catalog
from p2pdata.devcluster import wait_for
from tests.hardening.attacker import FakePeer


def signed(peer: FakePeer, version: int, name: str) -> bytes:
    """A catalog of `peer` at `version` with one dataset, properly signed."""
    manifest = Manifest(name=name, version="1", owner=peer.identity.cluster_id, created=1, format="files",
                        files=(FileEntry("a.bin", 1, b"\x01" * 32),))
    return sign_catalog(peer.identity, [manifest], version=version, now=int(time.time()), lifetime=3600)


@pytest.fixture
def fake_peer() -> Iterator[FakePeer]:
    peer = FakePeer()
    yield peer
    peer.close()


def _peer_row(daemon, url: str) -> dict[str, Any] | None:
    return next((p for p in daemon.cli_json("peers") if p["url"] == url), None)


def test_tampered_then_rolled_back_catalogs_are_rejected(make_daemon, fake_peer):
    fake_peer.catalog = signed(fake_peer, version=2, name="good-data")
    gamma = make_daemon("gamma", discovery={"static_peers": [fake_peer.url], "sync_interval": 1})
    gamma.cli("trust", "add", fake_peer.identity.cluster_id)
    wait_for(lambda: gamma.cli_json("search", "good"), what="the good catalog to be held")

    # Tampered: one byte of the signed body flipped.
    good = signed(fake_peer, version=3, name="good-data")
    index = good.index(b"good-data")
    fake_peer.catalog = good[:index] + b"evil-data" + good[index + 9:]
    row = wait_for(lambda: (r := _peer_row(gamma, fake_peer.url)) and r["error"] and r, what="rejection")
    assert "BadSignature" in row["error"] and row["state"] == "rejected"

    # Rolled back: a validly signed but older version.
    fake_peer.catalog = signed(fake_peer, version=1, name="old-data")
    wait_for(lambda: "Rollback" in (_peer_row(gamma, fake_peer.url)["error"] or ""), what="rollback rejection")

    # The last good catalog is still what search answers from.
    assert [r["name"] for r in gamma.cli_json("search", "data")] == ["good-data"]


def test_untrusted_publisher_is_flagged(make_daemon, fake_peer):
    fake_peer.catalog = signed(fake_peer, version=1, name="some-data")
    gamma = make_daemon("gamma", discovery={"static_peers": [fake_peer.url], "sync_interval": 1})
    row = wait_for(lambda: (r := _peer_row(gamma, fake_peer.url)) and r["error"] and r, what="rejection")
    assert "UntrustedKey" in row["error"]
    assert gamma.cli_json("search", "data") == []
    # Not a dead end: what was asked for may be in the refused catalog, and the user is told.
    refused = "1 peer(s) offered a catalog this cluster refuses"
    assert refused in gamma.cli("search", "data") and "p2pdata peers" in gamma.cli("search", "data")
    assert refused in gamma.cli("fetch", "some-data@1", ok=False)
    assert refused in gamma.cli("info", "some-data", ok=False)
