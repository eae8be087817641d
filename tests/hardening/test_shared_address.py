"""A flood from the address a real peer shares must not lock that peer's syncs out."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from p2pdata.devcluster import wait_for


class Flood:
    """Unsigned requests from 127.0.0.1 in a thread, well past the per-address rate limit."""

    def __init__(self, url: str) -> None:
        self.address = urlsplit(url)
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        connection = http.client.HTTPConnection(self.address.hostname, self.address.port, timeout=10)
        while not self.stop.is_set():
            try:
                connection.request("GET", "/v1/info")
                response = connection.getresponse()
                response.read()
                self.statuses.append(response.status)
            except (OSError, http.client.HTTPException):
                connection.close()
            time.sleep(0.02)  # pacing: about 50 requests a second
        connection.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)


def test_signed_syncs_of_a_known_cluster_have_their_own_budget(make_daemon: Any, tmp_path: Path) -> None:
    alpha = make_daemon("alpha", peer_api={"requests_per_minute": 60})
    gamma = make_daemon("gamma", discovery={"static_peers": [alpha.peer_url], "sync_interval": 1})
    gamma.cli("trust", "add", alpha.cluster_id)
    alpha.cli("trust", "add", gamma.cluster_id)  # alpha knows gamma
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.bin").write_bytes(name.encode())
    alpha.cli("publish", str(tmp_path / "first"), "--name", "first", "--version", "1")
    wait_for(lambda: gamma.cli_json("search", "first"), what="gamma to sync alpha")

    flood = Flood(alpha.peer_url)  # same address as gamma: 127.0.0.1
    try:
        wait_for(lambda: 429 in flood.statuses, timeout=30, what="the flood to exhaust the address's budget")
        alpha.cli("publish", str(tmp_path / "second"), "--name", "second", "--version", "1")
        wait_for(lambda: gamma.cli_json("search", "second"), timeout=30,
                 what="gamma's signed syncs to get through the flood")
        # The flood itself is still refused, but for the odd token the bucket refills (1/s).
        assert flood.statuses[-20:].count(429) >= 15, flood.statuses[-20:]
    finally:
        flood.close()
