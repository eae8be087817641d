"""Held catalogs and the search index: every verified catalog we hold, ours included.

Each publisher's datasets are replaced as a whole when a newer verified
catalog arrives. Beside its public catalog a publisher may show us datasets
privately (restricted datasets granted to us); those are indexed with it.
Search is SQLite FTS5 (bm25, the name weighted up) over name, description,
tags, schema column names and publisher; filters are facet tokens in the same
index, and ranking work is bounded (RANKED_AT_MOST) however common the words.
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
from p2pdata.errors import Ambiguous, MalformedData, NotHeld, Rollback

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
"""
# The full-text index. `facets` holds one token per filter value (format, publisher,
# each tag; see _facets), so filters join the full-text match as doclist
# intersections instead of row lookups. catalog_names indexes names alone: finding
# the datasets whose name matches a common word then reads a short doclist. Derived
# data: rebuilt from catalog_datasets when a definition changes (_ensure_search_index).
_SEARCH_TABLES = {
    "catalog_search": """CREATE VIRTUAL TABLE catalog_search USING fts5 (
    name, description, tags, columns, publisher, facets,
    prefix = '1 2 3', tokenize = 'unicode61 remove_diacritics 2'
)""",
    "catalog_names": """CREATE VIRTUAL TABLE catalog_names USING fts5 (
    name, facets, prefix = '1 2 3', tokenize = 'unicode61 remove_diacritics 2'
)""",
}
_TEXT_COLUMNS = "{name description tags columns publisher}"
_FACET_LIKE = re.compile(r"[fpt][0-9a-f]*")

# bm25 column weights, in the order of catalog_search's columns (facets never score).
_WEIGHTS = "10.0, 1.0, 3.0, 2.0, 1.0, 0.0"
# A query matching more datasets than this ranks the most recently indexed this many
# (plus the datasets whose name matches, first): bm25 costs about 1 us a row, so
# ranking every match of a common word among a million datasets would take 250 ms.
RANKED_AT_MOST = 2000
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
        self._ensure_search_index()

    def _ensure_search_index(self) -> None:
        """Create the full-text indexes, or rebuild them if older definitions are on disk."""
        found = {row["name"]: row["sql"] for row in self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE name IN (?, ?)", tuple(_SEARCH_TABLES))}
        if found == _SEARCH_TABLES:
            return
        with transaction(self.conn):
            for table, sql in _SEARCH_TABLES.items():
                self.conn.execute(f"DROP TABLE IF EXISTS {table}")
                self.conn.execute(sql)
            for dataset in self.conn.execute("SELECT id, cluster, manifest FROM catalog_datasets"):
                self._index_text(dataset["id"], dataset["cluster"], load_manifest(dataset["manifest"]))

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
        for table in _SEARCH_TABLES:
            self.conn.execute(f"DELETE FROM {table} WHERE rowid IN ({ids})", (cluster,))
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
            self._index_text(dataset, cluster, manifest)

    def _index_text(self, dataset: int | None, cluster: str, manifest: Manifest) -> None:
        facets = " ".join(_facets(manifest.format, cluster, manifest.tags))
        self.conn.execute(
            "INSERT INTO catalog_search"
            " (rowid, name, description, tags, columns, publisher, facets)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                dataset,
                manifest.name,
                manifest.description,
                " ".join(manifest.tags),
                " ".join(column.name for column in manifest.schema),
                cluster,
                facets,
            ),
        )
        self.conn.execute("INSERT INTO catalog_names (rowid, name, facets) VALUES (?, ?, ?)",
                          (dataset, manifest.name, facets))

    # -- lookups ------------------------------------------------------------------------

    def get(self, cluster: str, name: str, version: str) -> Manifest:
        row = self.conn.execute(
            "SELECT manifest FROM catalog_datasets WHERE cluster = ? AND name = ? AND version = ?",
            (cluster, name, version),
        ).fetchone()
        if row is None:
            raise NotHeld(f"no dataset {cluster}/{name}@{version} in any held catalog")
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
            raise NotHeld(f"no dataset {ref} in any held catalog")
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
        words = re.findall(r"[^\W_]+", query.lower())
        if words:
            ranked = self._ranked(words, format=format, publisher=publisher, tags=tags,
                                  min_size=min_size, max_size=max_size, limit=limit, now=now)
        else:
            ranked = self._listed(format=format, publisher=publisher, tags=tags,
                                  min_size=min_size, max_size=max_size, limit=limit, now=now)
        rows = {
            row["id"]: row
            for row in self.conn.execute(
                "SELECT id, cluster, manifest FROM catalog_datasets WHERE id IN"
                f" ({','.join('?' * len(ranked))})",
                [id for id, _ in ranked],
            )
        }
        return [
            SearchResult(load_manifest(rows[id]["manifest"]), rows[id]["cluster"], score)
            for id, score in ranked
        ]

    def _ranked(self, words: list[str], *, format: str | None, publisher: str | None,
                tags: Sequence[str], min_size: int | None, max_size: int | None, limit: int,
                now: int | None) -> list[tuple[int, float]]:
        """(id, score) of the best matches of every word, filters applied, best first.

        Format, publisher and tags are facet tokens ANDed into the match, so FTS5
        intersects doclists; size and expiry are checked on the few rows ranked.
        Past RANKED_AT_MOST matches only a recent window is ranked by bm25, after
        the matches whose name holds every word: the cost stays bounded however
        common the words are.
        """
        text = " ".join(f'"{word}"*' for word in words)
        facets = "".join(f' AND {{facets}} : "{token}"' for token in _facets(format, publisher, tags))
        # Naming the text columns costs a little; only a word that could begin a facet
        # token (a letter, then hex digits) needs it to stay out of the facets.
        columns = _TEXT_COLUMNS + " : " if any(_FACET_LIKE.fullmatch(w) for w in words) else ""
        match = f"{columns}({text}){facets}"
        join, checks, args = "", "", []
        for clause, value in (
            ("d.total_size >= ?", min_size),
            ("d.total_size <= ?", max_size),
            ("(d.expires IS NULL OR d.expires > ?)", now),
        ):
            if value is not None:
                checks += f" AND {clause}"
                args.append(value)
        if checks:
            join = " JOIN catalog_datasets d ON d.id = s.rowid"
        matches = f"FROM catalog_search s{join} WHERE catalog_search MATCH ?{checks}"

        def nth_newest(query: str) -> int | None:
            row = self.conn.execute(
                f"SELECT s.rowid {matches} ORDER BY s.rowid DESC LIMIT 1 OFFSET ?",
                [query, *args, RANKED_AT_MOST - 1],
            ).fetchone()
            return None if row is None else row[0]

        # The rowid of the RANKED_AT_MOST-th newest match bounds the window (none: rank
        # all). Whole words first: a prefix makes FTS5 merge the doclists of every term
        # it covers up front (twice with bm25), which for a common word costs more than
        # all the rest. When the whole words alone match that many, the window ranks
        # them; words they only begin are then found through names only.
        whole = " ".join(f'"{word}"' for word in words)
        exact = f"{columns}({whole}){facets}"
        bound = nth_newest(exact)
        if bound is None:
            bound = nth_newest(match)
        else:
            match = exact
        score = f"-bm25(catalog_search, {_WEIGHTS})"
        window = self.conn.execute(
            f"SELECT s.rowid AS id, {score} AS score {matches} AND s.rowid >= ?"
            " ORDER BY 2 DESC LIMIT ?",
            [match, *args, bound or 0, limit],
        ).fetchall()
        if bound is None:
            return [(row["id"], row["score"]) for row in window]
        # Too many matches to rank them all: name matches first, ranked among themselves.
        names = f"FROM catalog_names s{join} WHERE catalog_names MATCH ?{checks}"
        named = self.conn.execute(
            f"SELECT id, score FROM (SELECT s.rowid AS id, -bm25(catalog_names, 1.0, 0.0) AS score"
            f" {names} ORDER BY s.rowid DESC LIMIT ?) ORDER BY 2 DESC LIMIT ?",
            [f"{{name}} : ({text}){facets}", *args, RANKED_AT_MOST, limit],
        ).fetchall()
        best = [(row["id"], row["score"]) for row in named]
        seen = {id for id, _ in best}
        best += [(row["id"], row["score"]) for row in window if row["id"] not in seen]
        return best[:limit]

    def _listed(self, *, format: str | None, publisher: str | None, tags: Sequence[str],
                min_size: int | None, max_size: int | None, limit: int,
                now: int | None) -> list[tuple[int, float]]:
        """(id, 0.0) of the datasets passing the filters, by name: no query text."""
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
            # A probe per row walked: `IN (SELECT ...)` would first collect every tagged id.
            where.append("EXISTS (SELECT 1 FROM catalog_tags t WHERE t.tag = ? AND t.dataset = d.id)")
            args.append(tag)
        rows = self.conn.execute(
            "SELECT d.id, 0.0 AS score FROM catalog_datasets d"
            f" WHERE {' AND '.join(where) or '1'} ORDER BY d.name, d.cluster, d.version LIMIT ?",
            [*args, limit],
        ).fetchall()
        return [(row["id"], row["score"]) for row in rows]


def _facets(format: str | None, publisher: str | None, tags: Iterable[str]) -> list[str]:
    """One token per filter value, hex so that any value is a single exact token."""
    found = [] if format is None else [f"f{format.encode().hex()}"]
    found += [] if publisher is None else [f"p{publisher.encode().hex()}"]
    return found + [f"t{tag.encode().hex()}" for tag in tags]


def load_manifest(blob: bytes) -> Manifest:
    """A manifest from its stored canonical bytes."""
    return Manifest.from_dict(decode(blob, max_size=_MAX_MANIFEST, what="stored manifest"))
