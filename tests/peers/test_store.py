"""Peer health saved in a real SQLite state database and read back, as across a restart."""

from __future__ import annotations

from pathlib import Path

from p2pdata.db import open_db
from p2pdata.peers import HealthStore, PeerHealth, PeerState, Source

A = "http://10.0.0.1:7001"
B = "http://10.0.0.2:7001"


def test_health_survives_reopening_the_database(tmp_path: Path) -> None:
    db = open_db(tmp_path / "state.db")
    store = HealthStore(db)
    health = PeerHealth(base_backoff=5, random=lambda: 0.0, on_change=store.save)
    health.add(A, Source.STATIC, now=100)
    health.add(B, Source.ZEROCONF, now=100)
    health.succeeded(A, now=101, cluster_id="a" * 16)
    health.failed(A, now=200, error="peer http://10.0.0.1:7001: /v1/info: cannot connect")
    health.failed(A, now=205, error="refused again")
    health.rejected(B, now=150, error="catalog refused (BadSignature): bad", cluster_id="b" * 16)
    db.close()

    db = open_db(tmp_path / "state.db")
    store = HealthStore(db)
    rows = {status.url: status for status in store.load()}
    assert rows == {A: health.get(A), B: health.get(B)}
    assert rows[A].failures == 2 and rows[A].last_seen == 101 and rows[A].next_attempt == 215
    assert rows[B].sources == {Source.ZEROCONF} and rows[B].state is PeerState.REJECTED

    restarted = PeerHealth(on_change=store.save)
    restarted.add(A, Source.STATIC, now=300)
    restarted.restore(rows[A], now=300)
    restarted.forget(A)
    assert [status.url for status in store.load()] == [B]
    db.close()


def test_rows_of_a_newer_daemon_are_skipped(tmp_path: Path) -> None:
    db = open_db(tmp_path / "state.db")
    store = HealthStore(db)
    db.execute("INSERT INTO peer_health (url, sources, state, failures) VALUES (?, ?, ?, ?)",
               (A, "static", "quarantined", 1))
    db.execute("INSERT INTO peer_health (url, sources, state, failures) VALUES (?, ?, ?, ?)",
               (B, "static", "healthy", 0))
    assert [status.url for status in store.load()] == [B]
    db.close()
