"""Peer health with a fake clock and a fixed random source: backoff, cap, jitter, withdrawal,
and what a restart restores."""

from __future__ import annotations

from dataclasses import replace

import pytest

from p2pdata.peers import InvalidPeerUrl, PeerHealth, PeerState, PeerStatus, Source

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


def test_every_change_is_reported_for_saving() -> None:
    changes: list[tuple[str, PeerStatus | None]] = []
    health = PeerHealth(base_backoff=5, random=lambda: 0.0,
                        on_change=lambda url, status: changes.append((url, status)))
    health.add(A, Source.STATIC, now=0)
    health.failed(A, now=1, error="refused")
    health.rejected(A, now=2, error="catalog refused (Rollback)", cluster_id="a" * 16)
    health.succeeded(A, now=3)
    health.withdraw(A, Source.STATIC, now=4)
    health.forget(A)
    assert [url for url, _ in changes] == [A] * 6
    assert [s.state if s else None for _, s in changes] == [
        PeerState.UNKNOWN, PeerState.UNREACHABLE, PeerState.REJECTED, PeerState.HEALTHY,
        PeerState.UNREACHABLE, None]
    assert changes[2][1] is not None and changes[2][1].cluster_id == "a" * 16


def saved(url: str, state: PeerState, sources: set[Source], **fields: object) -> PeerStatus:
    return PeerStatus(url, frozenset(sources), state, **fields)  # type: ignore[arg-type]


def test_restored_health_carries_failures_last_seen_and_backoff() -> None:
    health = table()
    health.add(A, Source.STATIC, now=1000)
    failing = saved(A, PeerState.UNREACHABLE, {Source.STATIC}, cluster_id="a" * 16,
                    last_seen=900, failures=4, last_error="refused", next_attempt=1030)
    status = health.restore(failing, now=1000)
    assert status == replace(failing, sources=frozenset({Source.STATIC}))
    assert health.due(1029) == [] and health.due(1030) == [A]  # backoff kept
    # The next failure backs off from where it was, not from the start.
    assert health.failed(A, now=1030, error="refused").failures == 5

    # A backoff beyond the cap (the clock went back while we were down) is capped.
    far = replace(failing, next_attempt=10**9)
    assert health.restore(far, now=1000).next_attempt == 1000 + 60


def test_restored_healthy_or_refused_peers() -> None:
    health = table()
    health.add(A, Source.ADDED, now=1000)
    health.add(B, Source.STATIC, now=1000)
    ok = saved(A, PeerState.HEALTHY, {Source.ADDED}, last_seen=990, next_attempt=1200)
    assert health.restore(ok, now=1000).next_attempt == 1000  # synced at once: seeds unknown
    refused = saved(B, PeerState.REJECTED, {Source.STATIC, Source.ZEROCONF}, failures=2,
                    last_error="catalog refused (UntrustedKey): ...", next_attempt=1010)
    status = health.restore(refused, now=1000)
    assert (status.state, status.failures, status.next_attempt) == (PeerState.REJECTED, 2, 1010)
    assert status.sources == {Source.STATIC} and status.last_error.startswith("catalog refused")


def test_restored_peers_nothing_names_now() -> None:
    health = table()
    zeroconf = saved(A, PeerState.HEALTHY, {Source.ZEROCONF}, cluster_id="a" * 16,
                     last_seen=990, next_attempt=1200)
    status = health.restore(zeroconf, now=1000)
    # Listed, not scheduled, and not claimed healthy, until zeroconf finds it again.
    assert status.state is PeerState.UNREACHABLE and status.next_attempt is None
    assert status.last_error == "not seen since the daemon restarted" and status.last_seen == 990
    assert health.add(A, Source.ZEROCONF, now=1001).next_attempt == 1001
    # Configured last time only, configured no more: gone, as after `peers remove`.
    changes: list[str] = []
    health = PeerHealth(on_change=lambda url, status: changes.append(f"{url} {status}"))
    assert health.restore(saved(B, PeerState.HEALTHY, {Source.ADDED}), now=1000) is None
    assert health.peers() == [] and changes == [f"{B} None"]
