"""A small BitTorrent tracker (BEP 3 announce, BEP 23 compact peers) for public datasets.

Any BitTorrent client given a public dataset's magnet link or .torrent finds
the seeds here: the daemon's own seeding address and the peers that announced
recently. Only torrents the daemon registered (its public datasets) are
served; restricted datasets are never registered, so they never appear.
Plain logic fed with a clock; the peer API route is a thin wrapper.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field

import libtorrent as lt

Endpoint = tuple[str, int]

INTERVAL = 120  # seconds between a client's announces
_MAX_PEERS = 50  # in one reply
_MAX_SWARM = 2000  # announcers remembered per torrent
_MAX_QUERY = 1024


def tracker_key(info_hash_v2: bytes) -> bytes:
    """What clients announce a v2 torrent by: its SHA-256 info hash truncated to 20 bytes."""
    return info_hash_v2[:20]


@dataclass
class _Swarm:
    seeds: set[Endpoint] = field(default_factory=set)  # ours: always listed
    peers: dict[Endpoint, tuple[float, bool]] = field(default_factory=dict)  # -> (seen, complete)


class Tracker:
    def __init__(self, *, interval: int = INTERVAL) -> None:
        self.interval = interval
        self._swarms: dict[bytes, _Swarm] = {}

    def track(self, info_hash_v2: bytes, seeds: Iterable[Endpoint], *,
              info_hash_v1: bytes | None = None) -> None:
        """Serve this torrent, listing `seeds` (the daemon's own IP addresses) first.

        A hybrid torrent's v1 info hash names the same swarm: v1-only clients announce by it.
        """
        swarm = self._swarms.setdefault(tracker_key(info_hash_v2), _Swarm())
        if info_hash_v1 is not None:
            self._swarms[info_hash_v1] = swarm
        swarm.seeds.update((str(ipaddress.ip_address(host)), port) for host, port in seeds)

    def untrack(self, info_hash_v2: bytes) -> None:
        swarm = self._swarms.pop(tracker_key(info_hash_v2), None)
        self._swarms = {key: other for key, other in self._swarms.items() if other is not swarm}

    def tracked(self, info_hash_v2: bytes) -> bool:
        return tracker_key(info_hash_v2) in self._swarms

    def announce(self, query: str, remote: str, now: float) -> bytes:
        """The bencoded reply to one announce (`query`: the raw query string)."""
        try:
            key, port, event, left, wanted = _parse(query)
            ip = ipaddress.ip_address(remote)
        except ValueError as exc:
            return _failure(str(exc))
        swarm = self._swarms.get(key)
        if swarm is None:
            return _failure("this tracker does not serve that torrent")
        self._expire(swarm, now)
        announcer = (str(ip), port)
        if event == "stopped":
            swarm.peers.pop(announcer, None)
        elif announcer in swarm.peers or len(swarm.peers) < _MAX_SWARM:
            swarm.peers[announcer] = (now, left == 0)
        listed = sorted(swarm.seeds) + sorted(
            (p for p in swarm.peers if p != announcer and p not in swarm.seeds),
            key=lambda p: -swarm.peers[p][0],  # the most recently seen first
        )
        listed = listed[:wanted]
        complete = len(swarm.seeds) + sum(1 for _, done in swarm.peers.values() if done)
        reply = {
            b"interval": self.interval,
            b"complete": complete,
            b"incomplete": len(swarm.peers) - sum(1 for _, done in swarm.peers.values() if done),
            b"peers": b"".join(_compact(p) for p in listed if ":" not in p[0]),
            b"peers6": b"".join(_compact(p) for p in listed if ":" in p[0]),
        }
        return bytes(lt.bencode(reply))

    def _expire(self, swarm: _Swarm, now: float) -> None:
        stale = [p for p, (seen, _) in swarm.peers.items() if now - seen > 2 * self.interval]
        for peer in stale:
            del swarm.peers[peer]


def _parse(query: str) -> tuple[bytes, int, str, int | None, int]:
    if len(query) > _MAX_QUERY:
        raise ValueError("announce too long")
    # latin-1 maps every percent-escaped byte to one character: the raw 20-byte hash survives.
    fields = urllib.parse.parse_qs(query, encoding="latin-1", errors="strict")
    key = fields.get("info_hash", [""])[0].encode("latin-1")
    if len(key) != 20:
        raise ValueError("info_hash must be 20 bytes")
    try:
        port = int(fields.get("port", [""])[0])
        left = int(fields["left"][0]) if "left" in fields else None
        wanted = min(int(fields.get("numwant", [str(_MAX_PEERS)])[0]), _MAX_PEERS)
    except ValueError:
        raise ValueError("port, left and numwant must be numbers") from None
    if not 0 < port < 65536:
        raise ValueError("port must be 1 to 65535")
    event = fields.get("event", [""])[0]
    if event not in ("", "started", "completed", "stopped", "paused"):
        raise ValueError(f"unknown event {event!r}")
    return key, port, event, left, max(wanted, 0)


def _compact(peer: Endpoint) -> bytes:
    return ipaddress.ip_address(peer[0]).packed + peer[1].to_bytes(2, "big")


def _failure(reason: str) -> bytes:
    return bytes(lt.bencode({b"failure reason": reason.encode()}))
