"""Real daemons on loopback: discovery, catalog sync, search across peers, fetch to landed data."""

from __future__ import annotations

import asyncio
import getpass
import json
import signal
from pathlib import Path

import libtorrent as lt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from p2pdata.devcluster import wait_for
from p2pdata.hdfs import WebHdfsClient


def make_dataset(directory: Path, files: int = 4, rows: int = 20000) -> dict[str, bytes]:
    directory.mkdir(parents=True)
    for part in range(files):
        table = pa.table({"x": pa.array(range(part * rows, (part + 1) * rows)), "label": [part % 2] * rows})
        pq.write_table(table, directory / f"part-{part}.parquet", compression="none")
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def landed_files(root: Path, name: str, version: str) -> dict[str, bytes]:
    final = root / name / version
    return {p.name: p.read_bytes() for p in final.iterdir() if not p.name.startswith(".")}


def test_control_api_needs_the_token_and_stays_on_loopback(make_daemon):
    daemon = make_daemon("solo")
    control = daemon.runtime["control_url"]
    assert control.startswith("http://127.0.0.1:")
    assert requests.get(f"{control}/v1/status", timeout=5).status_code == 401
    bad = requests.get(f"{control}/v1/status", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert bad.status_code == 401
    token = (daemon.home / "control.token").read_text().strip()
    assert (daemon.home / "control.token").stat().st_mode & 0o777 == 0o600
    good = requests.get(f"{control}/v1/status", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert good.status_code == 200
    assert good.json()["cluster"]["id"] == daemon.cluster_id
    # The peer API is read-only.
    assert requests.post(f"{daemon.peer_url}/v1/catalog", timeout=5).status_code == 405


def test_a_second_daemon_on_the_same_home_is_refused(make_daemon):
    first = make_daemon("shared")
    from p2pdata.devcluster import DaemonProcess

    second = DaemonProcess(first.home, first.config)
    with pytest.raises(AssertionError, match="already running"):
        second.start(timeout=30)


def test_cli_says_clearly_when_no_daemon_runs(make_daemon):
    daemon = make_daemon("idle", start=False)
    output = daemon.cli("search", "x", ok=False)
    assert "no daemon" in output


def _publish(daemon, source: Path, name: str = "clicks", version: str = "1") -> dict:
    return daemon.cli_json("publish", str(source), "--name", name, "--version", version,
                           "--description", "click logs", "--tag", "tabular")


def test_static_peers_search_fetch_and_reseed(make_daemon, tmp_path):
    source = tmp_path / "source"
    expected = make_dataset(source)
    alpha = make_daemon("alpha")
    beta = make_daemon("beta")
    published = _publish(alpha, source)
    _publish(beta, source)
    # The torrent's root folder is NAME-VERSION, so one BitTorrent client can hold many datasets.
    reply = requests.get(f"{alpha.peer_url}/v1/datasets/{published['id']}/torrent", timeout=30)
    info = lt.torrent_info(reply.content)
    assert info.name() == "clicks-1"
    assert info.info_hashes().v2.to_bytes().hex() == published["info_hash"]
    gamma = make_daemon("gamma", discovery={"static_peers": [alpha.peer_url, beta.peer_url]})
    gamma.cli("trust", "add", alpha.cluster_id)
    gamma.cli("trust", "add", beta.cluster_id)

    results = wait_for(lambda: len(gamma.cli_json("search", "click")) == 2 and gamma.cli_json("search", "click"),
                       what="search to span both peers")
    assert {r["publisher"] for r in results} == {alpha.cluster_id, beta.cluster_id}
    assert gamma.cli_json("search", "click", "--publisher", alpha.cluster_id)[0]["publisher"] == alpha.cluster_id

    # Same files from both publishers, but who vouches for them is the user's choice.
    assert f"choose one of {min(alpha.cluster_id, beta.cluster_id)}/clicks@1" in gamma.cli(
        "fetch", "clicks@1", ok=False)
    job = gamma.cli_json("fetch", f"{alpha.cluster_id}/clicks@1", "--timeout", "60")
    assert job["state"] == "landed", job
    # Two publishers use the name: the landed path carries the one the user chose.
    assert landed_files(gamma.home / "datasets" / alpha.cluster_id, "clicks", "1") == expected
    assert not (gamma.home / "datasets" / "clicks").exists()

    # gamma now seeds what it fetched: once the publishers are gone, a fourth cluster fetches from gamma.
    delta = make_daemon("delta", discovery={"static_peers": [alpha.peer_url, gamma.peer_url]})
    delta.cli("trust", "add", alpha.cluster_id)
    wait_for(lambda: delta.cli_json("search", "click"), what="delta to hold alpha's catalog")
    # gamma itself is not trusted (it publishes nothing); its pieces are checked against alpha's manifest.
    wait_for(lambda: any(p["cluster_id"] == gamma.cluster_id for p in delta.cli_json("peers")), what="delta to sync gamma")
    alpha.stop()
    beta.stop()
    job = delta.cli_json("fetch", f"{alpha.cluster_id}/clicks@1", "--timeout", "60")
    assert job["state"] == "landed", job
    assert landed_files(delta.home / "datasets", "clicks", "1") == expected


def test_zeroconf_on_loopback_finds_peers(make_daemon):
    zeroconf = {"zeroconf": True, "interfaces": ["127.0.0.1"]}
    alpha = make_daemon("zc-alpha", discovery=zeroconf)
    beta = make_daemon("zc-beta", discovery=zeroconf)
    alpha.cli("trust", "add", beta.cluster_id)
    beta.cli("trust", "add", alpha.cluster_id)

    def sees(daemon, other) -> bool:
        return any(p["cluster_id"] == other.cluster_id and p["state"] == "healthy"
                   for p in daemon.cli_json("peers"))

    wait_for(lambda: sees(alpha, beta) and sees(beta, alpha), timeout=30, what="zeroconf discovery")
    beta.stop()
    wait_for(lambda: any(p["cluster_id"] == beta.cluster_id and p["state"] == "unreachable"
                         for p in alpha.cli_json("peers")), timeout=30, what="beta listed as unreachable")


def test_fetching_daemon_killed_mid_transfer_resumes_and_never_shows_a_partial_dataset(make_daemon, tmp_path):
    source = tmp_path / "source"
    expected = make_dataset(source, files=4, rows=400_000)  # about 26 MB
    alpha = make_daemon("alpha", transfer={"upload_limit": 4 * 1024 * 1024})
    _publish(alpha, source, name="big")
    gamma = make_daemon("gamma", discovery={"static_peers": [alpha.peer_url]})
    gamma.cli("trust", "add", alpha.cluster_id)
    wait_for(lambda: gamma.cli_json("search", "big"), what="gamma to hold alpha's catalog")
    final = gamma.home / "datasets" / "big" / "1"

    job = gamma.cli_json("fetch", "big@1", "--detach")
    wait_for(lambda: json.loads(gamma.cli("jobs", "show", job["id"], "--json"))["done_bytes"] > 3 * 1024 * 1024,
             what="a few MB to arrive")
    gamma.stop(signal.SIGKILL)
    assert not final.exists()

    gamma.start()
    landed = wait_for(lambda: (j := json.loads(gamma.cli("jobs", "show", job["id"], "--json")))["state"] == "landed" and j,
                      timeout=60, what="the resumed fetch to land")
    assert landed["uri"].startswith("file://")
    assert landed_files(gamma.home / "datasets", "big", "1") == expected
    assert not (gamma.home / "datasets" / ".incoming" / "big" / "1").exists()


@pytest.mark.hdfs
def test_fetch_lands_in_real_hdfs_with_the_chosen_tier(make_daemon, hdfs_cluster, tmp_path):
    source = tmp_path / "source"
    expected = make_dataset(source, files=3, rows=5000)
    alpha = make_daemon("alpha")
    _publish(alpha, source, name="tiered")
    root = f"/p2pdata-{tmp_path.name}"
    gamma = make_daemon(
        "gamma",
        discovery={"static_peers": [alpha.peer_url]},
        store={"kind": "hdfs", "webhdfs_url": hdfs_cluster.webhdfs_url, "root": root, "user": getpass.getuser(),
               "storagepolicy_command": hdfs_cluster.storagepolicy_command,
               "mover_command": hdfs_cluster.mover_command, "fsck_command": hdfs_cluster.fsck_command},
    )
    gamma.cli("trust", "add", alpha.cluster_id)
    wait_for(lambda: gamma.cli_json("search", "tiered"), what="gamma to hold alpha's catalog")

    job = gamma.cli_json("fetch", "tiered@1", "--tier", "ssd", "--timeout", "60")
    assert job["state"] == "landed", job

    async def check() -> None:
        async with WebHdfsClient(hdfs_cluster.webhdfs_url, user=getpass.getuser()) as client:
            final = f"{root}/tiered/1"
            assert await client.get_storage_policy(final) == "ALL_SSD"
            for name, data in expected.items():
                assert await client.read(f"{final}/{name}") == data
            assert not await client.exists(f"{root}/.incoming/tiered/1")

    asyncio.run(check())
    assert any(hdfs_cluster.block_files("ssd"))

    # Later the data cools down: the daemon re-tiers it and the mover follows.
    report = gamma.cli_json("tier", "tiered@1", "cold", "--move")
    assert (report["policy"], report["moved"], report["satisfied"]) == ("COLD", True, True), report
    assert set(report["placement"]) == {"ARCHIVE"}
