"""Our BEP 44 put (`MutablePut`) against scripted DHT nodes: who is asked, who gets the put,
what is bounded, and how each answer ends it. Pure logic: no socket, a clock of our own."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest

from p2pdata.catalog import Identity
from p2pdata.catalog.identity import bep44_message
from p2pdata.transfer.bep44 import (
    MAX_NODES_PER_REPLY,
    BencodeError,
    MutableItem,
    MutablePut,
    PutResult,
    bdecode,
    bencode,
    target_id,
)

SALT = b"p2pdata/1"
ALPHA = Identity.generate()
Reply = Callable[[dict[bytes, Any]], dict[bytes, Any] | None]


def signed(seq: int, value: bytes = b"record", who: Identity = ALPHA) -> MutableItem:
    return MutableItem(who.public_key, SALT, seq, value, who.sign(bep44_message(SALT, seq, value)))


TARGET = int.from_bytes(target_id(ALPHA.public_key, SALT), "big")


def node_id(distance: int) -> bytes:
    """A node id at this XOR distance from the target."""
    return (TARGET ^ distance).to_bytes(20, "big")


def endpoint(n: int) -> tuple[str, int]:
    return ("10.0.0.1", 1000 + n)


def compact(nodes: list[int]) -> bytes:
    return b"".join(node_id(n) + ipaddress.ip_address(endpoint(n)[0]).packed
                    + endpoint(n)[1].to_bytes(2, "big") for n in nodes)


class Net:
    """Scripted nodes, each at XOR distance n from the target, at endpoint(n)."""

    def __init__(self) -> None:
        self.replies: dict[tuple[str, int], Reply] = {}
        self.asked: list[tuple[tuple[str, int], bytes]] = []  # (endpoint, query kind)
        self.puts: dict[tuple[str, int], dict[bytes, Any]] = {}

    def node(self, n: int, *, knows: list[int] = (), token: bytes | None = b"tk",
             stored: MutableItem | None = None, put_error: tuple[int, bytes] | None = None,
             answers_as: int | None = None) -> None:
        def reply(query: dict[bytes, Any]) -> dict[bytes, Any] | None:
            if query[b"q"] == b"put":
                self.puts[endpoint(n)] = query[b"a"]
                if put_error:
                    return {b"y": b"e", b"e": [put_error[0], put_error[1]]}
                return {b"y": b"r", b"r": {b"id": node_id(n)}}
            answer: dict[bytes, Any] = {b"id": node_id(n if answers_as is None else answers_as),
                                        b"nodes": compact(list(knows))}
            if token:
                answer[b"token"] = token + bytes([n % 256])
            if stored is not None:
                answer.update({b"k": stored.public_key, b"seq": stored.seq, b"sig": stored.signature,
                               b"v": stored.value})
            return {b"y": b"r", b"r": answer}

        self.replies[endpoint(n)] = reply

    def run(self, put: MutablePut, now: float = 0.0) -> PutResult:
        for _ in range(10_000):
            sends = put.poll(now)
            if put.result is not None:
                return put.result
            for to, data in sends:
                query = bdecode(data)
                assert query[b"ro"] == 1
                assert query[b"a"][b"id"] == b"\1" * 20 or query[b"q"] == b"put"
                self.asked.append((to, query[b"q"]))
                reply = self.replies.get(to, lambda q: None)(query)
                if reply is not None:
                    put.on_datagram(to, bencode({**reply, b"t": query[b"t"]}), now)
            now = now + 0.01 if sends else max(put.wake_at(), now + 0.01)
        raise AssertionError("the put never ended")


def start(item: MutableItem, *starts: int, **limits: Any) -> MutablePut:
    return MutablePut(item, [endpoint(n) for n in starts], now=0.0, node_id=b"\1" * 20,
                      timeout=20.0, request_timeout=2.0, **limits)


def test_the_put_goes_to_the_closest_nodes_that_gave_a_token() -> None:
    net = Net()
    far, near = list(range(1000, 1020)), list(range(1, 13))
    net.node(5000, knows=far)  # the bootstrap node only knows far nodes
    for n in far:
        net.node(n, knows=[near[n % 12]])  # each far node knows one near one
    for n in near:  # close nodes know each other (as Kademlia's routing tables make them)
        net.node(n, knows=near, token=None if n == 2 else b"tk")  # 2 gives no write token
    net.node(7, knows=near, stored=signed(3, b"older"))  # an older record of ours: overwritten
    item = signed(4)
    result = net.run(start(item, 5000))
    assert result.outcome == "stored" and result.stored == 8, result
    # The 8 closest that answered with a token: 1 and 3..9 (2 has none), not the far ones.
    assert sorted(net.puts) == [endpoint(n) for n in (1, 3, 4, 5, 6, 7, 8, 9)]
    sent = net.puts[endpoint(4)]
    assert sent[b"token"] == b"tk\x04" and sent[b"seq"] == 4 and sent[b"salt"] == SALT
    assert sent[b"v"] == b"record" and sent[b"k"] == ALPHA.public_key
    assert sent[b"sig"] == item.signature
    assert sent[b"id"] == node_id(4)  # its own id: a node never adds that to its routing table


def test_the_lookup_is_bounded() -> None:
    net = Net()
    net.node(1, knows=list(range(100, 200)))  # more than one reply may bring
    for n in range(100, 200):
        net.node(n, knows=[n + 100])  # ever more nodes, never closer than the first ones
    put = start(signed(1), 1, max_queries=6, parallel=2)
    result = net.run(put)
    gets = [to for to, kind in net.asked if kind == b"get"]
    assert len(gets) == 6 and len({to for to in gets}) == 6
    assert result.outcome == "stored"
    assert not any(to[1] >= 1000 + 100 + MAX_NODES_PER_REPLY for to in gets)  # 16 taken of 100

    # Nobody answers: the lookup gives up by its deadline, with a clear outcome.
    silent = start(signed(1), 1, 2, 3)
    result = Net().run(silent)
    assert result.outcome == "unreached" and "no DHT node answered (3 asked)" in result.detail


def test_strangers_cannot_steer_a_put() -> None:
    net = Net()
    net.node(1, knows=[2, 3])
    net.node(2)
    net.node(3, stored=signed(99, b"forged", who=Identity.generate()))  # another key's item
    net.node(4)
    forged_sig = signed(50)
    # A higher seq under our key whose signature does not hold is no reason to stop.
    net.node(2, stored=MutableItem(ALPHA.public_key, SALT, 50, b"other", forged_sig.signature))
    put = start(signed(7), 1)
    # Answers that are not answers: unknown transaction, wrong sender, junk, too big.
    real = net.replies[endpoint(1)]

    def first(query: dict[bytes, Any]) -> dict[bytes, Any] | None:
        tid = query[b"t"]
        for junk in (bencode({b"t": tid, b"y": b"r", b"r": {b"id": b"short"}}) + b"x",
                     b"d1:t2:" + tid + b"1:y1:r1:rd2:id20:" + b"x" * 5000, b"i1e",
                     bencode({b"t": [tid], b"y": b"r"})):
            put.on_datagram(endpoint(1), junk, 0.0)
        put.on_datagram(endpoint(9), bencode({b"t": tid, b"y": b"r", b"r": {b"id": node_id(9)}}), 0.0)
        return real(query)

    net.replies[endpoint(1)] = first
    result = net.run(put)
    assert result.outcome == "stored", result
    assert endpoint(9) not in net.puts


def test_what_the_dht_already_holds_ends_the_put() -> None:
    # A higher sequence number of ours, signed: our catalog version went backwards. No put.
    net = Net()
    net.node(1, knows=[2], stored=signed(9, b"newer"))
    net.node(2)
    result = net.run(start(signed(4), 1))
    assert result.outcome == "behind" and result.highest == 9 and not net.puts
    assert "sequence number 9, above 4" in result.detail

    # Our own other value at this very sequence number: nodes would keep theirs.
    net = Net()
    net.node(1, knows=[2], stored=signed(4, b"issued earlier"))
    net.node(2)
    assert net.run(start(signed(4), 1)).outcome == "conflict" and not net.puts

    # The same item again (a republish): put, so nodes refresh it.
    net = Net()
    net.node(1, knows=[2], stored=signed(4))
    net.node(2)
    assert net.run(start(signed(4), 1)).outcome == "stored" and len(net.puts) == 2


def test_error_answers_to_the_put() -> None:
    def with_errors(error: tuple[int, bytes], silent: bool = False) -> PutResult:
        net = Net()
        net.node(1, knows=[2, 3], put_error=error)
        net.node(2, put_error=error)
        if not silent:
            net.node(3, put_error=error)
        else:
            net.node(3)
            real = net.replies[endpoint(3)]
            net.replies[endpoint(3)] = lambda q: None if q[b"q"] == b"put" else real(q)
        return net.run(start(signed(4), 1))

    result = with_errors((302, b"old sequence number"))
    assert result.outcome == "behind" and result.stored == 0
    result = with_errors((206, b"invalid signature"), silent=True)
    assert result.outcome == "unreached"
    assert result.detail == "0 of 3 DHT nodes stored it; refused: 206 invalid signature; 1 did not answer"
    assert with_errors((301, b"CAS mismatch")).outcome == "unreached"


def test_bdecode_refuses_what_is_not_one_bounded_value() -> None:
    assert bdecode(bencode({b"a": [1, -2, b"x", {b"b": b""}]})) == {b"a": [1, -2, b"x", {b"b": b""}]}
    for junk in (b"i--5e", b"ie", b"i5", b"i123456789012345678901e", b"5:ab", b"d1:ai1ee1",
                 b"l" * 10 + b"e" * 10, b"di1ei2ee", b"x", b"", b"99999999:a", b"0:" + b"x" * 5000):
        with pytest.raises(BencodeError):
            bdecode(junk)


def test_what_strangers_say_cannot_aim_datagrams_or_reach_a_terminal() -> None:
    from p2pdata.transfer.bep44 import compact_nodes

    def entry(ip: str, port: int) -> bytes:
        return node_id(1) + ipaddress.ip_address(ip).packed + port.to_bytes(2, "big")

    data = b"".join(entry(ip, 6881) for ip in ("0.0.0.0", "224.0.0.1", "255.255.255.255", "10.0.0.9"))
    assert [e for _, e in compact_nodes(data + entry("10.0.0.8", 0), ipv6=False)] == [("10.0.0.9", 6881)]

    net = Net()
    net.node(1, put_error=(206, b"bad\x1b[2J\nsignature\xc2\x9b"))
    result = net.run(start(signed(4), 1))
    assert result.outcome == "unreached" and "206 bad?[2J?signature?" in result.detail
    # Transaction ids do not start where a forger would guess.
    assert len({bdecode(start(signed(4), 1).poll(0.0)[0][1])[b"t"] for _ in range(8)}) > 1


async def test_a_resolver_that_never_answers_does_not_hold_a_put() -> None:
    import asyncio
    import socket

    from p2pdata.transfer.dht import _resolve

    class Hung:
        async def getaddrinfo(self, *args: Any, **kwargs: Any) -> list[Any]:
            await asyncio.Event().wait()
            return []

    assert await asyncio.wait_for(_resolve(Hung(), "dht.example:6881", socket.AF_INET, 0.05),  # type: ignore[arg-type]
                                  timeout=10) is None
