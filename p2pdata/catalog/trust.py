"""The trust store: which publishers' catalogs we accept, pinned as SSH pins host keys."""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from p2pdata.catalog._sql import transaction
from p2pdata.catalog.identity import decode_public_key, encode_public_key, fingerprint
from p2pdata.errors import IdentityError, NotFound

log = logging.getLogger(__name__)

CLUSTER_ID = re.compile(r"[a-z2-7]{16}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog_trust (
    cluster_id TEXT PRIMARY KEY,
    public_key BLOB,            -- NULL when pinned by cluster id alone
    name TEXT,
    added INTEGER NOT NULL,
    first_use INTEGER NOT NULL  -- 1: pinned automatically by trust on first use
)
"""


@dataclass(frozen=True)
class TrustedCluster:
    cluster_id: str
    public_key: str | None  # `ed25519:<base64>` when known
    name: str | None
    added: int
    first_use: bool


def check_cluster_id(text: str) -> str:
    if not CLUSTER_ID.fullmatch(text):
        raise IdentityError(
            f"{text!r} is not a cluster id (16 characters of a-z and 2-7) "
            "nor a public key (ed25519:<base64>)"
        )
    return text


class TrustStore:
    """Pinned publishers. `is_trusted` is verify_catalog's `trusted=` callable.

    A key is trusted iff its fingerprint is pinned (and, when the pin holds a
    key, it is that key). With trust_on_first_use an unknown publisher is
    pinned on first sight, with a warning: for a LAN where every peer is ours.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        trust_on_first_use: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self.trust_on_first_use = trust_on_first_use
        self.clock = clock
        conn.execute(_SCHEMA)

    def add(self, who: str | bytes, name: str | None = None) -> str:
        """Pin a cluster id, or a public key (raw 32 bytes or `ed25519:...`); return the id."""
        key: bytes | None
        if isinstance(who, bytes):
            if len(who) != 32:
                raise IdentityError(f"a public key has 32 bytes, got {len(who)}")
            key = who
        elif who.strip().startswith("ed25519:"):
            key = decode_public_key(who)
        else:
            key = None
        cluster_id = fingerprint(key) if key is not None else check_cluster_id(who.strip())
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT public_key FROM catalog_trust WHERE cluster_id = ?", (cluster_id,)
            ).fetchone()
            # Re-adding by id must not forget a key we already know.
            if key is None and row is not None:
                key = row["public_key"]
            self.conn.execute(
                "INSERT OR REPLACE INTO catalog_trust VALUES (?, ?, ?, ?, 0)",
                (cluster_id, key, name, int(self.clock())),
            )
        return cluster_id

    def remove(self, cluster_id: str) -> None:
        if not self.conn.execute(
            "DELETE FROM catalog_trust WHERE cluster_id = ?", (cluster_id,)
        ).rowcount:
            raise NotFound(f"cluster {cluster_id} is not in the trust store")

    def list(self) -> list[TrustedCluster]:
        rows = self.conn.execute("SELECT * FROM catalog_trust ORDER BY cluster_id").fetchall()
        return [
            TrustedCluster(
                cluster_id=row["cluster_id"],
                public_key=encode_public_key(row["public_key"]) if row["public_key"] else None,
                name=row["name"],
                added=row["added"],
                first_use=bool(row["first_use"]),
            )
            for row in rows
        ]

    def is_trusted(self, cluster_id: str, key: bytes) -> bool:
        if fingerprint(key) != cluster_id:
            return False
        row = self.conn.execute(
            "SELECT public_key FROM catalog_trust WHERE cluster_id = ?", (cluster_id,)
        ).fetchone()
        if row is not None:
            return row["public_key"] is None or row["public_key"] == key
        if not self.trust_on_first_use:
            return False
        log.warning(
            "trusting unknown publisher %s on first use (key %s); "
            "remove it with `p2pdata trust remove %s` if that is wrong",
            cluster_id,
            encode_public_key(key),
            cluster_id,
        )
        self.conn.execute(
            "INSERT OR IGNORE INTO catalog_trust VALUES (?, ?, NULL, ?, 1)",
            (cluster_id, key, int(self.clock())),
        )
        return True
