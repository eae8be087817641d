"""Restricted datasets with real daemons on loopback: every door, for granted and other clusters."""

from __future__ import annotations

import base64
import socket
import ssl
import time
from pathlib import Path
from types import SimpleNamespace

import libtorrent as lt
import pytest
import requests

from p2pdata.catalog import Identity
from p2pdata.catalog.access import H_SIGNATURE, sign_request
from p2pdata.devcluster import wait_for
from p2pdata.restricted import torrent_name
from p2pdata.transfer.certs import FFDHE2048_PEM, ClusterCA, new_tls_key, private_key_pem, public_key_der
from tests.daemon.test_daemon import landed_files, make_dataset

LIFETIME = 6  # seconds a granted cluster's swarm certificate lives: revocation bites after this


def signed_get(url: str, path: str, identity: Identity, audience: str, *, now: int | None = None,
               headers: dict[str, str] | None = None) -> requests.Response:
    headers = headers or sign_request(identity, "GET", path, audience,
                                      now=int(time.time()) if now is None else now)
    return requests.get(url + path, headers=headers, timeout=10)


def swarm_admits(torrent: bytes, endpoint: tuple[str, int], certificate: tuple[Path, ...],
                 save: Path, timeout: float = 20.0) -> bool:
    """Join `torrent`'s swarm at `endpoint` from a fresh libtorrent session: True if data flows."""
    session = lt.session({
        "listen_interfaces": "127.0.0.1:0,127.0.0.1:0s",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "alert_mask": lt.alert_category.all,
        "allow_multiple_connections_per_ip": True,
    })
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    save.mkdir(parents=True)
    params.save_path = str(save)
    handle = session.add_torrent(params)
    if certificate is not None:
        dh_params = save / "dhparams.pem"
        dh_params.write_bytes(FFDHE2048_PEM)
        handle.set_ssl_certificate(str(certificate[0]), str(certificate[1]), str(dh_params))
    handle.connect_peer(endpoint)
    deadline = time.monotonic() + timeout
    seen = []
    try:
        while time.monotonic() < deadline:
            if handle.status().total_payload_download > 0:
                return True
            for alert in session.pop_alerts():
                seen.append(alert.message())
                if isinstance(alert, lt.peer_error_alert | lt.peer_disconnected_alert):
                    return False
            session.wait_for_alert(100)
        raise AssertionError(f"neither admitted nor refused by {endpoint} in {timeout} s" + "\n".join(seen[-60:]))
    finally:
        session.remove_torrent(handle)


def tls_without_certificate_refused(endpoint: tuple[str, int], info: lt.torrent_info) -> bool:
    """libtorrent will not even dial an SSL torrent without a certificate; a raw TLS client can."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # libtorrent picks the torrent by SNI: the info hash in hex.
    name = info.info_hashes().get_best().to_bytes().hex()
    try:
        with socket.create_connection(endpoint, timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            tls.sendall(b"\x13BitTorrent protocol")
            return tls.recv(1) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def ssl_endpoint(daemon) -> tuple[str, int]:
    host, port = requests.get(f"{daemon.peer_url}/v1/info", timeout=10).json()["ssl_torrent_endpoints"][0]
    return host, port


def own_root_certificate(home: Path, cluster_id: str, name: str, tmp: Path) -> tuple[Path, Path]:
    """A certificate for the right torrent name, but from the stranger's own CA."""
    ca = ClusterCA.load_or_create(home / "restricted", cluster_id, int(time.time()))
    key = new_tls_key()
    cert, key_file = tmp / "stranger.pem", tmp / "stranger.key"
    cert.write_bytes(ca.issue(cluster_id, public_key_der(key), name, now=int(time.time()), lifetime=600))
    key_file.write_bytes(private_key_pem(key))
    return cert, key_file


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

    # The re-seeder advertises the full manifest id, so other granted clusters find it.
    assert full_id in requests.get(f"{beta.peer_url}/v1/have", timeout=10).json()["datasets"]

    # The non-granted cluster is refused at each door.
    job = gamma.cli_json("fetch", "clicks@1", "--timeout", "60")
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
    beta_cert = (beta.home / "restricted" / "certs" / f"{full_id}.pem", beta.home / "restricted" / "tls.key")
    stranger = own_root_certificate(gamma.home, gamma.cluster_id, name, tmp_path)
    for n, daemon in enumerate((alpha, beta)):
        endpoint = ssl_endpoint(daemon)
        assert tls_without_certificate_refused(endpoint, lt.torrent_info(torrent))
        assert not swarm_admits(torrent, endpoint, stranger, tmp_path / f"swarm-stranger{n}")
    assert swarm_admits(torrent, ssl_endpoint(alpha), beta_cert, tmp_path / "swarm-beta")
    # The re-seeder does serve a certificate from the owner's root (here the owner's own).
    alpha_cert = (alpha.home / "restricted" / "certs" / f"{full_id}.pem", alpha.home / "restricted" / "tls.key")
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
