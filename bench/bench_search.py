"""Search latency over an index of many manifests from many publishers.

Usage: python bench/bench_search.py [--manifests 100000] [--publishers 50] [--queries 500]
Builds the index in a temporary SQLite database through CatalogStore's own
indexing (one call per publisher), then times a mix of queries: one or two
words, prefixes, very common words, and queries with filters.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from p2pdata.catalog import CatalogStore, Column, FileEntry, Identity, Manifest
from p2pdata.db import open_db

TARGET_MS = 50.0
FORMATS = ("parquet", "csv", "tfrecord", "files")


def words(rng: random.Random, count: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    found: set[str] = set()
    while len(found) < count:
        found.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 9))))
    return sorted(found)


def build(store: CatalogStore, rng: random.Random, manifests: int, publishers: int,
          vocab: list[str], common: list[str]) -> None:
    per = manifests // publishers
    for p in range(publishers):
        owner = Identity.generate().cluster_id
        batch = []
        for i in range(per):
            # Zipf-like: a few words are everywhere, most are rare.
            text = [vocab[min(int(rng.paretovariate(1.0)) - 1, len(vocab) - 1)]
                    for _ in range(12)] + rng.sample(common, 2)
            batch.append(Manifest(
                name=f"{rng.choice(vocab)}-{rng.choice(vocab)}-{p}-{i}",
                version=f"{rng.randint(0, 3)}.{rng.randint(0, 20)}",
                owner=owner,
                created=1_700_000_000,
                format=rng.choice(FORMATS),
                files=tuple(FileEntry(f"part-{k}.bin", rng.randint(1, 10**9), bytes(32))
                            for k in range(3)),
                description=" ".join(text),
                tags=tuple(rng.sample(common, 2)),
                schema=tuple(Column(rng.choice(vocab), "int64") for _ in range(5)),
            ))
        store.index_own(owner, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifests", type=int, default=100_000)
    parser.add_argument("--publishers", type=int, default=50)
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    rng = random.Random(7)
    vocab = words(rng, 5000)
    common = ["images", "vision", "text", "audio", "tabular", "dataset", "train", "eval"]

    with tempfile.TemporaryDirectory() as tmp:
        conn = open_db(Path(tmp) / "state.db")
        store = CatalogStore(conn)
        start = time.perf_counter()
        build(store, rng, args.manifests, args.publishers, vocab, common)
        print(f"indexed {args.manifests} manifests from {args.publishers} publishers "
              f"in {time.perf_counter() - start:.1f} s")
        publishers = conn.execute("SELECT DISTINCT cluster FROM catalog_datasets").fetchall()

        def query() -> tuple[str, dict[str, Any]]:
            kind = rng.random()
            if kind < 0.4:
                return rng.choice(vocab), {}
            if kind < 0.55:
                return f"{rng.choice(vocab)} {rng.choice(vocab[:200])}", {}
            if kind < 0.7:
                return rng.choice(vocab)[:3], {}  # prefix
            if kind < 0.8:
                return rng.choice(common), {}  # matches ~1/4 of everything
            filters = rng.choice([
                {"format": rng.choice(FORMATS)},
                {"publisher": rng.choice(publishers)["cluster"]},
                {"tags": [rng.choice(common)]},
                {"min_size": 10**9, "max_size": 2 * 10**9},
            ])
            return rng.choice([rng.choice(vocab), rng.choice(common), ""]), filters

        latencies = []
        hits = 0
        for _ in range(args.queries):
            text, filters = query()
            start = time.perf_counter()
            hits += len(store.search(text, **filters))
            latencies.append((time.perf_counter() - start) * 1000)
        conn.close()

    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(f"{args.queries} queries, {hits / args.queries:.1f} results each on average")
    print(f"p50 {p50:.2f} ms, p95 {p95:.2f} ms, max {latencies[-1]:.2f} ms")
    print(f"RESULT search_p95 value={p95:.2f} target={TARGET_MS:g} "
          f"ok={'yes' if p95 < TARGET_MS else 'no'}")


if __name__ == "__main__":
    main()
