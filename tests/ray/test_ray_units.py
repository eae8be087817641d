"""The ray engine's pure parts, without a cluster: resources, the placement check, a
missing cluster address, and Ray staying out of the daemon's process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from p2pdata.db import open_db
from p2pdata.training import EngineRegistry, JobSpec, Launcher, RunState
from p2pdata.training.ray_driver import placement_problem
from p2pdata.training.ray_engine import ray_resources
from tests.training.conftest import REPO, make_manifest


def node(alive: bool = True, **resources: float) -> dict[str, object]:
    return {"Alive": alive, "Resources": resources}


def spec(**fields: object) -> JobSpec:
    return JobSpec.from_dict({"name": "job", "engine": "ray", "entry": {"module": "train"},
                              **fields})


def test_resources_map_to_rays_names() -> None:
    assert ray_resources(spec()) == {"CPU": 1.0}
    assert ray_resources(spec(resources={"vcores": 2, "gpus": 1, "memory": "512m"})) == {
        "CPU": 2.0, "GPU": 1.0, "memory": 512.0 * 2**20}


def test_placement_counts_whole_workers_per_node() -> None:
    two_nodes = [node(CPU=3, memory=2**30), node(CPU=1, memory=2**30)]
    assert placement_problem(two_nodes, 4, {"CPU": 1}) is None
    assert placement_problem(two_nodes, 2, {"CPU": 1.5}) is None  # two fit on the first
    problem = placement_problem(two_nodes, 3, {"CPU": 1.5})
    assert problem == ("Ray cannot place 3 worker(s) of {CPU 1.5}: the cluster's 2 node(s) "
                       "hold 2 (CPU 3; CPU 1)")
    # Memory is shown in MiB; the scarcest resource of a node decides.
    problem = placement_problem(two_nodes, 2, {"CPU": 1, "memory": 2**31})
    assert problem is not None and "{CPU 1, memory 2048 MiB}" in problem
    assert "hold 0 (CPU 3, memory 1024 MiB; CPU 1, memory 1024 MiB)" in problem
    assert "GPU 1" in (placement_problem(two_nodes, 1, {"CPU": 1, "GPU": 1}) or "")


def test_dead_nodes_hold_nothing() -> None:
    problem = placement_problem([node(alive=False, CPU=8), node(CPU=1)], 2, {"CPU": 1})
    assert problem is not None and "1 node(s) hold 1" in problem
    assert "no live nodes" in (placement_problem([], 1, {"CPU": 1}) or "")


async def test_a_ray_job_without_a_cluster_address_fails_saying_what_to_set(
        tmp_path: Path) -> None:
    db = open_db(tmp_path / "state.db")
    launcher = Launcher(db, tmp_path / "runs", poll_interval=0.05,
                        engines=EngineRegistry({"ray": {"address": ""}}))
    await launcher.start()
    try:
        run = await launcher.submit(spec(), make_manifest(), f"file://{tmp_path}")
        run = await launcher.wait(run.id, timeout=30)
    finally:
        await launcher.close()
        db.close()
    assert run.state is RunState.FAILED
    assert "no Ray cluster configured: set training.ray_address" in run.reason


def test_the_daemon_side_never_imports_ray() -> None:
    code = ("import sys; import p2pdata.daemon;"
            "from p2pdata.training import EngineRegistry;"
            "EngineRegistry({'ray': {'address': 'auto'}}).get('ray');"
            "loaded = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'));"
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("argv", [[], ["a", "b"]])
def test_the_driver_wants_one_job_file(argv: list[str]) -> None:
    driver = REPO / "p2pdata" / "training" / "ray_driver.py"
    done = subprocess.run([sys.executable, "-P", str(driver), *argv], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "usage:" in done.stderr
