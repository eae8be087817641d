"""The BitTorrent DHT as a source of peers: a private DHT of real daemons on loopback.

No public router is ever contacted: every node joins through the test's own first node only,
and each daemon reports the bootstrap list libtorrent really uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import libtorrent as lt
import pytest

from p2pdata.catalog import Identity
from p2pdata.catalog.identity import bep44_message
from p2pdata.devcluster import wait_for
from p2pdata.discovering import DhtSeeds
from p2pdata.errors import TransferError
from p2pdata.peers.dht import SALT, DhtRecord, check_item
from p2pdata.transfer import JobState, PutResult, SwarmJob
from p2pdata.transfer.bep44 import bdecode, bencode, target_id
from p2pdata.transfer.dht import DhtNode, DhtSettings, MutableItem
from tests.daemon.test_daemon import landed_files, make_dataset


def dht(bootstrap: list[str] | None = None, **more: Any) -> dict[str, Any]:
    # zeroconf stays off and no static peers: the DHT is the only way to find anyone.
    return {"zeroconf": False, "static_peers": [], "dht": True, "dht_listen": "127.0.0.1:0",
            "dht_bootstrap": bootstrap or [], "dht_interval": 1, **more}


def peer_rows(daemon: Any) -> dict[str, dict[str, Any]]:
    return {row["url"]: row for row in daemon.cli_json("peers")}


def dht_status(daemon: Any) -> dict[str, Any]:
    return daemon.cli_json("status")["dht"]


def public_key(daemon: Any) -> str:
    return daemon.cli_json("id")["public_key"]


class HostileNode:
    """A DHT node of the test's own that answers every `get` for `public_key` with `item`
    (a captured old one, or a forgery): what a malicious node can do. It knows no other node."""

    def __init__(self, public_key: bytes, item: MutableItem) -> None:
        self.item = item
        self.target = hashlib.sha1(public_key + SALT).digest()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.endpoint = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.served = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(4096)
                query = lt.bdecode(data)
            except (TimeoutError, RuntimeError):
                continue
            if not isinstance(query, dict) or query.get(b"y") != b"q":
                continue
            answer: dict[bytes, Any] = {b"id": b"\x42" * 20, b"nodes": b"", b"token": b"token"}
            if query.get(b"q") == b"get" and query.get(b"a", {}).get(b"target") == self.target:
                answer.update({b"k": self.item.public_key, b"seq": self.item.seq,
                               b"sig": self.item.signature, b"v": self.item.value})
                self.served += 1
            reply = {b"t": query.get(b"t", b""), b"y": b"r", b"r": answer}
            self.sock.sendto(lt.bencode(reply), sender)


async def newest_item(bootstrap: str, public_key: bytes, version: int) -> MutableItem:
    """The item under `public_key` once it names catalog `version`, as any node would see it."""
    node = DhtNode(DhtSettings(listen="127.0.0.1:0", bootstrap=(bootstrap,)))
    await node.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            items = await node.get(public_key, SALT, timeout=5)
            if items and items[0].value is not None \
                    and DhtRecord.decode(items[0].value).catalog_version >= version:
                return items[0]
            assert time.monotonic() < deadline, f"no item of catalog version {version}"
    finally:
        await node.close()


def reconfigure(daemon: Any, **discovery: Any) -> None:
    """Stop a daemon, change its [discovery] settings, start it again (same home and state)."""
    daemon.stop()
    daemon.config["discovery"].update(discovery)
    lines = []
    for section, values in daemon.config.items():
        lines += [f"[{section}]", *(f"{key} = {json.dumps(value)}" for key, value in values.items())]
    (daemon.home / "config.toml").write_text("\n".join(lines) + "\n")
    daemon.start()


async def put_until(node: DhtNode, identity: Identity, record: DhtRecord, seq: int | None = None,
                    nodes: int = 3) -> PutResult:
    """Put until `nodes` nodes stored it (a new node needs a few neighbours first), or the
    DHT gives another answer than "not reached"."""
    deadline = time.monotonic() + 30
    while True:
        result = await node.put(identity.private_key, record.encode(), SALT,
                                record.catalog_version if seq is None else seq, timeout=5)
        if result.outcome not in ("stored", "unreached") or result.stored >= nodes:
            return result
        assert time.monotonic() < deadline, result


async def put_as(identity: Identity, bootstrap: str, record: DhtRecord) -> PutResult:
    """Put a record signed with `identity` from a DHT node of the test's own."""
    node = DhtNode(DhtSettings(listen="127.0.0.1:0", bootstrap=(bootstrap,)))
    await node.start()
    try:
        assert node.session_settings()["dht_bootstrap_nodes"] == bootstrap
        return await put_until(node, identity, record)
    finally:
        await node.close()


def test_a_cluster_found_only_through_the_dht(make_daemon, tmp_path: Path) -> None:
    source = tmp_path / "source"
    expected = make_dataset(source, files=2, rows=2000)
    first = make_daemon("first", discovery=dht())  # the private DHT's entry point
    boot = f"127.0.0.1:{first.runtime['dht_port']}"
    alpha = make_daemon("alpha", discovery=dht([boot]))
    relay = make_daemon("relay", discovery=dht([boot]))
    alpha.cli_json("publish", str(source), "--name", "clicks", "--version", "1")

    def republished() -> dict[str, Any] | None:
        record = dht_status(alpha)["published"]
        return record if record and record["catalog_version"] >= 2 else None  # 1: empty catalog

    published = wait_for(republished, what="alpha's record with its new catalog on the DHT")
    assert published["urls"] == [alpha.peer_url]
    identity = Identity.load(alpha.home)
    captured = asyncio.run(newest_item(boot, identity.public_key, published["catalog_version"]))
    assert captured.seq == published["catalog_version"]  # BEP 44 seq = version

    gamma = make_daemon("gamma", discovery=dht([boot]))
    gamma.cli("trust", "add", public_key(alpha))  # by key: the DHT is addressed by it

    def found() -> dict[str, Any] | None:
        row = peer_rows(gamma).get(alpha.peer_url)
        return row if row and row["state"] == "healthy" else None

    row = wait_for(found, timeout=60, what="gamma to find alpha through the DHT")
    assert row["source"] == "dht" and row["cluster_id"] == alpha.cluster_id
    shown = gamma.cli("status")
    assert "DHT: port" in shown and " dht " in shown, shown
    before = wait_for(lambda: dht_status(gamma)["published"], what="gamma's record on the DHT")
    # After a restart the peer waits until the DHT finds it again, which it does.
    gamma.stop()
    gamma.start()
    assert alpha.peer_url in peer_rows(gamma)
    assert wait_for(found, timeout=60, what="gamma to find alpha after a restart")["source"] == "dht"
    # The DHT held gamma's record (issued before the restart) at its catalog version, and
    # nodes keep what they hold at an equal sequence number: gamma signed a new version.
    after = wait_for(lambda: dht_status(gamma)["published"], what="gamma's record after a restart")
    assert after["catalog_version"] > before["catalog_version"], (before, after)
    assert dht_status(gamma)["publish_error"] is None
    job = gamma.cli_json("fetch", "clicks@1", "--timeout", "60")
    assert job["state"] == "landed", job
    assert landed_files(gamma.home / "datasets", "clicks", "1") == expected

    # Nobody was told of any node but the first; libtorrent's default routers are gone.
    for daemon in (first, alpha, relay, gamma):
        status = dht_status(daemon)
        assert status["bootstrap"] in ([], [boot]), status
        assert all(url.startswith("http://127.0.0.1:") for row in daemon.cli_json("peers")
                   for url in [row["url"]])

    # delta finds alpha too and holds its catalog (then alpha goes, below).
    delta = make_daemon("delta", discovery=dht([boot]))
    delta.cli("trust", "add", public_key(alpha))
    wait_for(lambda: delta.cli_json("search", "clicks"), timeout=60, what="delta to hold alpha's catalog")

    # An item signed with alpha's key that points at a cluster which cannot prove that key
    # (mallory answers as itself) is refused: mallory never becomes a peer of epsilon.
    mallory = make_daemon("mallory", discovery=dht([boot]))
    forged = DhtRecord(alpha.cluster_id, (mallory.peer_url,), published["catalog_version"] + 1,
                       hashlib.sha256(b"whatever").digest(), int(time.time()))
    assert asyncio.run(put_as(identity, boot, forged)).outcome == "stored"
    epsilon = make_daemon("epsilon", discovery=dht([boot]))
    epsilon.cli("trust", "add", public_key(alpha))
    refused = wait_for(lambda: dht_status(epsilon)["refused"].get(alpha.cluster_id),
                       timeout=60, what="epsilon to refuse the impostor")
    assert mallory.peer_url in refused and "answers as cluster" in refused, refused
    assert mallory.peer_url not in peer_rows(epsilon)
    assert f"refused for {alpha.cluster_id}: {mallory.peer_url}" in epsilon.cli("status")

    # Public datasets find seeders on the DHT: with alpha gone, delta (which holds alpha's
    # catalog but has no peer that seeds) fetches from gamma, found only by its announce.
    alpha.stop()
    job = delta.cli_json("fetch", "clicks@1", "--timeout", "90")
    assert job["state"] == "landed", job
    assert landed_files(delta.home / "datasets", "clicks", "1") == expected
    assert gamma.peer_url not in peer_rows(delta)  # not a peer: found as a seeder only

    # A malicious node replays alpha's older, genuinely signed item to epsilon, which saw a
    # newer one before its restart: refused (what was seen is kept in state.db).
    hostile = HostileNode(identity.public_key, captured)
    try:
        reconfigure(epsilon, dht_bootstrap=[hostile.endpoint])
        replayed = wait_for(lambda: dht_status(epsilon)["refused"].get(alpha.cluster_id),
                            timeout=60, what="epsilon to refuse the replayed item")
        assert "a replayed item" in replayed and hostile.served, replayed
        assert dht_status(epsilon)["bootstrap"] == [hostile.endpoint]
    finally:
        hostile.close()

    # A forged item (signed by mallory's key, newest by far, pointing at mallory) served for
    # alpha's key is never believed: alpha is not found and mallory is no peer.
    forger = Identity.generate()
    value = replace(forged, issued=int(time.time())).encode()
    fake = MutableItem(forger.public_key, SALT, 99, value, forger.sign(bep44_message(SALT, 99, value)))
    hostile = HostileNode(identity.public_key, fake)
    try:
        reconfigure(epsilon, dht_bootstrap=[hostile.endpoint])
        wait_for(lambda: hostile.served >= 2, timeout=60, what="two lookups of alpha on the forger")
        status = dht_status(epsilon)
        assert alpha.cluster_id in status["not_found"] and not status["found"], status
        assert mallory.peer_url not in peer_rows(epsilon)
    finally:
        hostile.close()


async def test_dht_nodes_sign_with_the_cluster_key_and_keep_restricted_datasets_off() -> None:
    first = DhtNode(DhtSettings(listen="127.0.0.1:0"))
    await first.start()
    boot = f"127.0.0.1:{first.port}"
    nodes = [first]
    try:
        for _ in range(3):
            node = DhtNode(DhtSettings(listen="127.0.0.1:0", bootstrap=(boot,)))
            await node.start()
            nodes.append(node)
        for node in nodes:  # only the test's own node to join through; nothing to broadcast
            told = node.session_settings()
            assert told["dht_bootstrap_nodes"] in ("", boot)
            assert not (told["enable_lsd"] or told["enable_upnp"] or told["enable_natpmp"])
            assert not told["enable_incoming_tcp"] and not told["enable_outgoing_tcp"]
        alpha = Identity.generate()
        rec = DhtRecord(alpha.cluster_id, ("http://127.0.0.1:7420",), 5, b"\1" * 32, int(time.time()))
        assert (await put_until(nodes[1], alpha, rec)).outcome == "stored"
        items = await nodes[3].get(alpha.public_key, SALT, timeout=10)
        assert items and items[0].seq == 5  # the sequence number is the catalog version
        # Signed by us with the cluster key (not libtorrent): libtorrent's nodes checked it, and
        # the reader checks it again.
        got = check_item(items[0], cluster_id=alpha.cluster_id, public_key=alpha.public_key,
                         seen_version=None, now=time.time(), max_age=60)
        assert got.catalog_version == 5
        newer = replace(rec, catalog_version=7)
        assert (await put_until(nodes[2], alpha, newer)).outcome == "stored"
        items = await nodes[0].get(alpha.public_key, SALT, timeout=10)
        assert items[0].seq == 7 and items[0].value == newer.encode()
        # A lower sequence number (a catalog version gone backwards): refused by the nodes and
        # reported; the same version with another value: reported, the nodes keep theirs.
        behind = await nodes[3].put(alpha.private_key, rec.encode(), SALT, 5, timeout=10)
        assert behind.outcome == "behind" and behind.highest == 7, behind
        other = replace(newer, urls=("http://127.0.0.1:7421",))
        assert (await nodes[3].put(alpha.private_key, other.encode(), SALT, 7, timeout=10)).outcome \
            == "conflict"
        # What libtorrent's nodes themselves do (our put stops before, from what its lookup
        # saw): a lower seq is refused with 302; the same seq with another value is answered
        # as stored, yet the node keeps its value (why a new record needs a new version).
        lower = {n.port: await asyncio.to_thread(raw_put, n.port, alpha, rec) for n in nodes}
        held = [port for port, code in lower.items() if code is not None]
        assert len(held) >= 3 and all(lower[port] == 302 for port in held), lower
        assert [await asyncio.to_thread(raw_put, port, alpha, other) for port in held] == [0] * len(held)
        items = await nodes[1].get(alpha.public_key, SALT, timeout=10)
        assert items[0].seq == 7 and items[0].value == newer.encode()
        assert await nodes[3].get(Identity.generate().public_key, SALT, timeout=5) == []

        # Seeds (and finished fetches) of public datasets are announced; restricted never.
        public = dataset("public", b"\2" * 32)
        secret = dataset("restricted", b"\3" * 32)
        seeding = Swarms(4242, [SimpleNamespace(manifest=public), SimpleNamespace(manifest=secret)])
        await DhtSeeds(nodes[2], seeding).step()
        deadline = time.monotonic() + 30
        while ("127.0.0.1", 4242) not in await nodes[0].get_peers(public.torrent.info_hash, timeout=2):
            assert time.monotonic() < deadline, "the announce never reached the DHT"
        assert await nodes[0].get_peers(secret.torrent.info_hash, timeout=3) == []
        # A running fetch is handed the seeders; a restricted one never asks.
        fetches = [Fetching(public), Fetching(secret)]
        seeds = DhtSeeds(nodes[0], Swarms(1, fetches), interval=2)
        while not fetches[0].added:
            assert time.monotonic() < deadline, "no seeders handed to the fetch"
            await seeds.step()
        assert ("127.0.0.1", 4242) in fetches[0].added and fetches[1].added == []
        with pytest.raises(TransferError, match="dht_listen"):  # not an address of this host
            await DhtNode(DhtSettings(listen="192.0.2.1:6882")).start()
    finally:
        for node in nodes:
            await node.close()


def raw_put(port: int, who: Identity, record: DhtRecord, seq: int | None = None) -> int | None:
    """A KRPC get then put to one node on 127.0.0.1: the put's error code (0: stored), or None
    when that node holds no item of `who` (then nothing is put)."""
    seq = record.catalog_version if seq is None else seq
    value = record.encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)

        def ask(query: bytes, args: dict[bytes, Any]) -> dict[bytes, Any]:
            message = {b"t": b"aa", b"y": b"q", b"q": query, b"ro": 1, b"a": {b"id": b"\7" * 20, **args}}
            sock.sendto(bencode(message), ("127.0.0.1", port))
            return bdecode(sock.recvfrom(4096)[0])

        got = ask(b"get", {b"target": target_id(who.public_key, SALT)})[b"r"]
        if b"seq" not in got:
            return None
        # Sent as the node's own id, as our put does: it would add any other id to its table.
        answer = ask(b"put", {b"id": got[b"id"], b"token": got[b"token"], b"k": who.public_key, b"seq": seq,
                              b"salt": SALT, b"v": value,
                              b"sig": who.sign(bep44_message(SALT, seq, value))})
        return answer[b"e"][0] if answer[b"y"] == b"e" else 0


class Swarms:
    """The transfer session's swarms, as DhtSeeds sees them."""

    def __init__(self, port: int, swarms: list[Any]) -> None:
        self.listen_port = port
        self._swarms = swarms

    def swarms(self) -> list[Any]:
        return self._swarms


class Fetching(SwarmJob):
    """A running fetch's swarm without a libtorrent session behind it."""

    def __init__(self, manifest: Any) -> None:  # no session: only what DhtSeeds touches
        self.manifest = manifest
        self.added: list[tuple[str, int]] = []

    @property
    def state(self) -> JobState:
        return JobState.DOWNLOADING

    def add_peers(self, peers: Any) -> None:
        self.added.extend(peers)


def dataset(mode: str, info_hash: bytes) -> Any:
    """The parts of a manifest DhtSeeds reads."""
    return SimpleNamespace(ref="clicks@1", access=SimpleNamespace(mode=mode),
                           torrent=SimpleNamespace(info_hash=info_hash))

