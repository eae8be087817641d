"""Restricted datasets with real daemons on loopback: every door, for granted and other clusters."""

from __future__ import annotations

import base64
import json
import time
from types import SimpleNamespace

import libtorrent as lt
import pytest
import requests

from p2pdata.catalog import Identity
from p2pdata.catalog.access import H_SIGNATURE, sign_request
from p2pdata.devcluster import wait_for
from p2pdata.restricted import torrent_name
from p2pdata.transfer.certs import new_tls_key, public_key_der
from tests.daemon.test_daemon import landed_files, make_dataset
from tests.restricted.helpers import (
    own_root_certificate,
    signed_get,
    ssl_endpoint,
    swarm_admits,
    swarm_certificate,
    tls_without_certificate_refused,
)

LIFETIME = 6  # seconds a granted cluster's swarm certificate lives: revocation bites after this


@pytest.fixture
def clusters(make_daemon, tmp_path):
    """alpha owns `clicks`, restricted to beta; gamma is not granted; both trust alpha."""
    source = tmp_path / "source"
    expected = make_dataset(source, files=3, rows=20000)
    alpha = make_daemon("alpha", restricted={"certificate_lifetime": LIFETIME})
    beta = make_daemon("beta", discovery={"static_peers": [alpha.peer_url]})
    gamma = make_daemon("gamma", discovery={"static_peers": [alpha.peer_url]})
    published = alpha.cli_json("publish", str(source), "--name", "clicks", "--version", "1",
                               "--description", "secret click logs", "--access", "restricted",
                               "--allow", beta.cluster_id)
    for daemon in (beta, gamma):
        daemon.cli("trust", "add", alpha.cluster_id)
        wait_for(lambda d=daemon: d.cli_json("search", "clicks"), what="the stub in search")
    return alpha, beta, gamma, published, expected


def test_restricted_dataset_every_door(clusters, make_daemon, tmp_path):
    alpha, beta, gamma, published, expected = clusters
    full_id = published["id"]
    identities = {d: Identity.load(d.home) for d in (alpha, beta, gamma)}

    # The public catalog shows a stub: name, publisher, size; no files, description or grantees.
    stub = gamma.cli_json("search", "clicks")[0]
    assert (stub["name"], stub["publisher"], stub["total_size"]) == (
        "clicks", alpha.cluster_id, sum(len(v) for v in expected.values()))
    assert stub["access"] == "restricted" and stub["description"] == ""
    assert [f["path"] for f in stub["files"]] == ["restricted"] and stub["id"] != full_id

    # The granted cluster fetches.
    job = beta.cli_json("fetch", "clicks@1", "--timeout", "60")
    assert job["state"] == "landed", job
    assert landed_files(beta.home / "datasets", "clicks", "1") == expected

    # The re-seeder names the full manifest id to who asks for it (granted clusters know it),
    # not in its public listing.
    have = f"{beta.peer_url}/v1/have"
    assert full_id not in requests.get(have, timeout=10).json()["datasets"]
    assert requests.get(have, params={"ask": full_id}, timeout=10).json()["datasets"] == [full_id]

    # The non-granted cluster is refused at each door.
    job = json.loads(gamma.cli("fetch", "clicks@1", "--timeout", "60", "--json", ok=False))
    assert job["state"] == "failed" and "403" in job["error"], job
    manifest_path = "/v1/restricted/clicks/1/manifest"
    torrent_path = f"/v1/restricted/{full_id}/torrent"
    key = base64.urlsafe_b64encode(public_key_der(new_tls_key())).decode().rstrip("=")
    certificate_path = f"/v1/restricted/{full_id}/certificate?key={key}"
    for path in (manifest_path, torrent_path, certificate_path):
        assert signed_get(alpha.peer_url, path, identities[gamma], alpha.cluster_id).status_code == 403
        assert requests.get(alpha.peer_url + path, timeout=10).status_code == 401  # unsigned
    for daemon in (alpha, beta):  # the plain torrent route never serves a restricted torrent
        assert requests.get(f"{daemon.peer_url}/v1/datasets/{full_id}/torrent", timeout=10).status_code == 404
    # A re-seeder hands out nothing, not even to a granted cluster: only the owner decides.
    assert signed_get(beta.peer_url, manifest_path, identities[beta], beta.cluster_id).status_code == 403

    # The granted cluster's doors, and forged, expired and replayed requests.
    good = signed_get(alpha.peer_url, torrent_path, identities[beta], alpha.cluster_id)
    assert good.status_code == 200
    torrent = good.content
    assert signed_get(alpha.peer_url, torrent_path, identities[beta], alpha.cluster_id,
                      headers=good.request.headers).status_code == 401  # replayed
    old = signed_get(alpha.peer_url, torrent_path, identities[beta], alpha.cluster_id,
                     now=int(time.time()) - 3600)
    assert old.status_code == 401 and "old" in old.text  # expired
    forged = sign_request(identities[beta], "GET", torrent_path, alpha.cluster_id, now=int(time.time()))
    forged[H_SIGNATURE] = sign_request(identities[gamma], "GET", torrent_path, alpha.cluster_id,
                                       now=int(time.time()))[H_SIGNATURE]
    assert signed_get(alpha.peer_url, torrent_path, identities[beta], alpha.cluster_id,
                      headers=forged).status_code == 401
    other_audience = signed_get(alpha.peer_url, torrent_path, identities[beta], gamma.cluster_id)
    assert other_audience.status_code == 401  # signed for another owner

    # The swarm: owner and re-seeder admit beta's certificate and refuse everyone else.
    name = lt.torrent_info(torrent).name()
    assert name == torrent_name(SimpleNamespace(owner=alpha.cluster_id, name="clicks", version="1"))
    beta_cert = swarm_certificate(beta, full_id)
    stranger = own_root_certificate(gamma.home, gamma.cluster_id, name, tmp_path)
    for n, daemon in enumerate((alpha, beta)):
        endpoint = ssl_endpoint(daemon)
        assert tls_without_certificate_refused(endpoint, lt.torrent_info(torrent))
        assert not swarm_admits(torrent, endpoint, stranger, tmp_path / f"swarm-stranger{n}")
    assert swarm_admits(torrent, ssl_endpoint(alpha), beta_cert, tmp_path / "swarm-beta")
    # The re-seeder does serve a certificate from the owner's root (here the owner's own).
    alpha_cert = swarm_certificate(alpha, full_id)
    assert swarm_admits(torrent, ssl_endpoint(beta), alpha_cert, tmp_path / "swarm-alpha-at-beta")

    # Revocation: no new manifest or certificate at once; no new swarm connection once
    # beta's certificate lapses (renewal is refused).
    alpha.cli("revoke", "clicks", beta.cluster_id)
    assert signed_get(alpha.peer_url, manifest_path, identities[beta], alpha.cluster_id).status_code == 403
    assert signed_get(alpha.peer_url, certificate_path, identities[beta], alpha.cluster_id).status_code == 403
    attempt = iter(range(1000))
    wait_for(lambda: not swarm_admits(torrent, ssl_endpoint(alpha), beta_cert,
                                      tmp_path / f"swarm-revoked{next(attempt)}"),
             timeout=LIFETIME + 30, interval=0.5, what="beta's certificate to lapse")
    # A grant again lets beta back in.
    alpha.cli("grant", "clicks", beta.cluster_id)
    assert signed_get(alpha.peer_url, manifest_path, identities[beta], alpha.cluster_id).status_code == 200
