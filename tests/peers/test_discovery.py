"""Zeroconf discovery on loopback only: in-process instances and one in a subprocess."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from p2pdata.peers.discovery import ZeroconfDiscovery

LOOPBACK = ["127.0.0.1"]


class Seen:
    """Records callbacks; `wait` polls a condition with a deadline instead of sleeping."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self.lost: list[str] = []

    def on_found(self, url: str, cluster_id: str) -> None:
        self.found[url] = cluster_id

    def on_lost(self, url: str) -> None:
        self.lost.append(url)
        self.found.pop(url, None)


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.05)


def cid(n: int) -> str:
    return f"{'abcdefghijklmnop'[:15]}{'abcdefg'[n]}"


def make(seen: Seen, n: int, port: int) -> ZeroconfDiscovery:
    return ZeroconfDiscovery(
        interfaces=LOOPBACK,
        service_name=f"p2pdata-test-{n}-{port}",
        port=port,
        cluster_id=cid(n),
        on_found=seen.on_found,
        on_lost=seen.on_lost,
    )


async def test_three_instances_find_each_other_and_see_removal(unused_tcp_port_factory) -> None:
    ports = [unused_tcp_port_factory() for _ in range(3)]
    seen = [Seen() for _ in range(3)]
    nodes = [make(s, n, port) for n, (s, port) in enumerate(zip(seen, ports, strict=True))]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        for n in range(3):
            others = {urls[m]: cid(m) for m in range(3) if m != n}
            await wait_for(lambda n=n, others=others: seen[n].found == others)
            assert urls[n] not in seen[n].found  # never itself
        await nodes[2].close()
        await wait_for(lambda: urls[2] in seen[0].lost and urls[2] in seen[1].lost)
        assert seen[0].found == {urls[1]: cid(1)}
    finally:
        await asyncio.gather(*(node.close() for node in nodes))


SUBPROCESS = """
import asyncio, sys
from p2pdata.peers.discovery import ZeroconfDiscovery

async def main():
    node = ZeroconfDiscovery(interfaces=["127.0.0.1"], service_name="p2pdata-sub-" + sys.argv[1],
        port=int(sys.argv[1]), cluster_id="qrstuvwxyz234567",
        on_found=lambda u, c: None, on_lost=lambda u: None)
    await node.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await node.close()

asyncio.run(main())
"""


async def test_instance_in_another_process_is_found_and_lost(unused_tcp_port_factory) -> None:
    port, own_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    seen = Seen()
    node = make(seen, 0, own_port)
    await node.start()
    proc = subprocess.Popen(
        [sys.executable, "-c", SUBPROCESS, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],  # so the child imports this checkout
    )
    try:
        url = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        await wait_for(lambda: seen.found.get(url) == "qrstuvwxyz234567", timeout=15)
        print(f"found subprocess advert in {time.monotonic() - started:.2f} s")
        proc.stdin.close()  # asks the child to unregister and exit
        await wait_for(lambda: url in seen.lost)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await node.close()


def test_refuses_wildcard_and_bad_names() -> None:
    seen = Seen()
    for bad in (["0.0.0.0"], [], ["::1"]):
        with pytest.raises(ValueError):
            ZeroconfDiscovery(interfaces=bad, service_name="x", port=1, cluster_id=cid(0),
                              on_found=seen.on_found, on_lost=seen.on_lost)
    with pytest.raises(ValueError):
        ZeroconfDiscovery(interfaces=LOOPBACK, service_name="a.b", port=1, cluster_id=cid(0),
                          on_found=seen.on_found, on_lost=seen.on_lost)
    with pytest.raises(ValueError):
        ZeroconfDiscovery(interfaces=LOOPBACK, service_name="x", port=1, cluster_id="NOPE",
                          on_found=seen.on_found, on_lost=seen.on_lost)


async def test_malformed_adverts_are_ignored(unused_tcp_port_factory) -> None:
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    from p2pdata.peers.discovery import SERVICE_TYPE

    stranger = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
    bad = [
        {"cid": "NOT-A-CLUSTER", "api": "1"},
        {"cid": cid(5), "api": "2"},  # a future, incompatible peer API
        {"cid": cid(5), "api": "1", "scheme": "gopher"},
    ]
    infos = [
        AsyncServiceInfo(
            SERVICE_TYPE,
            f"p2pdata-bad-{n}.{SERVICE_TYPE}",
            port=unused_tcp_port_factory(),
            addresses=[bytes([127, 0, 0, 1])],
            properties=props,
        )
        for n, props in enumerate(bad)
    ]
    seen, good_seen = Seen(), Seen()
    node = make(seen, 0, unused_tcp_port_factory())
    good = make(good_seen, 1, unused_tcp_port_factory())
    try:
        # Registration probes take about a second each: do them all at once.
        registered = [await stranger.async_register_service(info) for info in infos]
        await asyncio.gather(*registered, node.start(), good.start())
        await wait_for(lambda: cid(1) in seen.found.values())
        assert list(seen.found.values()) == [cid(1)]
        assert list(node.found.values()) == list(seen.found)
    finally:
        await stranger.async_unregister_all_services()
        await stranger.async_close()
        await asyncio.gather(good.close(), node.close())


async def test_a_flood_of_adverts_is_followed_only_up_to_a_bound(unused_tcp_port_factory) -> None:
    seen = Seen()
    node = ZeroconfDiscovery(interfaces=LOOPBACK, service_name=f"p2pdata-test-capped-{unused_tcp_port_factory()}",
                             port=unused_tcp_port_factory(), cluster_id=cid(0),
                             on_found=seen.on_found, on_lost=seen.on_lost, max_found=2)
    others = [make(Seen(), n, unused_tcp_port_factory()) for n in (1, 2, 3, 4)]
    try:
        await asyncio.gather(node.start(), *(other.start() for other in others))
        await wait_for(lambda: len(seen.found) == 2)
        # The others answer too, but no third is followed (resolves take well under a second).
        await wait_for(lambda: all(len(o.found) == 4 for o in others))
        assert len(seen.found) == 2 and len(node.found) == 2
    finally:
        await asyncio.gather(node.close(), *(other.close() for other in others))
