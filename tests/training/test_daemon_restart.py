"""Training runs across a real daemon's restart: what was queued runs after it, and a running
run whose spec allows a retry runs again."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from p2pdata.devcluster import wait_for
from tests.daemon.test_daemon import make_dataset
from tests.training.conftest import gone

SCRIPT = """
import os, pathlib, threading
attempt = os.environ["P2PDATA_ATTEMPT"]
pathlib.Path(os.environ["P2PDATA_OUTPUT_DIR"], "attempt").write_text(attempt)
if os.environ.get("BLOCK_FIRST") and attempt == "0":
    threading.Event().wait()  # until the daemon stops it
print("trained on", os.environ["P2PDATA_DATASET_URI"], flush=True)
"""

SPEC = """
name = "{name}"
retries = {retries}
[trigger]
dataset = "clicks"
[entry]
script = "train.py"
[env]
BLOCK_FIRST = "{block}"
"""


def runs_by_job(daemon: Any) -> dict[str, dict[str, Any]]:
    return {run["job"]: run for run in daemon.cli_json("runs")}


def test_queued_and_retryable_runs_run_after_a_restart(make_daemon, tmp_path: Path) -> None:
    source = tmp_path / "source"
    make_dataset(source, files=1, rows=1000)
    alpha = make_daemon("alpha")
    alpha.cli_json("publish", str(source), "--name", "clicks", "--version", "1")
    gamma = make_daemon("gamma", discovery={"static_peers": [alpha.peer_url]},
                        training={"max_concurrent_runs": 1})
    gamma.cli("trust", "add", alpha.cluster_id)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "train.py").write_text(textwrap.dedent(SCRIPT))
    for name, retries, block in (("blocker", 1, "1"), ("follower", 0, "")):
        spec = jobs / f"{name}.toml"
        spec.write_text(SPEC.format(name=name, retries=retries, block=block))
        gamma.cli("jobs", "add", str(spec))
    wait_for(lambda: gamma.cli_json("search", "clicks"), what="alpha's catalog")
    assert gamma.cli_json("fetch", "clicks@1", "--timeout", "60")["state"] == "landed"

    # One slot: the blocker runs (and blocks), the follower waits in the queue.
    def blocking() -> dict[str, dict[str, Any]] | None:
        runs = runs_by_job(gamma)
        blocker = runs.get("blocker")
        started = blocker and (Path(blocker["output_dir"]) / "attempt").exists()
        return runs if started and blocker["state"] == "running" else None

    runs = wait_for(blocking, what="the blocker to run")
    assert runs["follower"]["state"] == "queued"
    pids = runs["blocker"]["pids"]

    gamma.stop()
    assert all(gone(pid) for pid in pids), "a stopped daemon leaves no worker running"
    gamma.start()

    def over() -> dict[str, dict[str, Any]] | None:
        runs = runs_by_job(gamma)
        return runs if all(run["state"] not in ("queued", "running") for run in runs.values()) else None

    runs = wait_for(over, what="both runs to end after the restart")
    assert runs["blocker"]["state"] == "succeeded", runs["blocker"]
    assert runs["follower"]["state"] == "succeeded", runs["follower"]
    # The blocker ran again as attempt 1 (its one retry), the follower for the first time.
    assert (Path(runs["blocker"]["output_dir"]) / "attempt").read_text() == "1"
    assert (runs["blocker"]["attempt"], runs["blocker"]["retries_left"]) == (1, 0)
    assert "trained on file://" in Path(runs["follower"]["logs"][0]).read_text()
    assert len(gamma.cli_json("runs")) == 2  # the same two runs, not new ones
