"""The state database: columns added to tables an older daemon wrote."""

from __future__ import annotations

from pathlib import Path

from p2pdata.db import add_columns, open_db


def test_columns_an_older_table_lacks_are_added_once_with_their_defaults(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "state.db")
    conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY)")
    conn.execute("INSERT INTO runs (id) VALUES ('r1')")
    added = [("engine", "TEXT NOT NULL DEFAULT 'local'"), ("retries", "INTEGER")]
    add_columns(conn, "runs", added)
    add_columns(conn, "runs", added)  # a second start: nothing to add, no error
    row = conn.execute("SELECT * FROM runs").fetchone()
    assert dict(row) == {"id": "r1", "engine": "local", "retries": None}
