"""The daemon's one SQLite database. Each room creates its own tables in it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path


def open_db(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the state database with settings safe for one writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def add_columns(conn: sqlite3.Connection, table: str, columns: Iterable[tuple[str, str]]) -> None:
    """Add the (name, declaration) columns `table` lacks: tables written by an older daemon."""
    present = _columns(conn, table)
    for name, declaration in columns:
        if name not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")


def drop_columns(conn: sqlite3.Connection, table: str, names: Iterable[str]) -> None:
    """Drop the columns of `names` that `table` still has: tables written by an older daemon.
    (ALTER TABLE DROP COLUMN: SQLite 3.35+; Debian 12 has 3.40.)"""
    present = _columns(conn, table)
    for name in names:
        if name in present:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {name}")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
