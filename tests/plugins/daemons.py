"""Real p2pdata daemons in temporary homes, as separate processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pdata.devcluster import DaemonProcess, daemon_config


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Any]:
    """`make_daemon(name, **config_sections)` → an initialised, started DaemonProcess."""
    started: list[DaemonProcess] = []

    def make(name: str, start: bool = True, **sections: dict[str, Any]) -> DaemonProcess:
        home = tmp_path / name
        home.mkdir()
        daemon = DaemonProcess(home, daemon_config(**sections))
        daemon.init(name)
        started.append(daemon)
        return daemon.start() if start else daemon

    yield make
    for daemon in started:
        daemon.stop(timeout=15)
