"""A restricted dataset outlives its owner's copy: granted clusters fetch it from a re-seeder,
while the owner, still the only one who hands out manifests and certificates, no longer seeds.
Real daemons and libtorrent on loopback."""

from __future__ import annotations

import base64
import shutil

import libtorrent as lt
import requests

from p2pdata.catalog import Identity
from p2pdata.devcluster import wait_for
from p2pdata.transfer.certs import new_tls_key, public_key_der
from tests.daemon.test_daemon import landed_files, make_dataset
from tests.restricted.helpers import (
    one_full_sync,
    own_root_certificate,
    signed_get,
    ssl_endpoint,
    swarm_admits,
    swarm_certificate,
    tls_without_certificate_refused,
)


def test_a_granted_cluster_fetches_from_the_reseeder_and_a_stranger_is_refused_there(make_daemon, tmp_path):
    source = tmp_path / "source"
    expected = make_dataset(source, files=3, rows=20000)
    a = make_daemon("a", restricted={"show": "hidden"})
    b = make_daemon("b", discovery={"static_peers": [a.peer_url]})
    published = a.cli_json("publish", str(source), "--name", "clicks", "--version", "1",
                           "--access", "restricted", "--allow", b.cluster_id)
    full_id = published["id"]

    # B, granted, fetches from A, and re-seeds.
    b.cli("trust", "add", a.cluster_id)
    wait_for(lambda: b.cli_json("search", "clicks"), what="B to find the dataset")
    job = b.cli_json("fetch", "clicks@1", "--timeout", "60")
    assert job["state"] == "landed", job
    # B names the (hidden) dataset only to who names it: not in its public listing.
    assert full_id not in requests.get(f"{b.peer_url}/v1/have", timeout=10).json()["datasets"]
    asked = requests.get(f"{b.peer_url}/v1/have", params={"ask": f"{'0' * 64},{full_id}"}, timeout=10)
    assert asked.json()["datasets"] == [full_id]
    refused = requests.get(f"{b.peer_url}/v1/have", params={"ask": "nope"}, timeout=10)
    assert refused.status_code == 400
    assert "an id of 4 characters" in refused.text and "nope" not in refused.text  # not echoed

    # A's copy goes away: restarted without its source directory, A seeds nothing, but its
    # peer API still answers for the dataset (only the owner hands out manifests and certificates).
    a.stop()
    shutil.rmtree(source)
    a.start()
    c = make_daemon("c", discovery={"static_peers": [a.peer_url, b.peer_url]})
    d = make_daemon("d", discovery={"static_peers": [a.peer_url, b.peer_url]})
    a.cli("grant", "clicks", c.cluster_id)
    for daemon in (c, d):
        daemon.cli("trust", "add", a.cluster_id)
    ids = {daemon: Identity.load(daemon.home) for daemon in (c, d)}
    torrent_path = f"/v1/restricted/{full_id}/torrent"
    torrent = signed_get(a.peer_url, torrent_path, ids[c], a.cluster_id).content
    b_cert = swarm_certificate(b, full_id)
    assert not swarm_admits(torrent, ssl_endpoint(a), b_cert, tmp_path / "at-a"), "A still seeds"

    # C, granted, fetches it all: from B, the only cluster seeding it.
    wait_for(lambda: c.cli_json("search", "clicks"), what="C to find the dataset")
    job = c.cli_json("fetch", "clicks@1", "--timeout", "60")
    assert job["state"] == "landed", job
    assert landed_files(c.home / "datasets", "clicks", "1") == expected
    assert not swarm_admits(torrent, ssl_endpoint(a), b_cert, tmp_path / "at-a-after"), "A seeds again"

    # D, not granted, never sees it, gets no certificate from A or B, and B's swarm refuses it,
    # with no certificate or with one of its own making (even holding the torrent).
    one_full_sync(d, a.peer_url)
    assert d.cli_json("search", "clicks") == []
    key = base64.urlsafe_b64encode(public_key_der(new_tls_key())).decode().rstrip("=")
    certificate_path = f"/v1/restricted/{full_id}/certificate?key={key}"
    for owner in (a, b):
        assert signed_get(owner.peer_url, certificate_path, ids[d], owner.cluster_id).status_code == 403
    info = lt.torrent_info(torrent)
    assert tls_without_certificate_refused(ssl_endpoint(b), info)
    stranger = own_root_certificate(d.home, d.cluster_id, info.name(), tmp_path)
    assert not swarm_admits(torrent, ssl_endpoint(b), stranger, tmp_path / "d-at-b")
