"""Publisher B re-signs A's manifest as its own: a bare name must not pick B's copy silently."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import requests

from p2pdata.catalog import sign_catalog
from p2pdata.catalog.catalog import read_verified
from p2pdata.devcluster import wait_for
from tests.hardening.attacker import FakePeer


def test_a_relabelled_copy_makes_the_bare_name_ambiguous(make_daemon: Any, tmp_path: Path) -> None:
    alpha = make_daemon("alpha")
    source = tmp_path / "clicks"
    source.mkdir()
    (source / "part-0.csv").write_text("user,clicks\n1,3\n")
    alpha.cli("publish", str(source), "--name", "clicks", "--version", "1", "--license", "CC-BY-4.0")
    original = read_verified(requests.get(alpha.peer_url + "/v1/catalog", timeout=10).content).datasets[0]

    relabeller = FakePeer()
    try:
        copy = dataclasses.replace(original, owner=relabeller.identity.cluster_id,
                                   description="our clicks", license="proprietary")
        relabeller.catalog = sign_catalog(relabeller.identity, [copy], version=1, now=int(time.time()),
                                          lifetime=3600)
        gamma = make_daemon("gamma", discovery={"static_peers": [alpha.peer_url, relabeller.url],
                                                "sync_interval": 1})
        gamma.cli("trust", "add", alpha.cluster_id)
        gamma.cli("trust", "add", relabeller.identity.cluster_id)
        rows = wait_for(lambda: len(found := gamma.cli_json("search", "clicks")) == 2 and found,
                        what="both copies in gamma's search")
        assert {r["publisher"]: r["license"] for r in rows} == {
            alpha.cluster_id: "CC-BY-4.0", relabeller.identity.cluster_id: "proprietary"}

        refused = gamma.cli("fetch", "clicks", ok=False)
        assert "published by 2 clusters" in refused
        for cluster in (alpha.cluster_id, relabeller.identity.cluster_id):
            assert f"{cluster}/clicks@1" in refused
        assert gamma.cli_json("jobs") == []

        job = gamma.cli_json("fetch", f"{alpha.cluster_id}/clicks@1", "--timeout", "60")
        assert job["state"] == "landed" and job["ref"] == f"{alpha.cluster_id}/clicks@1", job
        landed = gamma.cli_json("status")["landed"]
        assert [record["cluster"] for record in landed] == [alpha.cluster_id]

        # Asked for by its publisher, the copy lands apart, from the bytes already held.
        relabelled = f"{relabeller.identity.cluster_id}/clicks@1"
        job = gamma.cli_json("fetch", relabelled, "--timeout", "60")
        assert job["state"] == "landed" and job["ref"] == relabelled, job
        copy_path = gamma.home / "datasets" / relabeller.identity.cluster_id / "clicks" / "1" / "part-0.csv"
        assert copy_path.read_text() == "user,clicks\n1,3\n"
    finally:
        relabeller.close()


def test_two_publishers_of_one_name_land_apart(make_daemon: Any, tmp_path: Path) -> None:
    publishers = [make_daemon(name) for name in ("alpha", "beta")]
    for daemon in publishers:
        source = tmp_path / "sources" / daemon.home.name
        source.mkdir(parents=True)
        (source / "part-0.csv").write_text(f"publisher\n{daemon.home.name}\n")
        daemon.cli("publish", str(source), "--name", "clicks", "--version", "1")
    gamma = make_daemon("gamma", discovery={"static_peers": [d.peer_url for d in publishers],
                                            "sync_interval": 1})
    for daemon in publishers:
        gamma.cli("trust", "add", daemon.cluster_id)
    wait_for(lambda: len(gamma.cli_json("search", "clicks")) == 2, what="both publishers' clicks")
    for daemon in publishers:
        job = gamma.cli_json("fetch", f"{daemon.cluster_id}/clicks@1", "--timeout", "60")
        assert job["state"] == "landed", job
        landed = gamma.home / "datasets" / daemon.cluster_id / "clicks" / "1" / "part-0.csv"
        assert landed.read_text() == f"publisher\n{daemon.home.name}\n"
        assert job["uri"].endswith(f"/{daemon.cluster_id}/clicks/1"), job
