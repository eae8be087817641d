"""Held catalogs and the search index: every verified catalog we hold, ours included.

Each publisher's datasets are replaced as a whole when a newer verified
catalog arrives. Beside its public catalog a publisher may show us datasets
privately (restricted datasets granted to us); those are indexed with it.
Search is SQLite FTS5 (bm25, the name weighted up) over name, description,
tags, schema column names and publisher.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from p2pdata.catalog._sql import transaction
from p2pdata.catalog.catalog import HeldCatalog, VerifiedCatalog, read_verified
from p2pdata.catalog.encoding import decode, encode
from p2pdata.catalog.manifest import Manifest, parse_ref
from p2pdata.errors import Ambiguous, MalformedData, NotFound, Rollback

_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog_held (
    cluster TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    version INTEGER NOT NULL,
    body_sha256 BLOB NOT NULL,
    issued INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    source TEXT NOT NULL,
    received INTEGER NOT NULL,
    raw BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS catalog_private (
    cluster TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    manifest BLOB NOT NULL,     -- canonical msgpack of the manifest
    PRIMARY KEY (cluster, name, version)
);
CREATE TABLE IF NOT EXISTS catalog_datasets (
    id INTEGER PRIMARY KEY,
    cluster TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    format TEXT NOT NULL,
    total_size INTEGER NOT NULL,
    expires INTEGER,            -- NULL: this cluster's own dataset, never stale
    manifest BLOB NOT NULL,     -- canonical msgpack of the manifest
    UNIQUE (cluster, name, version)
);
-- Also the order of results without query text, so LIMIT stops early.
CREATE INDEX IF NOT EXISTS catalog_datasets_name ON catalog_datasets (name, cluster, version);
CREATE INDEX IF NOT EXISTS catalog_datasets_format ON catalog_datasets (format);
CREATE INDEX IF NOT EXISTS catalog_datasets_size ON catalog_datasets (total_size);
CREATE TABLE IF NOT EXISTS catalog_tags (
    tag TEXT NOT NULL,
    dataset INTEGER NOT NULL,
    PRIMARY KEY (tag, dataset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS catalog_tags_dataset ON catalog_tags (dataset);
CREATE VIRTUAL TABLE IF NOT EXISTS catalog_search USING fts5 (
    name, description, tags, columns, publisher,
    prefix = '2 3', tokenize = 'unicode61 remove_diacritics 2'
);
"""

# bm25 column weights, in the order of catalog_search's columns.
_WEIGHTS = "10.0, 1.0, 3.0, 2.0, 1.0"
_MAX_MANIFEST = 256 * 1024 * 1024


def version_key(version: str) -> tuple[tuple[tuple[int, Any], ...], str]:
    """Sort key for versions, numeric-aware: 1.10 > 1.9 > 1.2-rc1 > 1.2 (no pre-release rules).

    Digit runs compare as numbers and sort after text in the same place;
    the raw string breaks ties such as 1.0 and 1.00.
    """
    parts = tuple(
        (1, int(token)) if token.isdigit() else (0, token)
        for token in re.findall(r"\d+|[a-z]+", version)
    )
    return parts, version


@dataclass(frozen=True)
class SearchResult:
    manifest: Manifest
    publisher: str  # cluster id
    score: float  # higher is better; 0 when there was no query text


@dataclass(frozen=True)
class HeldInfo:
    cluster: str
    version: int
    issued: int
    expires: int
    source: str
    received: int
    datasets: int


class CatalogStore:
    """Verified catalogs of peers and this cluster's own datasets, indexed for search."""

    def __init__(self, conn: sqlite3.Connection, *, clock: Callable[[], float] = time.time) -> None:
        self.conn = conn
        self.clock = clock
        conn.executescript(_SCHEMA)

    # -- held catalogs ------------------------------------------------------------------

    def held(self, cluster: str) -> HeldCatalog | None:
        """What verify_catalog needs as `held=` for this publisher."""
        row = self.conn.execute(
            "SELECT version, body_sha256 FROM catalog_held WHERE cluster = ?", (cluster,)
        ).fetchone()
        return None if row is None else HeldCatalog(row["version"], row["body_sha256"])

    def store(self, verified: VerifiedCatalog, source: str) -> None:
        """Keep a verified catalog as its publisher's current one and index its datasets."""
        catalog = verified.catalog
        with transaction(self.conn):
            held = self.held(catalog.cluster)
            # verify_catalog checked against what it was given; this guards a race with
            # another verifier that stored something newer meanwhile.
            if held is not None and catalog.version < held.version:
                raise Rollback(
                    f"catalog from cluster {catalog.cluster} has version {catalog.version}, "
                    f"older than version {held.version} already held"
                )
            self.conn.execute(
                "INSERT OR REPLACE INTO catalog_held VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    catalog.cluster,
                    catalog.public_key,
                    catalog.version,
                    verified.body_sha256,
                    catalog.issued,
                    catalog.expires,
                    source,
                    int(self.clock()),
                    verified.raw,
                ),
            )
            self._replace(catalog.cluster, self._with_private(catalog.cluster, catalog.datasets),
                          catalog.expires)

    def store_private(self, cluster: str, manifests: Iterable[Manifest]) -> None:
        """Datasets `cluster` shows to us alone (restricted ones granted to us), replacing the last set.

        They are searched and resolved like its public catalog's datasets, expire with that
        catalog, and take the place of a public entry of the same name and version (a stub).
        They are indexed only while a catalog of `cluster` is held; the caller has verified them.
        """
        manifests = list(manifests)
        for manifest in manifests:
            if manifest.owner != cluster:
                raise MalformedData(f"{manifest.ref} names owner {manifest.owner}, not {cluster}")
        with transaction(self.conn):
            self.conn.execute("DELETE FROM catalog_private WHERE cluster = ?", (cluster,))
            self.conn.executemany(
                "INSERT OR REPLACE INTO catalog_private VALUES (?, ?, ?, ?)",
                [(cluster, m.name, m.version, encode(m.to_dict())) for m in manifests],
            )
            held = self.conn.execute(
                "SELECT raw, expires FROM catalog_held WHERE cluster = ?", (cluster,)
            ).fetchone()
            if held is not None:
                public = read_verified(held["raw"]).datasets
                self._replace(cluster, self._with_private(cluster, public), held["expires"])

    def _with_private(self, cluster: str, public: Iterable[Manifest]) -> list[Manifest]:
        private = [load_manifest(row["manifest"]) for row in self.conn.execute(
            "SELECT manifest FROM catalog_private WHERE cluster = ?", (cluster,))]
        shown = {(m.name, m.version) for m in private}
        return [m for m in public if (m.name, m.version) not in shown] + private

    def index_own(self, cluster: str, manifests: Iterable[Manifest]) -> None:
        """Index this cluster's own datasets (they never expire from our own search)."""
        with transaction(self.conn):
            self._replace(cluster, manifests, None)

    def forget(self, cluster: str) -> None:
        """Drop a publisher's held catalog and its datasets (e.g. when its trust is removed)."""
        with transaction(self.conn):
            self.conn.execute("DELETE FROM catalog_held WHERE cluster = ?", (cluster,))
            self.conn.execute("DELETE FROM catalog_private WHERE cluster = ?", (cluster,))
            self._replace(cluster, (), None)

    def publishers(self) -> list[HeldInfo]:
        rows = self.conn.execute(
            "SELECT h.*, (SELECT count(*) FROM catalog_datasets d WHERE d.cluster = h.cluster)"
            " AS datasets FROM catalog_held h ORDER BY cluster"
        ).fetchall()
        return [
            HeldInfo(
                row["cluster"], row["version"], row["issued"], row["expires"], row["source"],
                row["received"], row["datasets"],
            )
            for row in rows
        ]

    def _replace(self, cluster: str, manifests: Iterable[Manifest], expires: int | None) -> None:
        ids = "SELECT id FROM catalog_datasets WHERE cluster = ?"
        self.conn.execute(f"DELETE FROM catalog_search WHERE rowid IN ({ids})", (cluster,))
        self.conn.execute(f"DELETE FROM catalog_tags WHERE dataset IN ({ids})", (cluster,))
        self.conn.execute("DELETE FROM catalog_datasets WHERE cluster = ?", (cluster,))
        for manifest in manifests:
            dataset = self.conn.execute(
                "INSERT INTO catalog_datasets"
                " (cluster, name, version, format, total_size, expires, manifest)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    cluster,
                    manifest.name,
                    manifest.version,
                    manifest.format,
                    manifest.total_size,
                    expires,
                    encode(manifest.to_dict()),
                ),
            ).lastrowid
            self.conn.executemany(
                "INSERT OR IGNORE INTO catalog_tags VALUES (?, ?)",
                [(tag, dataset) for tag in manifest.tags],
            )
            self.conn.execute(
                "INSERT INTO catalog_search (rowid, name, description, tags, columns, publisher)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    dataset,
                    manifest.name,
                    manifest.description,
                    " ".join(manifest.tags),
                    " ".join(column.name for column in manifest.schema),
                    cluster,
                ),
            )

    # -- lookups ------------------------------------------------------------------------

    def get(self, cluster: str, name: str, version: str) -> Manifest:
        row = self.conn.execute(
            "SELECT manifest FROM catalog_datasets WHERE cluster = ? AND name = ? AND version = ?",
            (cluster, name, version),
        ).fetchone()
        if row is None:
            raise NotFound(f"no dataset {cluster}/{name}@{version} in any held catalog")
        return load_manifest(row["manifest"])

    def manifests(self, cluster: str | None = None, name: str | None = None) -> list[Manifest]:
        """Held manifests, optionally of one publisher and/or one name; sorted by name, version."""
        sql = "SELECT manifest FROM catalog_datasets WHERE 1"
        args: list[Any] = []
        if cluster is not None:
            sql += " AND cluster = ?"
            args.append(cluster)
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        found = [load_manifest(row["manifest"]) for row in self.conn.execute(sql, args)]
        return sorted(found, key=lambda m: (m.name, version_key(m.version), m.owner))

    def names(self, prefix: str = "", limit: int = 200) -> list[tuple[str, str]]:
        """(name, version) pairs of held datasets whose name starts with `prefix`: for completion."""
        rows = self.conn.execute(
            "SELECT DISTINCT name, version FROM catalog_datasets WHERE substr(name, 1, ?) = ?"
            " ORDER BY name, version LIMIT ?",
            (len(prefix), prefix, limit),
        )
        return [(row["name"], row["version"]) for row in rows]

    def resolve(self, ref: str, *, now: int | None = None) -> Manifest:
        """The manifest `NAME`, `NAME@VERSION` or `CLUSTER/NAME[@VERSION]` names.

        Without a version the newest (by version_key) is chosen. A name that
        several publishers use is ambiguous unless the cluster is given, even
        when they publish the very same files: a publisher can re-sign another's
        manifest as its own (a relabelled copy), and who vouches for a dataset
        is the user's choice, not the one whose id sorts first. With `now`,
        datasets from expired peer catalogs are not considered.
        """
        cluster, name, version = parse_ref(ref)
        sql = "SELECT cluster, version, manifest FROM catalog_datasets WHERE name = ?"
        args: list[Any] = [name]
        if cluster is not None:
            sql += " AND cluster = ?"
            args.append(cluster)
        if version is not None:
            sql += " AND version = ?"
            args.append(version)
        if now is not None:
            sql += " AND (expires IS NULL OR expires > ?)"
            args.append(now)
        newest: dict[str, sqlite3.Row] = {}
        for row in self.conn.execute(sql, args):
            current = newest.get(row["cluster"])
            if current is None or version_key(row["version"]) > version_key(current["version"]):
                newest[row["cluster"]] = row
        if not newest:
            raise NotFound(f"no dataset {ref} in any held catalog")
        if len(newest) > 1:
            choices = ", ".join(
                f"{row['cluster']}/{name}@{row['version']}" for _, row in sorted(newest.items())
            )
            raise Ambiguous(f"{ref} is published by {len(newest)} clusters; choose one of {choices}")
        return load_manifest(next(iter(newest.values()))["manifest"])

    # -- search -------------------------------------------------------------------------

    def search(
        self,
        query: str = "",
        *,
        format: str | None = None,
        publisher: str | None = None,
        tags: Sequence[str] = (),
        min_size: int | None = None,
        max_size: int | None = None,
        limit: int = 20,
        now: int | None = None,
    ) -> list[SearchResult]:
        """Ranked matches of every query word (prefixes match: `image` finds imagenet).

        Filters combine with AND; every tag given must be present. With `now`,
        datasets from expired peer catalogs are left out. Without query text,
        results are sorted by name.
        """
        where: list[str] = []
        args: list[Any] = []
        # Unary + keeps SQLite off the format, size and tag indexes: walking the name
        # index (the result order) and stopping at `limit` beats sorting half the table.
        for clause, value in (
            ("+d.format = ?", format),
            ("d.cluster = ?", publisher),
            ("+d.total_size >= ?", min_size),
            ("+d.total_size <= ?", max_size),
            ("(d.expires IS NULL OR d.expires > ?)", now),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        for tag in tags:
            where.append("+d.id IN (SELECT dataset FROM catalog_tags WHERE tag = ?)")
            args.append(tag)
        condition = " AND ".join(where) or "1"
        words = re.findall(r"[^\W_]+", query.lower())
        # Rank ids first and read the manifests of the few winners only: carrying every
        # match's manifest through the sort is what makes common words slow.
        if words:
            hits = (
                f"SELECT rowid AS id, -bm25(catalog_search, {_WEIGHTS}) AS score"
                " FROM catalog_search WHERE catalog_search MATCH ?"
            )
            if where:
                # The filters become one set of ids, probed per match: cheaper than a join
                # per match. The unary + keeps SQLite from driving FTS5 by this set,
                # one full-text lookup per id, which is far slower.
                # Here the filters are best served by their indexes: drop the + again.
                indexed = condition.replace("+d.", "d.")
                hits += f" AND +rowid IN (SELECT d.id FROM catalog_datasets d WHERE {indexed})"
            hits += " ORDER BY 2 DESC LIMIT ?"
            args.insert(0, " ".join(f'"{word}"*' for word in words))
        else:
            hits = (
                "SELECT d.id, 0.0 AS score FROM catalog_datasets d"
                f" WHERE {condition} ORDER BY d.name, d.cluster, d.version LIMIT ?"
            )
        args.append(limit)
        ranked = self.conn.execute(hits, args).fetchall()
        rows = {
            row["id"]: row
            for row in self.conn.execute(
                "SELECT id, cluster, manifest FROM catalog_datasets WHERE id IN"
                f" ({','.join('?' * len(ranked))})",
                [hit["id"] for hit in ranked],
            )
        }
        return [
            SearchResult(load_manifest(rows[id]["manifest"]), rows[id]["cluster"], score)
            for id, score in ranked
        ]


def load_manifest(blob: bytes) -> Manifest:
    """A manifest from its stored canonical bytes."""
    return Manifest.from_dict(decode(blob, max_size=_MAX_MANIFEST, what="stored manifest"))
