"""The p2pdata command end to end in temporary homes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from p2pdata.cli import main


def run(home: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--home", str(home), *args] if home else list(args), env=env)
    return result.exit_code, result.output


def test_the_command_starts_without_libtorrent_or_pyarrow() -> None:
    """Every command starts with this import: the heavy rooms stay behind the control API."""
    code = ("import sys; import p2pdata.cli;"
            "loaded = sorted(m for m in ('libtorrent', 'pyarrow') if m in sys.modules);"
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent, timeout=120)


def test_init_creates_a_private_identity_and_refuses_to_replace_it(tmp_path):
    home = tmp_path / "home"
    code, output = run(home, "init", "--name", "lab")
    assert code == 0, output
    assert (home / "cluster.key").stat().st_mode & 0o777 == 0o600
    identity = json.loads(run(home, "id", "--json")[1])
    assert set(identity) == {"cluster_id", "public_key"}
    assert identity["public_key"].startswith("ed25519:")

    code, output = run(home, "init")
    assert code == 1 and "--force" in output
    assert json.loads(run(home, "id", "--json")[1]) == identity

    assert run(home, "init", "--force")[0] == 0
    assert json.loads(run(home, "id", "--json")[1])["cluster_id"] != identity["cluster_id"]


def test_home_comes_from_the_environment(tmp_path):
    home = tmp_path / "env-home"
    result = CliRunner().invoke(main, ["init"], env={"P2PDATA_HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert (home / "cluster.key").exists() and (home / "config.toml").exists() and (home / "state.db").exists()


def test_config_errors_name_the_file_the_key_and_the_expectation(tmp_path):
    home = tmp_path / "home"
    run(home, "init")
    (home / "config.toml").write_text('[peer_api]\nport = "seventy"\n')
    code, output = run(home, "search", "x")
    assert code == 1
    assert "config.toml" in output and "peer_api.port" in output and "whole number" in output
    (home / "config.toml").write_text("[store]\nkind = 'tape'\n")
    assert "store.kind" in run(home, "search", "x")[1]


def test_catalog_export_and_verify_against_the_trust_store(make_daemon, tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    pq.write_table(pa.table({"a": [1, 2, 3]}), source / "a.parquet")
    publisher = make_daemon("publisher")
    publisher.cli("publish", str(source), "--name", "tiny", "--version", "1")
    exported = tmp_path / "catalog.bin"
    publisher.cli("catalog", "export", "-o", str(exported))

    reader = make_daemon("reader")
    code, output = run(reader.home, "catalog", "verify", str(exported))
    assert code == 1 and "not in the trust store" in output

    # What a command changed: one line for a person, the daemon's answer with --json.
    assert reader.cli("trust", "add", publisher.cluster_id, "--name", "publisher").strip() == \
        f"trusting {publisher.cluster_id} as publisher"
    assert json.loads(reader.cli("trust", "add", publisher.cluster_id, "--name", "publisher", "--json")) \
        == {"cluster_id": publisher.cluster_id, "trusted": True}
    assert [t["cluster_id"] for t in json.loads(reader.cli("trust", "list", "--json"))] == [publisher.cluster_id]
    code, output = run(reader.home, "catalog", "verify", str(exported))
    assert code == 0 and f"cluster {publisher.cluster_id}" in output

    tampered = tmp_path / "tampered.bin"
    blob = exported.read_bytes()
    index = blob.index(b"tiny")
    tampered.write_bytes(blob[:index] + b"tinz" + blob[index + 4 :])
    code, output = run(reader.home, "catalog", "verify", str(tampered))
    assert code == 1 and "signature" in output

    assert reader.cli("trust", "remove", publisher.cluster_id).strip() == f"no longer trusting {publisher.cluster_id}"
    assert json.loads(reader.cli("trust", "list", "--json")) == []


def test_publish_rejects_bad_names_and_changed_content(make_daemon, tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    (source / "x.bin").write_bytes(b"one")
    daemon = make_daemon("solo")
    assert "must match" in daemon.cli("publish", str(source), "--name", "Bad Name", "--version", "1", ok=False)
    daemon.cli("publish", str(source), "--name", "good", "--version", "1")
    (source / "x.bin").write_bytes(b"two")
    assert "different files" in daemon.cli("publish", str(source), "--name", "good", "--version", "1", ok=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "error" in daemon.cli("publish", str(empty), "--name", "none", "--version", "1", ok=False)
