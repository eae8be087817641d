"""Fixtures for the Ray engine: one real two-node Ray cluster per test module, inside a
network namespace of the test's own (see `p2pdata.training.ray_local`), and each test run inside it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from p2pdata.training import EngineRegistry, JobSpec, Launcher
from p2pdata.training.ray_local import LocalRayCluster, local_ray_cluster, unavailable
from p2pdata.training.worker import ATTEMPT, RUN_ID, WORKER_INDEX
from tests.training.conftest import REPO, started_launcher


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with local_ray_cluster(cpus_per_node=1) as started:
        yield started


@pytest.fixture
def in_netns(cluster: LocalRayCluster) -> Iterator[LocalRayCluster]:
    """The test body, and all it starts, runs in the cluster's namespace."""
    with cluster.netns.entered():
        yield cluster


@pytest.fixture
async def launcher(in_netns: LocalRayCluster, tmp_path: Path) -> AsyncIterator[Launcher]:
    """A launcher whose `ray` engine uses the test cluster, started inside its namespace."""
    async with started_launcher(tmp_path, poll_interval=0.1, kill_grace=5.0,
                                engines=ray_engines(in_netns)) as launcher:
        yield launcher


def ray_engines(cluster: LocalRayCluster) -> EngineRegistry:
    return EngineRegistry({"ray": {"address": cluster.address}})


def ray_spec(script: Path, **fields: object) -> JobSpec:
    data: dict[str, object] = {"name": "ray-job", "engine": "ray",
                               "entry": {"script": str(script)},
                               "env": {"PYTHONPATH": str(REPO)}}
    data.update(fields)
    return JobSpec.from_dict(data)


def entry_processes(run_id: str, attempt: int | None = None) -> dict[int, psutil.Process]:
    """The run's entry-point processes wherever Ray runs them (of one attempt, or all), by
    worker index."""
    found = {}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            env = proc.environ()
            if (env.get(RUN_ID) == run_id and WORKER_INDEX in env
                    and (attempt is None or env.get(ATTEMPT) == str(attempt))):
                found[int(env[WORKER_INDEX])] = proc
    return found
