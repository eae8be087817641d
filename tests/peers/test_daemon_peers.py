"""Peers as real daemons see them: health across a restart, removal, moved peers, https peers."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from p2pdata.catalog import Identity, encode_public_key, sign_catalog
from p2pdata.devcluster import wait_for
from tests.daemon.test_daemon import landed_files, make_dataset
from tests.peers.tls import TestCA
from tests.restricted.helpers import one_full_sync


def peer_rows(daemon: Any) -> dict[str, dict[str, Any]]:
    return {row["url"]: row for row in daemon.cli_json("peers")}


def test_peer_health_survives_a_restart(make_daemon) -> None:
    alpha = make_daemon("alpha")
    beta = make_daemon("beta")  # never trusted: its catalog is refused
    down_url, refused_url = alpha.peer_url, beta.peer_url
    gamma = make_daemon("gamma", discovery={"static_peers": [down_url, refused_url]})
    gamma.cli("trust", "add", alpha.cluster_id)
    wait_for(lambda: peer_rows(gamma)[down_url]["state"] == "healthy", what="alpha healthy")
    alpha.stop()

    def failing() -> dict[str, dict[str, Any]] | None:
        rows = peer_rows(gamma)
        ok = rows[down_url]["state"] == "unreachable" and rows[refused_url]["state"] == "rejected"
        return rows if ok else None

    before = wait_for(failing, what="alpha unreachable and beta rejected")
    gamma.stop(signal.SIGKILL)  # a crash: only what was saved as it happened survives
    gamma.start()

    after = peer_rows(gamma)
    down, refused = after[down_url], after[refused_url]
    assert down["state"] == "unreachable" and down["cluster_id"] == alpha.cluster_id
    assert down["last_seen"] == before[down_url]["last_seen"] is not None
    assert down["failures"] >= before[down_url]["failures"] >= 1
    assert "cannot connect" in down["error"]
    assert refused["state"] == "rejected" and "UntrustedKey" in refused["error"]
    assert refused["failures"] >= before[refused_url]["failures"] >= 1


def test_removed_or_moved_peer_is_no_source(make_daemon, tmp_path: Path) -> None:
    source = tmp_path / "source"
    expected = make_dataset(source, files=2, rows=2000)
    alpha = make_daemon("alpha")
    gamma = make_daemon("gamma")
    alpha.cli_json("publish", str(source), "--name", "clicks", "--version", "1",
                   "--access", "restricted", "--allow", gamma.cluster_id)
    gamma.cli("trust", "add", alpha.cluster_id)
    first_url = alpha.peer_url
    gamma.cli("peers", "add", first_url)
    one_full_sync(gamma, first_url)

    # Removed: neither listed nor asked for the dataset it owns, though it is still up.
    gamma.cli("peers", "remove", first_url)
    assert first_url not in peer_rows(gamma)
    job = json.loads(gamma.cli("fetch", "clicks@1", "--timeout", "60", "--json", ok=False))  # exits 1
    assert job["state"] == "failed" and "not among our reachable peers" in job["error"], job

    # Added again, then alpha moves (restarts on another port): the old URL is dead, and a
    # fetch goes to the new one.
    gamma.cli("peers", "add", first_url)
    one_full_sync(gamma, first_url)
    alpha.stop()
    alpha.start()
    moved_url = alpha.peer_url
    assert moved_url != first_url
    gamma.cli("peers", "add", moved_url)
    one_full_sync(gamma, moved_url)
    wait_for(lambda: peer_rows(gamma)[first_url]["state"] == "unreachable", what="the old URL to fail")
    job = gamma.cli_json("fetch", "clicks@1", "--timeout", "60")
    assert job["state"] == "landed", job
    assert landed_files(gamma.home / "datasets", "clicks", "1") == expected


class GatedPeer:
    """A peer API in a thread whose catalog answer waits until the test opens the gate."""

    def __init__(self) -> None:
        self.identity = Identity.generate()
        self.asked = threading.Event()
        self.gate = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.url = ""
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        assert ready.wait(10), "the gated peer did not start"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/v1/info", self._info)
        app.router.add_get("/v1/catalog", self._catalog)
        app.router.add_get("/v1/have", self._have)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", 0).start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        ready.set()
        self.loop.run_forever()

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response({
            "cluster_id": self.identity.cluster_id, "public_key": encode_public_key(self.identity.public_key),
            "name": "gated", "software_version": "0", "peer_api": self.url, "torrent_endpoints": [],
        })

    async def _have(self, request: web.Request) -> web.Response:
        return web.json_response({"datasets": []})

    async def _catalog(self, request: web.Request) -> web.Response:
        self.asked.set()
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 30)
        return web.Response(body=sign_catalog(self.identity, [], version=1, now=int(time.time()),
                                              lifetime=3600))

    def close(self) -> None:
        self.gate.set()
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def gated_peer() -> Iterator[GatedPeer]:
    peer = GatedPeer()
    yield peer
    peer.close()


def test_peer_removed_mid_sync_stays_removed_and_syncing_goes_on(make_daemon, gated_peer) -> None:
    gamma = make_daemon("gamma")
    gamma.cli("peers", "add", gated_peer.url)
    assert gated_peer.asked.wait(30), "gamma never asked the peer for its catalog"
    gamma.cli("peers", "remove", gated_peer.url)
    gated_peer.gate.set()  # the answer arrives after the removal

    alpha = make_daemon("alpha")
    gamma.cli("peers", "add", alpha.peer_url)
    wait_for(lambda: peer_rows(gamma).get(alpha.peer_url, {}).get("last_seen"),  # untrusted, but seen
             what="the next peer to be synced")
    assert gated_peer.url not in peer_rows(gamma)
    assert "Traceback" not in gamma.log.read_text()  # an ordinary event, not an error


def test_https_peer_with_a_private_ca(make_daemon, tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "pki")
    leaf = ca.issue("alpha")
    alpha = make_daemon("alpha", peer_api={"tls_cert": str(leaf.cert), "tls_key": str(leaf.key)})
    assert alpha.peer_url.startswith("https://127.0.0.1:")
    source = tmp_path / "source"
    make_dataset(source, files=1, rows=100)
    alpha.cli_json("publish", str(source), "--name", "clicks", "--version", "1")

    # Trusting the CA (a file relative to the home): alpha is a healthy peer.
    gamma = make_daemon("gamma", start=False,
                        discovery={"static_peers": [alpha.peer_url], "peer_ca_file": "peers-ca.pem"})
    shutil.copy(ca.cert, gamma.home / "peers-ca.pem")
    gamma.start()
    gamma.cli("trust", "add", alpha.cluster_id)
    assert wait_for(lambda: gamma.cli_json("search", "clicks"), what="alpha's catalog over https")
    assert peer_rows(gamma)[alpha.peer_url]["state"] == "healthy"

    # Without it: unreachable, and the health says why and what to set.
    delta = make_daemon("delta", discovery={"static_peers": [alpha.peer_url]})
    row = wait_for(lambda: peer_rows(delta)[alpha.peer_url]["error"] and peer_rows(delta)[alpha.peer_url],
                   what="delta's failed sync")
    assert row["state"] == "unreachable"
    assert "TLS certificate not trusted" in row["error"] and "peer_ca_file" in row["error"]

    # A CA file that is not there stops the daemon at start, naming file and key.
    broken = make_daemon("broken", start=False, discovery={"peer_ca_file": "missing.pem"})
    with pytest.raises(AssertionError, match=r"missing\.pem.*peer_ca_file"):
        broken.start()
