"""Peer health with a fake clock and a fixed random source: backoff, cap, jitter, withdrawal."""

from __future__ import annotations

import pytest

from p2pdata.peers import InvalidPeerUrl, PeerHealth, PeerState, Source

A = "http://10.0.0.1:7001"
B = "http://10.0.0.2:7001"


def table(random: float = 0.0) -> PeerHealth:
    return PeerHealth(
        sync_interval=300, base_backoff=5, max_backoff=60, jitter=0.5, random=lambda: random
    )


def test_new_peers_are_due_at_once_and_then_every_interval() -> None:
    health = table()
    health.add(A + "/", Source.STATIC, now=100)
    health.add(B, Source.ZEROCONF, now=101, cluster_id="c" * 16)
    assert health.due(100) == [A]
    assert health.due(101) == [A, B]
    assert health.get(A).state is PeerState.UNKNOWN
    status = health.succeeded(A, now=102, cluster_id="a" * 16)
    assert status.state is PeerState.HEALTHY and status.last_seen == 102
    assert status.next_attempt == 402
    assert health.due(401) == [B]
    assert health.next_attempt() == 101


def test_backoff_doubles_caps_and_resets() -> None:
    health = table()
    health.add(A, Source.STATIC, now=0)
    delays = []
    for _ in range(6):
        status = health.failed(A, now=1000, error="refused")
        delays.append(status.next_attempt - 1000)
    assert delays == [5, 10, 20, 40, 60, 60]
    assert status.state is PeerState.UNREACHABLE
    assert status.failures == 6 and status.last_error == "refused"
    assert status.last_seen is None
    assert health.due(1059) == [] and health.due(1060) == [A]
    status = health.succeeded(A, now=2000)
    assert status.failures == 0 and status.last_error is None


def test_jitter_only_shortens_and_uses_the_injected_random() -> None:
    assert table(random=0.0).backoff(10) == 60
    assert table(random=1.0).backoff(10) == 30
    assert table(random=0.5).backoff(1) == 3.75


def test_rejected_peer_was_seen_but_is_backed_off() -> None:
    health = table()
    health.add(A, Source.ADDED, now=0)
    status = health.rejected(A, now=10, error="catalog refused: rollback")
    assert status.state is PeerState.REJECTED
    assert status.last_seen == 10 and status.next_attempt == 15


def test_withdrawn_peer_stays_listed_as_unreachable() -> None:
    health = table()
    health.add(A, Source.ZEROCONF, now=0, cluster_id="a" * 16)
    health.succeeded(A, now=1)
    status = health.withdraw(A, Source.ZEROCONF, now=5)
    assert status.state is PeerState.UNREACHABLE and not status.active
    assert status.cluster_id == "a" * 16 and status.last_seen == 1
    assert health.due(10_000) == []
    assert [s.url for s in health.peers()] == [A]
    # A sync finishing after the withdrawal does not reschedule it.
    assert health.failed(A, now=6, error="timeout").next_attempt is None
    # Re-announced: due again at once, despite its failures.
    assert health.add(A, Source.ZEROCONF, now=20).next_attempt == 20
    assert health.due(20) == [A]


def test_peer_known_two_ways_survives_losing_one() -> None:
    health = table()
    health.add(A, Source.STATIC, now=0)
    health.add("HTTP://10.0.0.1:7001", Source.ZEROCONF, now=0)
    assert len(health.peers()) == 1
    status = health.withdraw(A, Source.ZEROCONF, now=1)
    assert status.sources == {Source.STATIC} and status.state is PeerState.UNKNOWN
    assert health.due(1) == [A]
    assert health.forget(A) and health.peers() == []
    assert health.withdraw(A, Source.STATIC, now=2) is None


def test_unknown_peer_and_bad_settings() -> None:
    with pytest.raises(KeyError):
        table().failed(A, now=0, error="x")
    with pytest.raises(InvalidPeerUrl):
        table().add("ftp://x", Source.ADDED, now=0)
    with pytest.raises(ValueError):
        PeerHealth(jitter=1.5)
