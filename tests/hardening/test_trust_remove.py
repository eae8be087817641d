"""`trust remove` forgets the publisher's datasets at once, not when its catalog expires."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from p2pdata.devcluster import wait_for


def test_removed_publisher_is_forgotten_at_once(make_daemon: Any, tmp_path: Path) -> None:
    alpha = make_daemon("alpha")
    (tmp_path / "clicks").mkdir()
    (tmp_path / "clicks" / "a.bin").write_bytes(b"clicks")
    alpha.cli("publish", str(tmp_path / "clicks"), "--name", "clicks", "--version", "1")
    gamma = make_daemon("gamma", discovery={"static_peers": [alpha.peer_url], "sync_interval": 1})
    gamma.cli("trust", "add", alpha.cluster_id)
    wait_for(lambda: gamma.cli_json("search", "clicks"), what="gamma to hold alpha's catalog")

    gamma.cli("trust", "remove", alpha.cluster_id)
    assert gamma.cli_json("search", "clicks") == []
    output = gamma.cli("fetch", "clicks", "--detach", ok=False)
    assert "no dataset clicks" in output, output

    # Trusted again: the catalog comes back on the next sync (not a 304 to a forgotten copy).
    gamma.cli("trust", "add", alpha.cluster_id)
    wait_for(lambda: gamma.cli_json("search", "clicks"), what="alpha's catalog to come back")
