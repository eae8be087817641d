"""Helpers for restricted datasets' tests: signed requests and joining an SSL swarm by hand."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import libtorrent as lt
import requests

from p2pdata.catalog import Identity
from p2pdata.catalog.access import sign_request
from p2pdata.devcluster import wait_for
from p2pdata.transfer.certs import FFDHE2048_PEM, ClusterCA, new_tls_key, private_key_pem, public_key_der


def signed_get(url: str, path: str, identity: Identity, audience: str, *, now: int | None = None,
               headers: dict[str, str] | None = None) -> requests.Response:
    headers = headers or sign_request(identity, "GET", path, audience,
                                      now=int(time.time()) if now is None else now, url=url)
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


def swarm_certificate(daemon, manifest_id: str) -> tuple[Path, Path]:
    """The swarm certificate (and TLS key) `daemon` holds for a restricted dataset."""
    folder = daemon.home / "restricted"
    return folder / "certs" / f"{manifest_id}.pem", folder / "tls.key"


def one_full_sync(daemon, peer_url: str) -> None:
    """Wait until `daemon` has finished a whole sync round (catalog, listing, have) with `peer_url`.

    Rounds with one peer never overlap, so once a second round has started the first has ended.
    """
    def last_seen() -> float | None:
        return next((p["last_seen"] for p in daemon.cli_json("peers") if p["url"] == peer_url), None)

    first = wait_for(last_seen, what=f"a sync with {peer_url}")
    wait_for(lambda: (last_seen() or 0) > first, what=f"a second sync with {peer_url}")
