"""Manifests that would corrupt the store, crash catalog storage, or show one name as another."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pdata.catalog import encode_public_key
from p2pdata.devcluster import wait_for
from tests.hardening.attacker import FakePeer, catalog_body, dataset, raw_signed

CAFE = unicodedata.normalize("NFC", "café.csv")
CAFE_DECOMPOSED = unicodedata.normalize("NFD", "café.csv")

HOSTILE_FILES = {
    "reserved": ([(".p2pdata-manifest", 64), ("a.bin", 1)], "reserved"),
    "huge": ([("a.bin", 2**64 - 1)], "outside the signed 64-bit range"),
    "exabyte": ([("a.bin", 2**62)], "not a file size"),
    "bidi": ([("invoice\u202egnp.exe", 1)], "U+202E"),
    "escape": ([("a\x1b[31m.bin", 1)], "U+001B"),
    "normalised": ([(CAFE, 1), (CAFE_DECOMPOSED, 1)], "same name after Unicode normalisation"),
}


@pytest.fixture
def hostile_peers() -> Iterator[dict[str, FakePeer]]:
    peers = {}
    for label, (files, _) in HOSTILE_FILES.items():
        peer = peers[label] = FakePeer()
        peer.catalog = raw_signed(peer.identity, catalog_body(peer.identity, [dataset(peer.identity, label, files)]))
    yield peers
    for peer in peers.values():
        peer.close()


def test_hostile_file_names_and_sizes_are_refused_at_verify(make_daemon: Any, hostile_peers: dict[str, FakePeer]) -> None:
    urls = {label: peer.url for label, peer in hostile_peers.items()}
    gamma = make_daemon("gamma", discovery={"static_peers": list(urls.values()), "sync_interval": 1})
    for peer in hostile_peers.values():  # trusted publishers: only the names are wrong
        gamma.cli("trust", "add", encode_public_key(peer.identity.public_key))

    def rows() -> dict[str, dict[str, Any]] | None:
        by_url = {row["url"]: row for row in gamma.cli_json("peers")}
        found = {label: by_url.get(url) for label, url in urls.items()}
        judged = all(row and row["error"] and "UntrustedKey" not in row["error"] for row in found.values())
        return found if judged else None

    found = wait_for(rows, timeout=60, what="every hostile catalog to be judged")
    for label, (_, reason) in HOSTILE_FILES.items():
        assert found[label]["state"] == "rejected", found[label]
        assert reason in found[label]["error"], found[label]["error"]
    assert gamma.cli_json("search", "") == []
    assert "OverflowError" not in gamma.log.read_text()


@pytest.mark.parametrize(("label", "names"), [
    ("reserved", [".p2pdata-tier"]),
    ("bidi", ["report\u202excod.exe"]),
    ("normalised", [CAFE, CAFE_DECOMPOSED]),
])
def test_hostile_file_names_are_refused_at_publish(make_daemon: Any, tmp_path: Path, label: str,
                                                   names: list[str]) -> None:
    alpha = make_daemon("alpha")
    source = tmp_path / label
    source.mkdir()
    for name in [*names, "ok.bin"]:
        (source / name).write_bytes(b"x")
    output = alpha.cli("publish", str(source), "--name", "data", "--version", "1", ok=False)
    assert HOSTILE_FILES[label][1] in output, output
    assert alpha.cli_json("search", "") == []
