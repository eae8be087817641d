"""Fixtures for the Ray engine: one real two-node Ray cluster per test module, inside a
network namespace of the test's own (see netns.py), and each test run inside it."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator

import pytest

from tests.ray.netns import RayCluster, ray_cluster


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip netns)"
    if importlib.util.find_spec("ray") is None:
        return "needs the ray extra (pip install -e '.[ray]')"
    return None


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    with ray_cluster(cpus_per_node=1) as started:
        yield started


@pytest.fixture
def in_netns(cluster: RayCluster) -> Iterator[RayCluster]:
    """The test body, and all it starts, runs in the cluster's namespace."""
    with cluster.netns.entered():
        yield cluster
