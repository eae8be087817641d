"""Local p2pdata daemons as separate processes in their own homes: for the demo and the tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from p2pdata.cli import main as cli_main


def wait_for(condition: Any, timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _toml_value(value: Any) -> str:
    return json.dumps(value)  # JSON strings, numbers, booleans and lists are valid TOML values


class DaemonProcess:
    def __init__(self, home: Path, config: dict[str, dict[str, Any]]) -> None:
        self.home = home
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home / "daemon.log"

    def init(self, name: str) -> None:
        self.cli("init", "--name", name)
        lines = []
        self.config.setdefault("cluster", {}).setdefault("name", name)
        for section, values in self.config.items():
            lines.append(f"[{section}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        (self.home / "config.toml").write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        (self.home / "daemon.json").unlink(missing_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "p2pdata", "--home", str(self.home), "daemon"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.log.read_text()}")
            return (self.home / "daemon.json").exists()

        wait_for(ready, timeout, what=f"daemon in {self.home} to start")
        return self

    @property
    def runtime(self) -> dict[str, Any]:
        return json.loads((self.home / "daemon.json").read_text())

    @property
    def cluster_id(self) -> str:
        return json.loads(self.cli("id", "--json"))["cluster_id"]

    @property
    def peer_url(self) -> str:
        return self.runtime["peer_url"]

    def cli(self, *args: str, ok: bool = True) -> str:
        """Run a p2pdata command against this home, in this process, and return its output
        (stdout and stderr interleaved, as a terminal shows them)."""
        return self._invoke(args, ok).output

    def _invoke(self, args: tuple[str, ...], ok: bool) -> Result:
        # In a thread of its own: the CLI runs its own event loop, and the caller may be inside one.
        with ThreadPoolExecutor(1) as thread:
            invoke = partial(CliRunner().invoke, cli_main, ["--home", str(self.home), *args], catch_exceptions=False)
            result = thread.submit(invoke).result()
        if ok and result.exit_code != 0:
            raise AssertionError(f"p2pdata {' '.join(args)} exited {result.exit_code}: {result.output}")
        return result

    def cli_shown(self, *args: str) -> int:
        """Run a p2pdata command as a child process writing to our terminal (progress bars)."""
        return subprocess.call([sys.executable, "-m", "p2pdata", "--home", str(self.home), *args])

    def cli_json(self, *args: str) -> Any:
        # stdout alone: a warning on stderr (say, from garbage collection) is not part of the JSON
        return json.loads(self._invoke((*args, "--json"), True).stdout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        os.killpg(self.process.pid, sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout)


def daemon_config(**overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Loopback, port 0 everywhere, quick sync; sections in `overrides` are merged in."""
    config: dict[str, dict[str, Any]] = {
        "peer_api": {"host": "127.0.0.1", "port": 0},
        "control": {"host": "127.0.0.1", "port": 0},
        "discovery": {"zeroconf": False, "interfaces": ["127.0.0.1"], "sync_interval": 2},
        "transfer": {"listen": ["127.0.0.1:0"]},
    }
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    return config
