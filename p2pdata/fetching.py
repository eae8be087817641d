"""Fetch jobs: the durable record of one `p2pdata fetch`, from resolved manifest to landed data.

The record and its allowed transitions are plain; the daemon drives them.
Jobs live in SQLite, so a daemon restarted mid-fetch picks them up again.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

from p2pdata.errors import NotFound, P2pdataError

ACTIVE_STATES = ("queued", "transferring", "landing")
FINAL_STATES = ("landed", "failed", "cancelled")
_NEXT = {
    "queued": ("transferring", "failed", "cancelled"),
    "transferring": ("landing", "landed", "failed", "cancelled", "queued"),
    "landing": ("landed", "failed", "cancelled", "queued"),
}


@dataclass
class FetchJob:
    id: str
    ref: str
    manifest_id: str
    publisher: str
    total_bytes: int
    tier: str
    to: str | None = None
    train: str | None = None
    files: list[str] = field(default_factory=list)
    verify: str = "v2"  # "sha256": land with a second, whole-file SHA-256 check
    peers: list[str] = field(default_factory=list)  # HOST:PORT seeds named by the user
    state: str = "queued"
    error: str | None = None
    done_bytes: int = 0
    landed_files: int = 0
    uri: str | None = None
    created: int = 0
    updated: int = 0

    def move(self, state: str, now: int, error: str | None = None) -> None:
        """Change state; only the transitions of the fetch life cycle are allowed."""
        if state not in _NEXT.get(self.state, ()):
            raise P2pdataError(f"fetch job {self.id} cannot go from {self.state} to {state}")
        self.state, self.updated = state, now
        if error is not None:
            self.error = error

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FetchJobTable:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.execute("CREATE TABLE IF NOT EXISTS fetch_jobs (id TEXT PRIMARY KEY, data TEXT NOT NULL)")

    def new(self, **fields: Any) -> FetchJob:
        job = FetchJob(id="f-" + secrets.token_hex(4), **fields)
        self.save(job)
        return job

    def save(self, job: FetchJob) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO fetch_jobs (id, data) VALUES (?, ?)", (job.id, json.dumps(job.to_dict()))
        )

    def get(self, job_id: str) -> FetchJob:
        row = self.conn.execute("SELECT data FROM fetch_jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no fetch job {job_id!r}")
        return FetchJob(**json.loads(row["data"]))

    def all(self) -> list[FetchJob]:
        rows = self.conn.execute("SELECT data FROM fetch_jobs").fetchall()
        return sorted((FetchJob(**json.loads(r["data"])) for r in rows), key=lambda j: j.created)

    def unfinished(self) -> list[FetchJob]:
        return [job for job in self.all() if job.state in ACTIVE_STATES]
