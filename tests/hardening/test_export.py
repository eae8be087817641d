"""`catalog export` shows restricted datasets as peers see them unless the full copy is asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from p2pdata.catalog import decode


def _exported(daemon: Any, path: Path, *flags: str) -> dict[str, Any]:
    daemon.cli("catalog", "export", "-o", str(path), *flags)
    body = decode(decode(path.read_bytes(), max_size=1 << 24)["catalog"], max_size=1 << 24)
    return {d["name"]: d for d in body["datasets"]}


def test_export_applies_the_public_view(make_daemon: Any, tmp_path: Path) -> None:
    alpha = make_daemon("alpha")
    hidden = make_daemon("hidden", restricted={"show": "hidden"})
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_bytes(b"key material")
    for daemon in (alpha, hidden):
        daemon.cli("publish", str(secret), "--name", "secret", "--version", "1",
                   "--access", "restricted", "--allow", "aaaaaaaaaaaaaaaa")

    stub = _exported(alpha, tmp_path / "public.cat")["secret"]
    assert "torrent" not in stub
    assert [f["path"] for f in stub["files"]] == ["restricted"]
    assert stub["access"]["allow"] == []
    assert "secret" not in _exported(hidden, tmp_path / "hidden.cat")

    full = _exported(alpha, tmp_path / "full.cat", "--full")["secret"]
    assert [f["path"] for f in full["files"]] == ["id_rsa"]
    assert full["access"]["allow"] == ["aaaaaaaaaaaaaaaa"] and "torrent" in full
