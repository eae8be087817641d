"""Fixtures for the Ray engine: one real two-node Ray cluster per test module, inside a
network namespace of the test's own (see netns.py), and each test run inside it."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from p2pdata.db import open_db
from p2pdata.training import EngineRegistry, JobSpec, Launcher
from p2pdata.training.worker import RUN_ID, WORKER_INDEX
from tests.ray.netns import RayCluster, ray_cluster
from tests.training.conftest import REPO


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


@pytest.fixture
async def launcher(in_netns: RayCluster, tmp_path: Path) -> AsyncIterator[Launcher]:
    """A launcher whose `ray` engine uses the test cluster, started inside its namespace."""
    db = open_db(tmp_path / "state.db")
    launcher = Launcher(db, tmp_path / "runs", poll_interval=0.1, kill_grace=5.0,
                        engines=ray_engines(in_netns))
    await launcher.start()
    try:
        yield launcher
    finally:
        await launcher.close()
        db.close()


def ray_engines(cluster: RayCluster) -> EngineRegistry:
    return EngineRegistry({"ray": {"address": cluster.address}})


def ray_spec(script: Path, **fields: object) -> JobSpec:
    data: dict[str, object] = {"name": "ray-job", "engine": "ray",
                               "entry": {"script": str(script)},
                               "env": {"PYTHONPATH": str(REPO)}}
    data.update(fields)
    return JobSpec.from_dict(data)


def entry_processes(run_id: str) -> dict[int, psutil.Process]:
    """The run's entry-point processes wherever Ray runs them, by worker index."""
    found = {}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            env = proc.environ()
            if env.get(RUN_ID) == run_id and WORKER_INDEX in env:
                found[int(env[WORKER_INDEX])] = proc
    return found
