from __future__ import annotations

import pytest

from p2pdata.peers import InvalidPeerUrl, merge_peer_urls, normalize_peer_url


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("http://Host.Example:7001", "http://host.example:7001"),
        ("HTTP://10.0.0.1:7001/", "http://10.0.0.1:7001"),
        ("https://peer.lab", "https://peer.lab:443"),
        ("http://peer.lab", "http://peer.lab:80"),
        (" http://[::1]:7001 ", "http://[::1]:7001"),
    ],
)
def test_normal_forms(raw: str, normal: str) -> None:
    assert normalize_peer_url(raw) == normal


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("ftp://h:1", "scheme"),
        ("10.0.0.1:7001", "scheme"),
        ("http://:7001", "no host"),
        ("http://h:7001/v1", "without path"),
        ("http://h:7001?x=1", "without path"),
        ("http://h:7001#f", "without path"),
        ("http://u:p@h:7001", "user info"),
        ("http://h:99999", "not valid"),
        ("http://h:0", "port 0"),
        ("http://h:" + "1" * 3000, "over 2048"),
    ],
)
def test_invalid_urls_say_why(raw: str, message: str) -> None:
    with pytest.raises(InvalidPeerUrl, match=message):
        normalize_peer_url(raw)


def test_merge_static_wins_and_duplicates_collapse() -> None:
    merged = merge_peer_urls(
        static=["http://a:1/", "http://b:2"], discovered=["http://A:1", "http://c:3"]
    )
    assert merged == {"http://a:1": "static", "http://b:2": "static", "http://c:3": "zeroconf"}
    with pytest.raises(InvalidPeerUrl):
        merge_peer_urls(static=["a:1"], discovered=[])
