"""This cluster's own catalog: the datasets it publishes, and their signed catalog."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import replace

from p2pdata.catalog._sql import transaction
from p2pdata.catalog.catalog import sign_catalog
from p2pdata.catalog.encoding import encode
from p2pdata.catalog.identity import Identity
from p2pdata.catalog.manifest import Manifest
from p2pdata.catalog.store import CatalogStore, load_manifest, version_key
from p2pdata.errors import NotFound, PublishError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog_local (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    manifest BLOB NOT NULL,     -- canonical msgpack of the manifest
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS catalog_local_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,   -- of the last signed catalog; only ever grows
    content_sha256 BLOB NOT NULL,
    issued INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    signed BLOB NOT NULL
);
"""


class LocalCatalog:
    """The datasets this cluster publishes, kept in SQLite and mirrored into the search index."""

    def __init__(self, conn: sqlite3.Connection, identity: Identity) -> None:
        self.conn = conn
        self.identity = identity
        self.index = CatalogStore(conn)
        conn.executescript(_SCHEMA)

    def add(self, manifest: Manifest) -> Manifest:
        """Publish a manifest; return what is stored.

        The same name@version again with the same files is a no-op, or a
        metadata update (description, tags, ...) that keeps the first
        `created`; with other files it is refused: versions are immutable.
        """
        if manifest.owner != self.identity.cluster_id:
            raise PublishError(
                f"{manifest.ref} names owner {manifest.owner}, not this cluster "
                f"({self.identity.cluster_id})"
            )
        with transaction(self.conn):
            try:
                old = self.get(manifest.name, manifest.version)
            except NotFound:
                old = None
            if old is not None:
                if (old.format, old.files) != (manifest.format, manifest.files):
                    raise PublishError(
                        f"{manifest.ref} is already published with different files; "
                        "publish them under a new version"
                    )
                manifest = replace(
                    manifest, created=old.created, torrent=manifest.torrent or old.torrent
                )
                if manifest == old and manifest.extra == old.extra:
                    return old
            self.conn.execute(
                "INSERT OR REPLACE INTO catalog_local VALUES (?, ?, ?)",
                (manifest.name, manifest.version, encode(manifest.to_dict())),
            )
            self.index.index_own(self.identity.cluster_id, self.datasets())
        return manifest

    def remove(self, name: str, version: str) -> None:
        with transaction(self.conn):
            if not self.conn.execute(
                "DELETE FROM catalog_local WHERE name = ? AND version = ?", (name, version)
            ).rowcount:
                raise NotFound(f"this cluster does not publish {name}@{version}")
            self.index.index_own(self.identity.cluster_id, self.datasets())

    def get(self, name: str, version: str) -> Manifest:
        row = self.conn.execute(
            "SELECT manifest FROM catalog_local WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
        if row is None:
            raise NotFound(f"this cluster does not publish {name}@{version}")
        return load_manifest(row["manifest"])

    def datasets(self) -> list[Manifest]:
        """All published manifests, by name then version (oldest first)."""
        found = [load_manifest(row["manifest"]) for row in self.conn.execute(
            "SELECT manifest FROM catalog_local"
        )]
        return sorted(found, key=lambda m: (m.name, version_key(m.version)))

    @property
    def version(self) -> int:
        """Version of the last signed catalog (0 before the first)."""
        row = self.conn.execute("SELECT version FROM catalog_local_state").fetchone()
        return 0 if row is None else row["version"]

    def signed(self, now: int, lifetime: int,
               public: Callable[[Manifest], Manifest | None] | None = None,
               renew: bool = False) -> bytes:
        """This cluster's signed catalog, valid from `now` for `lifetime` seconds.

        Peers reject a version they hold with other bytes, so every new
        signature takes a new version. The last one is reused while its
        content is current and it has at least half its lifetime left: serving
        it on every request costs nothing and does not inflate the version. `renew` signs a
        new version anyway (what the DHT advertises changed: its sequence number is the version).
        """
        datasets = self.datasets()
        if public is not None:  # e.g. restricted datasets as stubs, or left out
            datasets = [shown for m in datasets if (shown := public(m)) is not None]
        content = hashlib.sha256(encode([m.to_dict() for m in datasets])).digest()
        with transaction(self.conn):
            state = self.conn.execute("SELECT * FROM catalog_local_state").fetchone()
            if (
                not renew
                and state is not None
                and state["content_sha256"] == content
                and state["expires"] - state["issued"] == lifetime
                and state["issued"] <= now < state["issued"] + lifetime // 2
            ):
                return state["signed"]
            version = (0 if state is None else state["version"]) + 1
            blob = sign_catalog(
                self.identity, datasets, version=version, now=now, lifetime=lifetime
            )
            self.conn.execute(
                "INSERT OR REPLACE INTO catalog_local_state VALUES (1, ?, ?, ?, ?, ?)",
                (version, content, now, now + lifetime, blob),
            )
        return blob
