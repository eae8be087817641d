"""Hidden restricted datasets, found through the signed listing, and replays across an owner restart;
real daemons on loopback."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from p2pdata.catalog import Identity, decode
from p2pdata.devcluster import wait_for
from p2pdata.restricted import GRANTED_PATH
from tests.daemon.test_daemon import landed_files, make_dataset
from tests.restricted.helpers import one_full_sync, signed_get


def test_a_granted_cluster_finds_and_fetches_a_hidden_dataset_others_never_see(make_daemon, tmp_path):
    expected = make_dataset(tmp_path / "source", files=2, rows=5000)
    alpha = make_daemon("alpha", restricted={"show": "hidden"})
    beta = make_daemon("beta", discovery={"static_peers": [alpha.peer_url]})
    gamma = make_daemon("gamma", discovery={"static_peers": [alpha.peer_url]})
    published = alpha.cli_json("publish", str(tmp_path / "source"), "--name", "clicks", "--version", "1",
                               "--description", "secret click logs", "--access", "restricted",
                               "--allow", beta.cluster_id)
    for daemon in (beta, gamma):
        daemon.cli("trust", "add", alpha.cluster_id)

    # The granted cluster finds it, description and all (it is shown the full manifest) ...
    hits = wait_for(lambda: beta.cli_json("search", "secret logs"), what="beta to find the hidden dataset")
    assert [(h["id"], h["publisher"], h["access"]) for h in hits] == [
        (published["id"], alpha.cluster_id, "restricted")]
    # ... and fetches it.
    job = beta.cli_json("fetch", "clicks@1", "--timeout", "60")
    assert job["state"] == "landed", job
    assert landed_files(beta.home / "datasets", "clicks", "1") == expected

    # The other cluster holds alpha's catalog and has asked for its listing, and sees nothing.
    one_full_sync(gamma, alpha.peer_url)
    assert gamma.cli_json("search", "clicks") == [] and gamma.cli_json("search", "secret") == []
    refused = gamma.cli("fetch", "clicks@1", ok=False)
    assert "no dataset clicks@1" in refused
    # Asked directly, alpha answers gamma an empty listing, not an error that would tell.
    answer = signed_get(alpha.peer_url, GRANTED_PATH, Identity.load(gamma.home), alpha.cluster_id)
    assert answer.status_code == 200 and decode(answer.content, max_size=1024) == {"datasets": []}

    # The listing follows the grants: revoked, beta no longer finds it.
    alpha.cli("revoke", "clicks", beta.cluster_id)
    wait_for(lambda: not beta.cli_json("search", "clicks"), what="the revoked dataset to leave beta's search")


def test_a_request_replayed_after_the_owner_restarts_is_refused(make_daemon, tmp_path):
    make_dataset(tmp_path / "source", files=1, rows=100)
    alpha = make_daemon("alpha")
    grantee = Identity.generate()
    alpha.cli("publish", str(tmp_path / "source"), "--name", "clicks", "--version", "1",
              "--access", "restricted", "--allow", grantee.cluster_id)
    captured = signed_get(alpha.peer_url, GRANTED_PATH, grantee, alpha.cluster_id)
    assert captured.status_code == 200 and len(decode(captured.content, max_size=1 << 20)["datasets"]) == 1

    # Back on the same URL (requests are signed for it), well inside the request's 60 s window.
    peer_port = urlsplit(alpha.peer_url).port
    alpha.stop()
    config = alpha.home / "config.toml"
    config.write_text(config.read_text().replace("[peer_api]\nhost = \"127.0.0.1\"\nport = 0",
                                                 f"[peer_api]\nhost = \"127.0.0.1\"\nport = {peer_port}"))
    alpha.start()
    assert urlsplit(alpha.peer_url).port == peer_port
    replayed = requests.get(alpha.peer_url + GRANTED_PATH, headers=captured.request.headers, timeout=10)
    assert replayed.status_code == 401 and "replays nonce" in replayed.text
    assert signed_get(alpha.peer_url, GRANTED_PATH, grantee, alpha.cluster_id).status_code == 200
