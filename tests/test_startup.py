"""Start-up errors say what to do, in one line, not a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def _start(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2pdata", "--home", str(home), *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("section", ["peer_api", "control"])
def test_a_taken_port_names_the_key_to_change(make_daemon: Any, section: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = make_daemon("second", start=False, **{section: {"port": port}})
        result = _start(daemon.home, "daemon")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert f"127.0.0.1:{port}" in output and f"set {section}.port" in output and "config.toml" in output


def test_a_mistyped_home_says_it_does_not_exist(tmp_path: Path) -> None:
    result = _start(tmp_path / "hmoe", "daemon")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"p2pdata home {tmp_path / 'hmoe'} does not exist" in result.stderr
    assert "init" in result.stderr


def test_an_unknown_default_tier_is_refused_at_start(make_daemon: Any) -> None:
    # Not by every fetch that would land under it, each suggesting a retry that fails alike.
    daemon = make_daemon("tiered", start=False, store={"default_tier": "warmish"})
    result = _start(daemon.home, "daemon")
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert "store.default_tier: unknown tier 'warmish': use one of" in output, output
