"""Public datasets and a standard BitTorrent client (qBittorrent-nox from Debian), on loopback.

The client gets a dataset from a p2pdata daemon given only what `p2pdata torrent --magnet`
printed, and a p2pdata daemon fetches the same dataset from that client (`fetch --peer`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libtorrent as lt
import pytest
import requests

from p2pdata.devcluster import wait_for
from p2pdata.transfer.state import UNSAMPLED

pytestmark = pytest.mark.skipif(shutil.which("qbittorrent-nox") is None,
                                reason="qbittorrent-nox is not installed (scripts/setup.sh installs it)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class QBittorrent:
    """qbittorrent-nox in a private profile: loopback only, no DHT, LSD, PeX, UPnP or GeoIP."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.web_port, self.port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        config = root / "profile" / "qBittorrent" / "config"
        config.mkdir(parents=True)
        (config / "qBittorrent.conf").write_text(f"""[LegalNotice]
Accepted=true

[BitTorrent]
Session\\DHTEnabled=false
Session\\LSDEnabled=false
Session\\PeXEnabled=false
Session\\Port={self.port}
Session\\InterfaceAddress=127.0.0.1
Session\\QueueingSystemEnabled=false
Session\\AddTrackersEnabled=false

[Preferences]
Connection\\UPnP=false
Connection\\ResolvePeerCountries=false
WebUI\\Address=127.0.0.1
WebUI\\Port={self.web_port}
WebUI\\LocalHostAuth=false
WebUI\\CSRFProtection=false
WebUI\\HostHeaderValidation=false
""")
        self.log = (root / "qbittorrent.log").open("w")
        self.process = subprocess.Popen(
            ["qbittorrent-nox", f"--profile={root / 'profile'}", f"--webui-port={self.web_port}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "HOME": str(root)})
        wait_for(self._up, timeout=60, what="qbittorrent-nox's Web API")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"qbittorrent-nox exited: {(self.root / 'qbittorrent.log').read_text()}")
        try:
            return requests.get(f"{self.url}/api/v2/app/version", timeout=2).ok
        except requests.ConnectionError:
            return False

    def add(self, urls: str, save_path: Path) -> None:
        reply = requests.post(f"{self.url}/api/v2/torrents/add",
                              data={"urls": urls, "savepath": str(save_path)}, timeout=10)
        assert reply.ok and reply.text.strip() == "Ok.", reply.text

    def torrents(self) -> list[dict]:
        return requests.get(f"{self.url}/api/v2/torrents/info", timeout=10).json()

    def close(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


@pytest.fixture
def qbittorrent(tmp_path: Path) -> Iterator[QBittorrent]:
    client = QBittorrent(tmp_path / "qbt")
    yield client
    client.close()


def announce(peer_url: str, info_hash: str) -> bytes:
    """The compact peer list the daemon's tracker gives a fresh announcer."""
    reply = requests.get(f"{peer_url}/announce", params={
        "info_hash": bytes.fromhex(info_hash)[:20], "port": 9, "event": "stopped"}, timeout=10)
    return lt.bdecode(reply.content)[b"peers"]


def compact_peer(port: int) -> bytes:
    return bytes([127, 0, 0, 1]) + port.to_bytes(2, "big")


def write_files(folder: Path) -> dict[str, bytes]:
    files = {"a.bin": os.urandom(3 * 1024 * 1024 + 7), "sub/b.bin": b"x,y\n1,2\n", "c.bin": os.urandom(70_000)}
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return files


def test_standard_client_fetches_from_the_magnet_and_seeds_back_to_p2pdata(
        make_daemon, qbittorrent: QBittorrent, tmp_path: Path) -> None:
    source = tmp_path / "source"
    files = write_files(source)
    alpha = make_daemon("alpha")
    published = alpha.cli_json("publish", str(source), "--name", "clicks", "--version", "1")
    magnet = alpha.cli("torrent", "clicks", "--magnet").strip()
    exported = alpha.cli_json("torrent", "clicks", "--magnet")
    assert exported["info_hash"] == published["info_hash"] and exported["trackers"] == [
        f"{alpha.peer_url}/announce"]
    assert exported["torrent_url"] == published["torrent_url"] == (
        f"{alpha.peer_url}/v1/datasets/{published['id']}/torrent")
    assert alpha.cli_json("search", "clicks")[0]["torrent_url"] == published["torrent_url"]
    params = lt.parse_magnet_uri(magnet)
    assert params.trackers == [f"{alpha.peer_url}/announce"] and params.peers  # tr= and x.pe=

    # Direction 1: the client gets everything from the magnet alone.
    downloads = tmp_path / "qbt-downloads"
    qbittorrent.add(magnet, downloads)
    wait_for(lambda: [t for t in qbittorrent.torrents() if t["progress"] == 1], timeout=120,
             what="qBittorrent to finish the dataset")
    for path, data in files.items():
        got = (downloads / "clicks-1" / path).read_bytes()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), path
    # The client announced to the daemon's tracker, which now lists it to others.
    wait_for(lambda: compact_peer(qbittorrent.port) in announce(alpha.peer_url, published["info_hash"]),
             timeout=60, what="qBittorrent's announce to reach the tracker")
    # Seeding is visible: bytes sent per dataset and per peer (not a p2pdata one) in status...
    sent = wait_for(lambda: (t := alpha.cli_json("status")["transfer"])["uploaded"] >= len(b"".join(
        files.values())) and t, timeout=30, what="the sent bytes to be counted")
    [dataset] = sent["datasets"]
    assert dataset["dataset"] == f"{alpha.cluster_id}/clicks@1" and dataset["sent"] == sent["uploaded"]
    # Per peer from each connection's counter (a connection may end between two samples):
    # every byte is accounted; a connection's counter may run a few blocks ahead of the
    # torrent's (bytes queued to send), never behind.
    assert sum(peer["sent"] for peer in sent["peers"]) >= sent["uploaded"], sent["peers"]
    assert {peer["client"] for peer in sent["peers"]} <= {"qBittorrent/4.5.2", UNSAMPLED[1]}
    # ... and in /metrics.
    token = (alpha.home / "control.token").read_text().strip()
    metrics = requests.get(f"{alpha.runtime['control_url']}/metrics", timeout=10,
                           headers={"Authorization": f"Bearer {token}"}).text
    assert f'p2pdata_dataset_sent_bytes{{dataset="{alpha.cluster_id}/clicks@1"}}' in metrics
    assert "p2pdata_sent_bytes 0.0" not in metrics

    # Direction 2: a p2pdata daemon fetches from the client alone (the publisher is gone).
    beta = make_daemon("beta", discovery={"static_peers": [alpha.peer_url]})
    beta.cli("trust", "add", alpha.cluster_id)
    wait_for(lambda: beta.cli_json("search", "clicks"), what="beta to hold alpha's catalog")
    alpha.stop()
    job = beta.cli_json("fetch", "clicks@1", "--peer", f"127.0.0.1:{qbittorrent.port}",
                        "--timeout", "120")
    assert job["state"] == "landed", job
    landed = beta.home / "datasets" / "clicks" / "1"
    assert {path: (landed / path).read_bytes() for path in files} == files


def test_bad_peer_addresses_and_restricted_datasets_are_refused(make_daemon, tmp_path: Path) -> None:
    source = tmp_path / "source"
    write_files(source)
    alpha = make_daemon("alpha")
    alpha.cli_json("publish", str(source), "--name", "secret", "--version", "1",
                   "--access", "restricted")
    assert "restricted" in alpha.cli("torrent", "secret", "--magnet", ok=False)
    alpha.cli_json("publish", str(source), "--name", "open", "--version", "1")
    assert "HOST:PORT" in alpha.cli("fetch", "open@1", "--peer", "nowhere", ok=False)
    # Nothing about the restricted dataset at the tracker: an announce for it fails.
    [secret] = alpha.cli_json("search", "secret")
    reply = requests.get(f"{alpha.peer_url}/announce", params={
        "info_hash": bytes.fromhex(secret["info_hash"])[:20], "port": 7000}, timeout=10)
    assert lt.bdecode(reply.content)[b"failure reason"] == b"this tracker does not serve that torrent"
    [public] = alpha.cli_json("search", "open")
    assert announce(alpha.peer_url, public["info_hash"])  # the daemon's own seed, compact
