"""Fetch jobs through real daemons: no dead ends (stall reasons, failures that keep what was
verified, retry, attach, Ctrl-C, reuse of held files, exit codes)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pdata.devcluster import DaemonProcess, wait_for
from tests.daemon.test_daemon import landed_files, make_dataset


def publish(daemon: DaemonProcess, source: Path, name: str, version: str = "1") -> dict[str, Any]:
    return daemon.cli_json("publish", str(source), "--name", name, "--version", version)


def fetcher_of(make_daemon: Any, seed: DaemonProcess, name: str, **sections: Any) -> DaemonProcess:
    gamma = make_daemon("gamma", discovery={"static_peers": [seed.peer_url]}, **sections)
    gamma.cli("trust", "add", seed.cluster_id)
    wait_for(lambda: gamma.cli_json("search", name), what=f"gamma to hold the catalog with {name}")
    return gamma


def job(daemon: DaemonProcess, job_id: str) -> dict[str, Any]:
    return json.loads(daemon.cli("jobs", "show", job_id, "--json"))


def fails_with_exit_1(daemon: DaemonProcess, *args: str) -> dict[str, Any]:
    """Run a command that must exit 1 and print a JSON job; return the job."""
    with pytest.raises(AssertionError, match="exited 1") as failure:
        daemon.cli(*args, "--json")
    output = str(failure.value).partition(": ")[2]
    return json.loads(output[output.index("{"):])


def test_a_fetch_that_cannot_progress_says_why_and_fails_after_the_stall_timeout(make_daemon, tmp_path):
    make_dataset(tmp_path / "clicks", files=2, rows=5000)
    tampered = tmp_path / "tampered"
    make_dataset(tampered, files=1, rows=50_000)
    alpha = make_daemon("alpha")
    publish(alpha, tmp_path / "clicks", "clicks")
    publish(alpha, tampered, "tampered")
    part = tampered / "part-0.parquet"
    part.write_bytes(bytes(len(part.read_bytes())))  # changed after publishing: every piece is bad
    gamma = fetcher_of(make_daemon, alpha, "tampered", transfer={"listen": ["127.0.0.1:0"], "stall_timeout": 10})

    # An unknown tier is refused at once: no job is made that could only fail.
    refused = gamma.cli("fetch", "clicks@1", "--tier", "warmish", ok=False)
    assert "unknown tier 'warmish': use one of" in refused and "retry" not in refused, refused
    refused = gamma.cli("fetch", "clicks@1", "--to", "landed-here", ok=False)
    assert "must be an absolute path, not 'landed-here'" in refused, refused
    assert gamma.cli_json("jobs") == []

    # The only seed sends bad pieces: it is banned, and the job says so while it waits.
    started = gamma.cli_json("fetch", "tampered@1", "--detach")
    wait_for(lambda: "banned for sending bad pieces" in (job(gamma, started["id"])["waiting"] or ""),
             timeout=20, what="the job to say the seed was banned")
    assert "banned" in gamma.cli("jobs")
    failed = fails_with_exit_1(gamma, "jobs", "watch", started["id"])
    assert failed["state"] == "failed" and failed["retryable"], failed
    assert failed["error"].startswith("no progress for 10 s: the only seed was banned"), failed

    # Its publisher goes away: an attached `fetch --json` says so and exits 1.
    alpha.stop()
    wait_for(lambda: any(p["state"] == "unreachable" for p in gamma.cli_json("peers")),
             what="alpha to be unreachable")
    failed = fails_with_exit_1(gamma, "fetch", "clicks@1")
    assert failed["state"] == "failed", failed
    assert "no reachable peer has it; 1 known peer(s) are unreachable" in failed["error"], failed


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs the test can fill and then grow."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.call(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                                             str(mount)], stderr=subprocess.DEVNULL):
        pytest.skip("needs root to mount a small tmpfs")
    yield mount
    subprocess.call(["umount", "-l", str(mount)])


def test_landing_on_a_full_disk_keeps_the_download_and_lands_it_later_without_downloading_again(
        make_daemon, tmp_path, small_disk):
    expected = make_dataset(tmp_path / "clicks", files=4, rows=40_000)  # about 1.3 MB
    alpha = make_daemon("alpha")
    publish(alpha, tmp_path / "clicks", "clicks")
    gamma = fetcher_of(make_daemon, alpha, "clicks")
    root = small_disk / "store"

    failed = fails_with_exit_1(gamma, "fetch", "clicks@1", "--to", str(root), "--timeout", "60")
    assert failed["state"] == "failed" and failed["retryable"], failed
    assert failed["error"] == f"store disk full at {root}", failed
    assert failed["done_bytes"] == failed["total_bytes"]  # every byte arrived, verified
    sent = alpha.cli_json("status")["transfer"]["uploaded"]
    assert sent >= failed["total_bytes"]
    again = fails_with_exit_1(gamma, "jobs", "retry", failed["id"])  # still full: the same clear error
    assert again["error"] == f"store disk full at {root}", again

    # Room again: `fetch` runs the failed job again, landing from staging; the seed sends nothing.
    subprocess.check_call(["mount", "-o", "remount,size=16m", str(small_disk)])
    landed = gamma.cli_json("fetch", "clicks@1", "--to", str(root), "--timeout", "60")
    assert (landed["state"], landed["id"]) == ("landed", failed["id"]), landed
    assert landed_files(root, "clicks", "1") == expected
    assert alpha.cli_json("status")["transfer"]["uploaded"] == sent


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_line(lines: queue.Queue[str], text: str, timeout: float = 30.0) -> str:
    seen = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line with {text!r} in {seen}") from None
        seen.append(line)
        if text in line:
            return line


def test_ctrl_c_leaves_the_fetch_running_twice_cancels_it_and_fetching_again_attaches(make_daemon, tmp_path):
    make_dataset(tmp_path / "big", files=4, rows=160_000)  # about 6 MB: 24 s at 256 KiB/s
    alpha = make_daemon("alpha", transfer={"listen": ["127.0.0.1:0"], "upload_limit": 256 * 1024})
    publish(alpha, tmp_path / "big", "big")
    gamma = fetcher_of(make_daemon, alpha, "big")

    def attached(*args: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
        process = subprocess.Popen([sys.executable, "-m", "p2pdata", "--home", str(gamma.home), *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = _lines(process)
        _wait_line(lines, "Ctrl-C leaves it running")
        return process, lines

    first, lines = attached("fetch", "big@1")
    running = wait_for(lambda: (jobs := gamma.cli_json("jobs")) and jobs[0], what="the job")
    # A second fetch of the same dataset attaches to the running job.
    second = gamma.cli_json("fetch", "big@1", "--detach")
    assert (second["id"], second["attached"]) == (running["id"], True)
    assert len(gamma.cli_json("jobs")) == 1

    first.send_signal(signal.SIGINT)
    _wait_line(lines, "Press Ctrl-C again")
    assert first.wait(30) == 0
    _wait_line(lines, f"p2pdata jobs watch {running['id']}")
    assert job(gamma, running["id"])["state"] in ("transferring", "landing")

    watcher, lines = attached("jobs", "watch", running["id"])
    watcher.send_signal(signal.SIGINT)
    _wait_line(lines, "Press Ctrl-C again")
    watcher.send_signal(signal.SIGINT)
    assert watcher.wait(30) == 1
    said = _wait_line(lines, "cancelled")
    assert f"fetch of {running['ref']} cancelled" in said and ": ;" not in said, said  # no empty reason
    assert job(gamma, running["id"])["state"] == "cancelled"

    # Clients that went away and a clean stop under an active fetch are not errors.
    gamma.cli_json("fetch", "big@1", "--detach")
    wait_for(lambda: gamma.cli_json("jobs")[-1]["done_bytes"] > 0, what="the new fetch to get bytes")
    assert gamma.stop() == 0
    log = gamma.log.read_text()
    assert "level=ERROR" not in log and "Traceback" not in log, log


TRAIN_SPEC = """
name = "count"
[trigger]
dataset = "clicks"
[entry]
script = "train.py"
"""


def test_held_files_are_reused_and_training_starts_once_per_landing(make_daemon, tmp_path):
    source = tmp_path / "clicks"
    expected = make_dataset(source, files=4, rows=20_000)
    alpha = make_daemon("alpha")
    publish(alpha, source, "clicks")
    gamma = fetcher_of(make_daemon, alpha, "clicks")
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "train.py").write_text("print('trained')\n")
    (jobs / "count.toml").write_text(TRAIN_SPEC)
    gamma.cli("jobs", "add", str(jobs / "count.toml"))

    # A partial fetch, then the whole dataset: the first files are not fetched again.
    partial = gamma.cli_json("fetch", "clicks@1", "--files", "part-0*", "--timeout", "60")
    assert partial["state"] == "landed", partial
    assert landed_files(gamma.home / "datasets", "clicks", "1") == {"part-0.parquet": expected["part-0.parquet"]}
    output = gamma.cli("fetch", "clicks@1", "--timeout", "60")
    assert "landed" in output
    runs = gamma.cli_json("runs")  # one for the partial landing, one for the whole
    assert len(runs) == 2 and any(f"started training run {r['id']}" in output for r in runs), (output, runs)
    assert landed_files(gamma.home / "datasets", "clicks", "1") == expected

    # Landed already: nothing is fetched and its training does not start again...
    again = gamma.cli("fetch", "clicks@1", "--timeout", "60")
    assert "landed" in again and "training run" not in again
    assert len(gamma.cli_json("runs")) == 2
    # ...unless the fetch names a training job: that one starts, and only that one.
    named = gamma.cli_json("fetch", "clicks@1", "--train", "count", "--timeout", "60")
    assert named["state"] == "landed" and len(named["runs"]) == 1, named
    assert len(gamma.cli_json("runs")) == 3
    assert "landed before the cancel; nothing was cancelled" in gamma.cli("jobs", "cancel", named["id"])

    # A new version sharing four files: only the new one is swarmed; the rest are linked.
    (source / "extra.txt").write_text("one more file\n")
    publish(alpha, source, "clicks", version="2")
    wait_for(lambda: any(r["version"] == "2" for r in gamma.cli_json("search", "clicks")),
             what="gamma to see clicks@2")
    second = gamma.cli_json("fetch", "clicks@2", "--to", str(tmp_path / "v2"), "--timeout", "60")
    assert second["state"] == "landed" and second["reused_files"] == 4, second
    assert landed_files(tmp_path / "v2", "clicks", "2") == {**expected, "extra.txt": b"one more file\n"}

    # With the publisher gone, another store root lands from the held copy alone.
    alpha.stop()
    copy = gamma.cli_json("fetch", "clicks@1", "--to", str(tmp_path / "copy"), "--timeout", "60")
    assert copy["state"] == "landed" and copy["reused_files"] == 4, copy
    assert landed_files(tmp_path / "copy", "clicks", "1") == expected
