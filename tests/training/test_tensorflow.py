"""Real, tiny TensorFlow training through the launcher: one worker, two workers, and on
the real HDFS. Each worker imports TensorFlow (3-6 s), so these are the slow tests."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from p2pdata.training import JobSpec, Launcher, RunState
from tests.training.conftest import EXAMPLES, REPO, gone, load_example, make_manifest, toy_on_hdfs

pytestmark = pytest.mark.tf


def keras_spec(workers: int, env: dict[str, str] | None = None) -> JobSpec:
    return JobSpec.from_dict({
        "name": "keras-toy",
        "framework": "tensorflow",
        "workers": workers,
        "entry": {"script": str(EXAMPLES / "train_keras.py"),
                  "args": ["--epochs", "3", "--batch-size", "32"]},
        "env": {"PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", **(env or {})},
        "startup_timeout": 120,
        "timeout": 240,
    })


async def train(launcher: Launcher, uri: str, workers: int,
                env: dict[str, str] | None = None) -> dict[str, Any]:
    run = await launcher.submit(keras_spec(workers, env), make_manifest(), uri)
    run = await launcher.wait(run.id, timeout=300)
    logs = "\n".join(path.read_text()[-3000:] for path in run.log_paths)
    assert run.state is RunState.SUCCEEDED, f"{run.reason}\n{logs}"
    assert (run.output_dir / "model.keras").stat().st_size > 0
    assert all(gone(p.pid) for p in run.processes)
    return json.loads((run.output_dir / "metrics.json").read_text())


async def test_keras_training_on_local_dataset(launcher: Launcher, tmp_path: Path) -> None:
    load_example("make_dataset").make_classification(tmp_path / "toy", rows=2000)
    metrics = await train(launcher, f"file://{tmp_path / 'toy'}", workers=1)
    assert metrics["workers"] == 1 and metrics["rows"] == 2000
    assert metrics["accuracy"] > 0.8  # chance is about 0.5


async def test_two_worker_tensorflow_run(launcher: Launcher, tmp_path: Path) -> None:
    load_example("make_dataset").make_classification(tmp_path / "toy", rows=2000)
    metrics = await train(launcher, f"file://{tmp_path / 'toy'}", workers=2)
    assert metrics["workers"] == 2
    assert metrics["accuracy"] > 0.8


@pytest.mark.hdfs
async def test_keras_training_on_hdfs(launcher: Launcher, tmp_path: Path,
                                      hdfs_cluster: Any) -> None:
    user = getpass.getuser()
    remote = f"/p2pdata-training-test/toy/{tmp_path.name}"
    fs = toy_on_hdfs(hdfs_cluster.webhdfs_url, tmp_path / "toy", remote)
    try:
        # hdfs:// is the NameNode's RPC address: the worker reads over hdfs-native.
        metrics = await train(launcher, f"{hdfs_cluster.namenode_address}{remote}",
                              workers=1, env={"P2PDATA_HDFS_USER": user})
        assert metrics["accuracy"] > 0.8
    finally:
        fs.rm(remote, recursive=True)


def test_to_tf_dataset_yields_batches(tmp_path: Path) -> None:
    load_example("make_dataset").make_classification(tmp_path / "toy", rows=100)
    code = f"""
from p2pdata.training import open_dataset, to_tf_dataset
data = to_tf_dataset(open_dataset("file://{tmp_path / 'toy'}"), "label", batch_size=32)
shapes = [tuple(x.shape) for x, y in data]
assert shapes == [(32, 4), (32, 4), (32, 4), (4, 4)], shapes
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120,
                   env={"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2",
                        "PATH": "/usr/bin:/bin"})


async def test_tensorflow_worker_whose_peer_never_starts_is_killed(
        launcher: Launcher, tmp_path: Path) -> None:
    """Worker 0 hangs in MultiWorkerMirroredStrategy() waiting for worker 1, which never
    comes up: the start-up deadline fails the run and both groups are killed."""
    load_example("make_dataset").make_classification(tmp_path / "toy", rows=200)
    shim = tmp_path / "shim.py"
    shim.write_text(
        "import os, runpy, sys, threading\n"
        "if os.environ['P2PDATA_WORKER_INDEX'] == '1':\n"
        "    threading.Event().wait()\n"
        f"sys.argv[0] = {str(EXAMPLES / 'train_keras.py')!r}\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    spec = JobSpec.from_dict({
        "name": "hang", "framework": "tensorflow", "workers": 2,
        "entry": {"script": str(shim)}, "env": {"PYTHONPATH": str(REPO)},
        "startup_timeout": 10, "timeout": 120,
    })
    run = await launcher.submit(spec, make_manifest(), f"file://{tmp_path / 'toy'}")
    run = await launcher.wait(run.id, timeout=120)
    assert run.state is RunState.FAILED
    assert "start-up deadline" in run.reason and "[0, 1]" in run.reason
    assert all(gone(p.pid) for p in run.processes)
    assert "Traceback" not in run.log_paths[0].read_text()  # hung, not crashed
