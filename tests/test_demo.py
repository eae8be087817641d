"""The README's first command, in a quick mode: every step of the demo shows in its output."""

from __future__ import annotations

import subprocess
import sys

import pytest

STEPS = [
    "starting three clusters",
    "alpha and beta publish demo-clicks@1",
    "published demo-clicks@1",
    "finds them over zeroconf",
    "2 datasets",
    "gamma fetches demo-clicks",
    "landed ",
    "training starts as soon as the data has landed",
    ": succeeded",
    "model accuracy",
    "status page: http://127.0.0.1:",
    "demo complete",
]


def run_demo(*args: str) -> str:
    process = subprocess.run(
        [sys.executable, "-m", "p2pdata.demo", "--size-mb", "4", "--max-rows", "4000", *args],
        capture_output=True, text=True, timeout=400,
    )
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-4000:]
    return process.stdout


def check_steps(output: str) -> None:
    position = 0
    for step in STEPS:
        found = output.find(step, position)
        assert found >= 0, f"demo output lacks {step!r} after position {position}:\n{output}"
        position = found


@pytest.mark.tf
def test_demo_on_the_local_store():
    output = run_demo()
    check_steps(output)
    assert "file://" in output


@pytest.mark.tf
@pytest.mark.hdfs
def test_demo_into_real_hdfs_with_a_tier():
    output = run_demo("--hdfs", "--tier", "cold-ec")
    check_steps(output)
    assert "Hadoop 3." in output and "WebHDFS http://127.0.0.1:" in output
    # Landed over the native protocol, erasure-coded, every block on ARCHIVE.
    assert "hdfs://127.0.0.1:" in output
    assert "blocks in HDFS: erasure-coded, replicas by storage type {'ARCHIVE': " in output
