"""Peer health in the state database, so a restarted daemon remembers who was failing and why.

`HealthStore.save` is `PeerHealth`'s `on_change`; `load` gives what `PeerHealth.restore` takes.
"""

from __future__ import annotations

import logging
import sqlite3

from p2pdata.peers.health import PeerState, PeerStatus, Source

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_health (
    url TEXT PRIMARY KEY,
    sources TEXT NOT NULL,  -- comma-separated: how we knew the peer when this was saved
    state TEXT NOT NULL,
    cluster_id TEXT,
    last_seen REAL,
    failures INTEGER NOT NULL,
    last_error TEXT,
    next_attempt REAL
)
"""


class HealthStore:
    """The peer_health table: one row per known peer."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.execute(_SCHEMA)

    def save(self, url: str, status: PeerStatus | None) -> None:
        if status is None:
            self.db.execute("DELETE FROM peer_health WHERE url = ?", (url,))
            return
        self.db.execute(
            "INSERT OR REPLACE INTO peer_health (url, sources, state, cluster_id, last_seen,"
            " failures, last_error, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (url, ",".join(sorted(status.sources)), str(status.state), status.cluster_id,
             status.last_seen, status.failures, status.last_error, status.next_attempt),
        )

    def load(self) -> list[PeerStatus]:
        saved = []
        for row in self.db.execute("SELECT * FROM peer_health ORDER BY url"):
            try:
                sources = frozenset(Source(s) for s in row["sources"].split(",") if s)
                state = PeerState(row["state"])
            except ValueError as exc:  # written by a newer daemon: start that peer afresh
                log.warning("ignoring the saved health of peer %s: %s", row["url"], exc)
                continue
            saved.append(PeerStatus(
                row["url"], sources, state, cluster_id=row["cluster_id"],
                last_seen=row["last_seen"], failures=row["failures"],
                last_error=row["last_error"], next_attempt=row["next_attempt"],
            ))
        return saved
