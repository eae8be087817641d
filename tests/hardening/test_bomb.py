"""A msgpack bomb as a catalog: refused before it is decoded, or bounded while it is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from p2pdata.catalog import encode_public_key
from p2pdata.catalog.encoding import count_objects
from p2pdata.devcluster import wait_for
from p2pdata.errors import TooLarge
from tests.hardening.attacker import FakePeer

MIB = 1024 * 1024


def _bomb() -> bytes:
    """4 MB that decode into 4 million empty maps: about 300 MiB of Python objects."""
    count = 1_000_000  # within msgpack's per-array bound
    inner = b"\xdd" + count.to_bytes(4, "big") + b"\x80" * count
    return b"\x94" + inner * 4


def _peak_rss(daemon: Any) -> int:
    """The daemon's high-water mark of resident memory, in bytes."""
    for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.fixture
def bomber() -> Iterator[FakePeer]:
    peer = FakePeer()
    body = _bomb()
    peer.catalog = msgpack.packb({"catalog": body, "key": peer.identity.public_key,
                                  "signature": peer.identity.sign(body)}, use_bin_type=True)
    yield peer
    peer.close()


def _error(daemon: Any, url: str, unless: str = "\0") -> str | None:
    row = next((p for p in daemon.cli_json("peers") if p["url"] == url), None)
    return row["error"] if row and row["error"] and unless not in row["error"] else None


def test_a_catalog_bomb_is_refused_before_decoding_and_bounded_after(make_daemon: Any, bomber: FakePeer) -> None:
    gamma = make_daemon("gamma", discovery={"static_peers": [bomber.url], "sync_interval": 1})
    before = _peak_rss(gamma)
    # Untrusted signer: refused on the signature and the trust store alone.
    error = wait_for(lambda: _error(gamma, bomber.url), timeout=60, what="the bomb to be judged")
    assert "UntrustedKey" in error
    # Trusted signer: decoded only within the object bound.
    gamma.cli("trust", "add", encode_public_key(bomber.identity.public_key))
    error = wait_for(lambda: _error(gamma, bomber.url, unless="UntrustedKey"), timeout=60,
                     what="the trusted bomb to be judged")
    assert "TooLarge" in error and "objects" in error, error
    assert _peak_rss(gamma) - before < 64 * MIB


def _objects(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_objects(k) + _objects(v) for k, v in value.items())
    if isinstance(value, list):
        return 1 + sum(_objects(item) for item in value)
    return 1


@pytest.mark.parametrize("value", [
    0, -1, 2**63 - 1, -(2**63), None, True, "", "x" * 31, "y" * 300, "z" * 70_000, b"", b"b" * 300,
    b"c" * 70_000, [], [[]] * 20, list(range(70_000)), {"k": {"n": [1, "two", b"3", None]}},
    {str(i): i for i in range(20)}, {str(i): [i] for i in range(70_000)},
])
def test_count_objects_counts_what_msgpack_builds(value: Any) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    assert count_objects(data, 10**9) == _objects(value)
    with pytest.raises(TooLarge):
        count_objects(data, _objects(value) - 1) if _objects(value) > 1 else count_objects(data, 0)
