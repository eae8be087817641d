"""Local attack surface: who else on the machine or the network reaches the daemon's state."""

from __future__ import annotations

import os
import re
import stat

import pytest

from tests.peers.tls import TestCA


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_home_is_private_and_an_old_open_home_is_fixed_at_start(make_daemon) -> None:
    daemon = make_daemon("alpha", start=False)
    assert _mode(daemon.home) == 0o700  # `init` made it private, although the fixture made it 0755
    assert _mode(daemon.home / "state.db") == 0o600
    # A home left by an older version: readable by every local user.
    os.chmod(daemon.home, 0o755)
    os.chmod(daemon.home / "state.db", 0o644)
    daemon.start()
    assert _mode(daemon.home) == 0o700
    for name in ("state.db", "state.db-wal", "control.token"):
        assert _mode(daemon.home / name) == 0o600, name


def test_control_api_off_loopback_needs_tls(make_daemon, tmp_path) -> None:
    exposed = make_daemon("exposed", start=False, control={"host": "0.0.0.0"})
    with pytest.raises(AssertionError, match=re.escape("control.host: '0.0.0.0' is not a loopback address")):
        exposed.start()

    leaf = TestCA(tmp_path / "ca").issue("control")
    with_tls = make_daemon("tls", start=False, control={
        "host": "0.0.0.0", "tls_cert": str(leaf.cert), "tls_key": str(leaf.key)})
    with_tls.start()
    assert with_tls.runtime["control_url"].startswith("https://0.0.0.0:")
    # The CLI reaches it on loopback, pinned to the daemon's own certificate.
    assert with_tls.cli_json("status")["cluster"]["id"] == with_tls.cluster_id


def test_a_staging_directory_outside_the_home_is_private(tmp_path) -> None:
    from p2pdata.transfer import Staging

    staging = Staging(tmp_path / "scratch" / "staging", 1 << 20)
    staging.open(0.0)
    assert _mode(staging.dir) == 0o700  # restricted datasets are staged there too


def test_secrets_are_written_private_and_whole(tmp_path) -> None:
    from p2pdata.catalog import Identity

    key = tmp_path / "cluster.key"
    (tmp_path / "cluster.tmp").write_text("half a key from a crash")  # what an interrupted write left
    identity = Identity.generate()
    identity.save(tmp_path)
    assert _mode(key) == 0o600 and not (tmp_path / "cluster.tmp").exists()
    assert Identity.load(tmp_path).cluster_id == identity.cluster_id
