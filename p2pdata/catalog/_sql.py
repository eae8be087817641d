"""Small SQLite helpers shared by the catalog's stores."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One atomic write; nests inside a caller's transaction as a savepoint."""
    if conn.in_transaction:
        conn.execute("SAVEPOINT catalog")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO catalog")
            conn.execute("RELEASE catalog")
            raise
        conn.execute("RELEASE catalog")
        return
    # IMMEDIATE takes the write lock up front, so busy_timeout applies instead of a deadlock.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
