"""Fixtures for the catalog room: identities, a state database, manifests."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pdata.catalog import Column, FileEntry, Identity, Manifest, encode
from p2pdata.db import open_db

NOW = 1_700_000_000


@pytest.fixture(scope="session")
def identity() -> Identity:
    return Identity.generate()


@pytest.fixture(scope="session")
def other_identity() -> Identity:
    return Identity.generate()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = open_db(tmp_path / "state.db")
    yield db
    db.close()


def make_manifest(owner: str, name: str = "demo", version: str = "1", **kw: Any) -> Manifest:
    files = kw.pop("files", None) or (
        FileEntry("data/part-0.parquet", 10, hashlib.sha256(name.encode()).digest()),
    )
    kw.setdefault("format", "parquet")
    kw.setdefault("created", NOW)
    return Manifest(name=name, version=version, owner=owner, files=tuple(files), **kw)


@pytest.fixture
def manifest(identity: Identity) -> Callable[..., Manifest]:
    def build(name: str = "demo", version: str = "1", **kw: Any) -> Manifest:
        kw.setdefault("schema", (Column("id", "int64"),))
        return make_manifest(identity.cluster_id, name, version, **kw)

    return build


def sign_body(identity: Identity, body: dict[str, Any]) -> bytes:
    """A signed envelope around an arbitrary body: lets tests sign malformed catalogs."""
    data = encode(body)
    return encode({"catalog": data, "key": identity.public_key, "signature": identity.sign(data)})


def catalog_body(identity: Identity, datasets: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    body = {
        "format": 1,
        "cluster": identity.cluster_id,
        "key": identity.public_key,
        "version": 1,
        "issued": NOW,
        "expires": NOW + 3600,
        "datasets": datasets,
    }
    body.update(kw)
    return body
