"""The test cluster itself: two live nodes, both on an address the test owns."""

from __future__ import annotations

import os
import socket

from p2pdata.training.ray_local import LocalRayCluster


def _current_netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_two_nodes_on_the_namespaces_loopback(in_netns: LocalRayCluster) -> None:
    nodes = in_netns.nodes()
    assert len(nodes) == 2 and all(n["alive"] for n in nodes)
    assert {n["address"] for n in nodes} == {"127.0.0.1"}
    assert sum(n["resources"]["CPU"] for n in nodes) == 2
    # Inside the namespace, loopback is the only interface there is.
    assert [name for _, name in socket.if_nameindex()] == ["lo"]
    assert _current_netns() == os.stat(f"/run/netns/{in_netns.netns.name}").st_ino


def test_outside_in_netns_the_test_runs_at_home(cluster: LocalRayCluster) -> None:
    assert _current_netns() != os.stat(f"/run/netns/{cluster.netns.name}").st_ino
    with cluster.netns.entered():
        assert _current_netns() == os.stat(f"/run/netns/{cluster.netns.name}").st_ino
    assert _current_netns() != os.stat(f"/run/netns/{cluster.netns.name}").st_ino
