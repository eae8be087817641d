"""The public-dataset tracker's decisions (BEP 3 / BEP 23), and the magnet and .torrent it hands out."""

from __future__ import annotations

import urllib.parse

import libtorrent as lt

from p2pdata.transfer import Tracker, magnet_link, with_trackers
from p2pdata.transfer.tracker import INTERVAL

HASH = bytes(range(32))
SEED = ("127.0.0.1", 6881)


def query(info_hash: bytes = HASH[:20], **fields: object) -> str:
    fields = {"port": 7000, "left": 100, **fields}
    return urllib.parse.urlencode({"info_hash": info_hash, **fields})


def peers(reply: bytes) -> list[tuple[str, int]]:
    compact = lt.bdecode(reply)[b"peers"]
    return [(".".join(str(b) for b in compact[i:i + 4]), int.from_bytes(compact[i + 4:i + 6], "big"))
            for i in range(0, len(compact), 6)]


def test_announcers_get_our_seed_first_then_each_other_compact() -> None:
    tracker = Tracker()
    tracker.track(HASH, [SEED])
    assert peers(tracker.announce(query(), "127.0.0.2", now=0)) == [SEED]
    reply = lt.bdecode(tracker.announce(query(port=7001, left=0), "127.0.0.3", now=1))
    assert reply[b"interval"] == INTERVAL and reply[b"complete"] == 2 and reply[b"incomplete"] == 1
    assert peers(tracker.announce(query(), "127.0.0.2", now=2)) == [SEED, ("127.0.0.3", 7001)]
    assert peers(tracker.announce(query(numwant=1), "127.0.0.4", now=2)) == [SEED]


def test_stopped_and_silent_peers_are_dropped() -> None:
    tracker = Tracker()
    tracker.track(HASH, [SEED])
    tracker.announce(query(), "127.0.0.2", now=0)
    tracker.announce(query(event="stopped"), "127.0.0.2", now=1)
    assert peers(tracker.announce(query(), "127.0.0.3", now=1)) == [SEED]
    # 127.0.0.3 says nothing for two intervals: forgotten.
    assert peers(tracker.announce(query(), "127.0.0.4", now=2 + 2 * INTERVAL)) == [SEED]


def test_unknown_torrents_and_bad_announces_fail_with_a_reason() -> None:
    tracker = Tracker()
    tracker.track(HASH, [SEED])
    # A torrent never registered (a restricted dataset never is) is not served.
    reason = lt.bdecode(tracker.announce(query(info_hash=bytes(20)), "127.0.0.2", now=0))
    assert reason[b"failure reason"] == b"this tracker does not serve that torrent"
    for bad, message in ((query(info_hash=b"short"), b"20 bytes"), (query(port=0), b"port"),
                         (query(port="x"), b"numbers"), (query(event="boom"), b"event"),
                         ("x" * 2000, b"too long")):
        assert message in lt.bdecode(tracker.announce(bad, "127.0.0.2", now=0))[b"failure reason"]
    tracker.untrack(HASH)
    assert not tracker.tracked(HASH)


def test_magnet_and_torrent_name_trackers_and_seeds_without_changing_the_info_hash() -> None:
    magnet = magnet_link(HASH, "clicks-1", ["http://127.0.0.1:9/announce"],
                         [("127.0.0.1", 6881), ("::1", 6882)])
    assert magnet == ("magnet:?xt=urn:btmh:1220" + HASH.hex() + "&dn=clicks-1"
                      "&tr=http%3A%2F%2F127.0.0.1%3A9%2Fannounce&x.pe=127.0.0.1:6881&x.pe=[::1]:6882")
    params = lt.parse_magnet_uri(magnet)
    assert params.info_hashes.v2.to_bytes() == HASH and params.trackers == ["http://127.0.0.1:9/announce"]
    torrent = {b"info": {b"name": b"x", b"piece length": 16384, b"meta version": 2,
                         b"file tree": {b"a": {b"": {b"length": 0}}}}}
    data = with_trackers(lt.bencode(torrent), ["http://127.0.0.1:9/announce"])
    assert lt.bdecode(data)[b"announce"] == b"http://127.0.0.1:9/announce"
    assert lt.bdecode(data)[b"info"] == torrent[b"info"]


def test_a_hybrid_torrents_v1_hash_names_the_same_swarm() -> None:
    tracker = Tracker()
    v1 = bytes(range(100, 120))
    tracker.track(HASH, [SEED], info_hash_v1=v1)
    tracker.announce(query(info_hash=v1, port=7001), "127.0.0.2", now=0)  # a v1-only client
    assert peers(tracker.announce(query(), "127.0.0.3", now=1)) == [SEED, ("127.0.0.2", 7001)]
    tracker.untrack(HASH)
    assert b"failure reason" in tracker.announce(query(info_hash=v1), "127.0.0.2", now=2)
