"""The state database: columns added to, or dropped from, tables an older daemon wrote."""

from __future__ import annotations

from pathlib import Path

from p2pdata.db import add_columns, drop_columns, open_db


def test_columns_an_older_table_lacks_are_added_once_with_their_defaults(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "state.db")
    conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY)")
    conn.execute("INSERT INTO runs (id) VALUES ('r1')")
    added = [("engine", "TEXT NOT NULL DEFAULT 'local'"), ("retries", "INTEGER")]
    add_columns(conn, "runs", added)
    add_columns(conn, "runs", added)  # a second start: nothing to add, no error
    row = conn.execute("SELECT * FROM runs").fetchone()
    assert dict(row) == {"id": "r1", "engine": "local", "retries": None}


def test_columns_no_longer_kept_are_dropped_once_and_the_rest_kept(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "state.db")
    conn.execute("CREATE TABLE seen (id TEXT PRIMARY KEY, version INTEGER NOT NULL, old INTEGER NOT NULL)")
    conn.execute("INSERT INTO seen VALUES ('c1', 4, 40)")
    drop_columns(conn, "seen", ["old"])
    drop_columns(conn, "seen", ["old"])  # a second start: nothing to drop, no error
    conn.execute("INSERT INTO seen (id, version) VALUES ('c2', 2)")  # old's NOT NULL is gone with it
    assert [dict(row) for row in conn.execute("SELECT * FROM seen ORDER BY id")] == [
        {"id": "c1", "version": 4}, {"id": "c2", "version": 2}]
