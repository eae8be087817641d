"""Our own BEP 44 put, so that a mutable item's sequence number is the one we choose.

libtorrent 2.1's Python binding numbers mutable items itself (the highest found, plus one) and
binds no `dht_direct_request`, so the put is ours: KRPC `get` queries walk towards the target
(SHA-1 of public key and salt) to collect write tokens, then `put` goes to the closest nodes
that gave one. `MutablePut` decides all of it and does no I/O: it is fed datagrams and the
time and says what to send (`DhtNode.put` is the socket around it). Everything decoded here
comes from strangers: datagrams, lists and strings are bounded, and a sequence number another
node claims counts only with our signature over it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import libtorrent as lt

from p2pdata.catalog.identity import bep44_message, verify_signature

Endpoint = tuple[str, int]
Outcome = Literal["stored", "behind", "conflict", "unreached"]

K = 8  # Kademlia's k: the put goes to the k closest nodes that gave a token
MAX_DATAGRAM = 4096  # a get reply is at most ~1.8 kB: value 1000, 8 + 8 compact nodes, key, sig
MAX_KNOWN = 256  # nodes one put remembers
MAX_NODES_PER_REPLY = 16
MAX_TOKEN = 64
MAX_DEPTH = 4  # {"r": {"nodes": ...}} is depth 2; a value of ours is a string

OLD_SEQ = 302  # the BEP 44 error a put gets where the node holds a higher sequence number


@dataclass(frozen=True)
class MutableItem:
    """A BEP 44 mutable item: ours to put, or as a DHT node handed it over (check it first)."""

    public_key: bytes
    salt: bytes
    seq: int
    value: bytes | None  # the bencoded string's bytes; None when the value is not a string
    signature: bytes


@dataclass(frozen=True)
class PutResult:
    """How a put ended. `behind`: the DHT holds our item at a higher sequence number (`highest`
    when known) and refused ours; `conflict`: it holds another value of ours at this same
    sequence number, which nodes keep (a put needs a higher one); `unreached`: no node stored
    it. `detail` says what happened in words."""

    outcome: Outcome
    stored: int
    detail: str
    highest: int | None = None


class BencodeError(ValueError):
    pass


def bencode(value: Any) -> bytes:
    """Our own messages, encoded by libtorrent (the decoder below is ours: it reads strangers)."""
    return bytes(lt.bencode(value))


def bdecode(data: bytes) -> Any:
    """Decode one bencoded value that is all of `data`; BencodeError if it is not."""
    if len(data) > MAX_DATAGRAM:
        raise BencodeError(f"{len(data)} bytes, over {MAX_DATAGRAM}")
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError("trailing bytes")
    return value


def _decode(data: bytes, at: int, depth: int) -> tuple[Any, int]:
    if at >= len(data):
        raise BencodeError("truncated")
    lead = data[at:at + 1]
    if lead == b"i":
        end = data.find(b"e", at)
        text = data[at + 1:end] if end > 0 else b""
        if not re.fullmatch(rb"-?[0-9]{1,20}", text):
            raise BencodeError("bad integer")
        return int(text), end + 1
    if lead.isdigit():
        colon = data.find(b":", at, at + 6)
        if colon < 0 or not data[at:colon].isdigit():
            raise BencodeError("bad string length")
        end = colon + 1 + int(data[at:colon])
        if end > len(data):
            raise BencodeError("truncated string")
        return data[colon + 1:end], end
    if lead not in (b"l", b"d") or depth >= MAX_DEPTH:
        raise BencodeError("unexpected byte or too deep")
    items, at = [], at + 1
    while data[at:at + 1] != b"e":
        item, at = _decode(data, at, depth + 1)
        items.append(item)
    if lead == b"l":
        return items, at + 1
    keys = items[::2]
    if len(items) % 2 or not all(isinstance(k, bytes) for k in keys):
        raise BencodeError("bad dictionary")
    return dict(zip(keys, items[1::2], strict=True)), at + 1


def target_id(public_key: bytes, salt: bytes) -> bytes:
    return hashlib.sha1(public_key + salt).digest()


def compact_nodes(data: bytes, ipv6: bool) -> list[tuple[bytes, Endpoint]]:
    """(node id, endpoint) from a reply's compact `nodes` (IPv4) or `nodes6` list."""
    size = 38 if ipv6 else 26
    found = []
    for at in range(0, min(len(data) // size, MAX_NODES_PER_REPLY) * size, size):
        node_id, ip, port = data[at:at + 20], data[at + 20:at + size - 2], data[at + size - 2:at + size]
        address, number = ipaddress.ip_address(ip), int.from_bytes(port, "big")
        # Port 0, 0.0.0.0, a multicast group or broadcast is no node: strangers must not aim
        # our datagrams there. The address is kept as the socket will name its sender.
        if number and not (address.is_unspecified or address.is_multicast or address.is_reserved):
            found.append((node_id, (str(address), number)))
    return found


@dataclass
class _Node:
    endpoint: Endpoint
    node_id: bytes | None = None  # None until it answers (a bootstrap node)
    state: Literal["new", "asked", "answered", "failed"] = "new"
    token: bytes | None = None


@dataclass
class _Pending:
    node: _Node
    kind: Literal["get", "put"]
    sent: float


@dataclass
class _Stored:
    """The newest copy of our item that a node showed us, signature checked."""

    seq: int = -1
    values: set[bytes] = field(default_factory=set)


class MutablePut:
    """One put of `item` (already signed), from `start` nodes, by `timeout` seconds after `now`.

    Call `poll(now)` for the datagrams to send, `on_datagram` with each one that arrives, and
    `poll` again by `wake_at()`; when `done`, `result` says how it went. The lookup asks at most
    `max_queries` nodes, `parallel` at a time, each `request_timeout` seconds, and ends when no
    node left to ask is closer than the k closest that answered (or by 60 % of `timeout`).
    """

    def __init__(self, item: MutableItem, start: Iterable[Endpoint], *, now: float,
                 node_id: bytes, timeout: float = 20.0, request_timeout: float = 3.0,
                 max_queries: int = 48, parallel: int = 4, ipv6: bool = False) -> None:
        if item.value is None or len(item.signature) != 64 or len(item.public_key) != 32:
            raise ValueError("a mutable item to put needs a string value, a key and a signature")
        self.item = item
        self.target = target_id(item.public_key, item.salt)
        self._target = int.from_bytes(self.target, "big")
        self._id = node_id
        self._ipv6 = ipv6
        self._lookup_end = now + 0.6 * timeout
        self._deadline = now + timeout
        self._request_timeout = request_timeout
        self._max_queries = max_queries
        self._parallel = parallel
        self._nodes: dict[Endpoint, _Node] = {}
        for endpoint in start:
            self._nodes.setdefault(endpoint, _Node(endpoint))
        self._pending: dict[bytes, _Pending] = {}
        self._tid = secrets.randbelow(65536)  # not guessable: an off-path forger must also guess it
        self._queries = 0
        self._phase: Literal["lookup", "put", "done"] = "lookup"
        self._stored = _Stored()
        self._put_to = 0
        self._acks = 0
        self._errors: dict[Endpoint, tuple[int, str]] = {}
        self.result: PutResult | None = None

    @property
    def done(self) -> bool:
        return self.result is not None

    def wake_at(self) -> float:
        expiries = [p.sent + self._request_timeout for p in self._pending.values()]
        return min([*expiries, self._lookup_end if self._phase == "lookup" else self._deadline])

    def poll(self, now: float) -> list[tuple[Endpoint, bytes]]:
        """What to send now; moves from lookup to put to done as answers come or time passes."""
        for tid, pending in list(self._pending.items()):
            if now >= pending.sent + self._request_timeout:
                del self._pending[tid]
                if pending.kind == "get":
                    pending.node.state = "failed"
        if self._phase == "lookup":
            return self._lookup(now)
        if self._phase == "put" and (not self._pending or now >= self._deadline):
            self._finish()
        return []

    def on_datagram(self, sender: Endpoint, data: bytes, now: float) -> None:
        try:
            message = bdecode(data)
        except BencodeError:
            return
        if not isinstance(message, dict):
            return
        tid = message.get(b"t")
        pending = self._pending.get(tid) if isinstance(tid, bytes) else None
        if pending is None or pending.node.endpoint != sender:
            return  # not an answer to anything we asked of that node
        del self._pending[tid]
        kind, node = message.get(b"y"), pending.node
        if kind == b"e":
            code, text = _error(message.get(b"e"))
            if pending.kind == "get":
                node.state = "failed"
            else:
                self._errors[node.endpoint] = (code, text)
        elif kind == b"r" and isinstance(reply := message.get(b"r"), dict):
            if pending.kind == "put":
                self._acks += 1
            else:
                self._got(node, reply)
        elif pending.kind == "get":
            node.state = "failed"

    # ---- lookup -------------------------------------------------------------------------------

    def _distance(self, node: _Node) -> int:
        # Nodes not yet heard from (bootstrap) come first: they are where the walk starts.
        return -1 if node.node_id is None else int.from_bytes(node.node_id, "big") ^ self._target

    def _closest(self) -> list[_Node]:
        """The k closest nodes that answered with a write token: where the put will go."""
        ready = [n for n in self._nodes.values() if n.state == "answered" and n.token]
        return sorted(ready, key=self._distance)[:K]

    def _lookup(self, now: float) -> list[tuple[Endpoint, bytes]]:
        closest = self._closest()
        bound = self._distance(closest[-1]) if len(closest) == K else None
        useful = sorted((n for n in self._nodes.values() if n.state == "new"
                         and (bound is None or self._distance(n) < bound)), key=self._distance)
        room = min(self._parallel - len(self._pending), self._max_queries - self._queries)
        sends = []
        if now < self._lookup_end:
            for node in useful[:max(room, 0)]:
                node.state = "asked"
                self._queries += 1
                sends.append(self._send(node, "get", now, {b"target": self.target}))
            if sends or self._pending:
                return sends
        # Nothing in flight and no one left worth asking (or out of queries or time).
        return self._start_put(now)

    def _got(self, node: _Node, reply: dict[Any, Any]) -> None:
        node_id, token = reply.get(b"id"), reply.get(b"token")
        if not isinstance(node_id, bytes) or len(node_id) != 20:
            node.state = "failed"
            return
        node.node_id, node.state = node_id, "answered"
        if isinstance(token, bytes) and 0 < len(token) <= MAX_TOKEN:
            node.token = token
        nodes = reply.get(b"nodes6" if self._ipv6 else b"nodes")
        if isinstance(nodes, bytes):
            for found_id, endpoint in compact_nodes(nodes, self._ipv6):
                if endpoint not in self._nodes and len(self._nodes) < MAX_KNOWN:
                    self._nodes[endpoint] = _Node(endpoint, found_id)
        seq, value, signature = reply.get(b"seq"), reply.get(b"v"), reply.get(b"sig")
        item = self.item
        if (reply.get(b"k") == item.public_key and type(seq) is int and seq >= self._stored.seq
                and isinstance(value, bytes) and isinstance(signature, bytes)
                and verify_signature(item.public_key, bep44_message(item.salt, seq, value), signature)):
            if seq > self._stored.seq:
                self._stored = _Stored(seq)
            self._stored.values.add(value)

    # ---- put ----------------------------------------------------------------------------------

    def _start_put(self, now: float) -> list[tuple[Endpoint, bytes]]:
        self._phase = "put"
        self._pending.clear()  # late answers to gets no longer count
        item, stored = self.item, self._stored
        if stored.seq > item.seq:
            self._end("behind", f"the DHT holds our item at sequence number {stored.seq}, above "
                                f"{item.seq}", stored.seq)
            return []
        if stored.seq == item.seq and stored.values - {item.value}:
            self._end("conflict", f"the DHT holds another value of ours at sequence number {item.seq}")
            return []
        ready = self._closest()
        if not ready:
            answered = any(n.state == "answered" for n in self._nodes.values())
            self._end("unreached", "no DHT node gave a write token" if answered
                      else f"no DHT node answered ({self._queries} asked)")
            return []
        self._put_to = len(ready)
        args = {b"k": item.public_key, b"seq": item.seq, b"sig": item.signature, b"v": item.value}
        if item.salt:
            args[b"salt"] = item.salt
        # Each put names the receiving node's own id as the sender's: libtorrent's node adds
        # whoever puts to its routing table, "ro" or not (node.cpp, incoming put: node_seen),
        # and our socket answers no queries, so every put would leave a dead node behind that
        # stalls everyone's lookups; a node never adds its own id (routing_table add_node).
        return [self._send(n, "put", now, {**args, b"token": n.token, b"id": n.node_id})
                for n in ready]

    def _finish(self) -> None:
        errors = list(self._errors.values())
        silent = self._put_to - self._acks - len(errors)
        said = ", ".join(f"{code} {text}" for code, text in dict.fromkeys(errors))
        detail = (f"{self._acks} of {self._put_to} DHT nodes stored it"
                  + (f"; refused: {said}" if said else "") + (f"; {silent} did not answer" if silent else ""))
        if self._acks:
            self._end("stored", detail)
        elif errors and all(code == OLD_SEQ for code, _ in errors):
            self._end("behind", f"the DHT holds our item at a higher sequence number than {self.item.seq} "
                                f"({detail})")
        else:
            self._end("unreached", detail)

    def _end(self, outcome: Outcome, detail: str, highest: int | None = None) -> None:
        self._phase = "done"
        self._pending.clear()
        self.result = PutResult(outcome, self._acks, detail, highest)

    def _send(self, node: _Node, query: Literal["get", "put"], now: float,
              args: dict[bytes, Any]) -> tuple[Endpoint, bytes]:
        self._tid = (self._tid + 1) % 65536
        tid = self._tid.to_bytes(2, "big")
        self._pending[tid] = _Pending(node, query, now)
        # "ro": we answer no queries, so nodes must not put us in their routing tables (BEP 43).
        message = {b"t": tid, b"y": b"q", b"q": query.encode(), b"ro": 1,
                   b"a": {b"id": self._id, **args}}  # args may name another id (a put)
        return node.endpoint, bencode(message)


def _error(raw: Any) -> tuple[int, str]:
    """(code, message) of a KRPC error, whatever shape a stranger sent."""
    if isinstance(raw, list) and len(raw) >= 2 and type(raw[0]) is int and isinstance(raw[1], bytes):
        text = raw[1][:120].decode("utf-8", "replace")
        # It goes to our logs and `p2pdata status`: no terminal control characters or newlines.
        return raw[0], "".join(c if c.isprintable() else "?" for c in text)
    return 0, "malformed error"


def start_nodes(own: Endpoint | None, bootstrap: Sequence[Endpoint]) -> list[Endpoint]:
    """Where a put's lookup starts: our own DHT node (its routing table answers the first
    `get`), then the bootstrap nodes."""
    return list(dict.fromkeys([*([own] if own else []), *bootstrap]))
