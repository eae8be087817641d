"""Search latency over an index of many manifests from many publishers.

Usage: python bench/bench_search.py [--manifests 100000] [--publishers 50] [--queries 500]
Builds the index in a temporary SQLite database through CatalogStore's own
indexing (one call per publisher), then times a mix of queries: one or two
words, prefixes, very common words, and queries with filters. Prints the p95
of wall time (the RESULT: `search_p95` at 100k manifests, target 20 ms,
`search_p95_1m` at 1M, target 50 ms) and of CPU time (what a loaded machine
cannot inflate), per kind of query too, and the time to index a catalog of
2,000 datasets (target: under 1 s).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from p2pdata.catalog import CatalogStore, Column, FileEntry, Identity, Manifest
from p2pdata.db import open_db

TARGETS_MS = {"search_p95": 20.0, "search_p95_1m": 50.0}
BUILD_TARGET_S = 1.0
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

        def query() -> tuple[str, str, dict[str, Any]]:
            kind = rng.random()
            if kind < 0.4:
                return "word", rng.choice(vocab), {}
            if kind < 0.55:
                return "two words", f"{rng.choice(vocab)} {rng.choice(vocab[:200])}", {}
            if kind < 0.7:
                return "prefix", rng.choice(vocab)[:3], {}
            if kind < 0.8:
                return "common word", rng.choice(common), {}  # matches ~1/4 of everything
            filters = rng.choice([
                {"format": rng.choice(FORMATS)},
                {"publisher": rng.choice(publishers)["cluster"]},
                {"tags": [rng.choice(common)]},
                {"min_size": 10**9, "max_size": 2 * 10**9},
            ])
            return "filtered", rng.choice([rng.choice(vocab), rng.choice(common), ""]), filters

        wall: list[float] = []
        cpu: list[float] = []
        by_kind: dict[str, list[float]] = defaultdict(list)
        hits = 0
        for _ in range(args.queries):
            kind, text, filters = query()
            start, start_cpu = time.perf_counter(), time.process_time()
            hits += len(store.search(text, **filters))
            cpu.append((time.process_time() - start_cpu) * 1000)
            wall.append((time.perf_counter() - start) * 1000)
            by_kind[kind].append(cpu[-1])
        build_s = index_catalog(store, rng, vocab, common)
        conn.close()

    print(f"{args.queries} queries, {hits / args.queries:.1f} results each on average")
    print(f"wall: p50 {statistics.median(wall):.2f} ms, p95 {p95(wall):.2f} ms, max {max(wall):.2f} ms")
    print(f"CPU:  p50 {statistics.median(cpu):.2f} ms, p95 {p95(cpu):.2f} ms, max {max(cpu):.2f} ms")
    for kind, times in sorted(by_kind.items()):
        print(f"  {kind:12} {len(times):4} queries, CPU p50 {statistics.median(times):6.2f} ms,"
              f" p95 {p95(times):6.2f} ms")
    print(f"indexing a catalog of 2000 datasets: {build_s:.2f} s (target < {BUILD_TARGET_S:g} s)")
    name = "search_p95_1m" if args.manifests >= 1_000_000 else "search_p95"
    value = p95(wall)
    print(f"RESULT {name} value={value:.2f} target={TARGETS_MS[name]:g} "
          f"ok={'yes' if value < TARGETS_MS[name] else 'no'}")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(int(len(ordered) * 0.95) - 1, 0)]


def index_catalog(store: CatalogStore, rng: random.Random, vocab: list[str],
                  common: list[str]) -> float:
    """Seconds to index one publisher's catalog of 2,000 datasets (as a sync does)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = CatalogStore(open_db(Path(tmp) / "state.db"))
        start = time.perf_counter()
        build(fresh, rng, 2000, 1, vocab, common)
        elapsed = time.perf_counter() - start
        fresh.conn.close()
    return elapsed


if __name__ == "__main__":
    main()
