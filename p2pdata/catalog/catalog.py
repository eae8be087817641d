"""Signed catalogs: building, signing and the strict verifier.

The verifier is a pure function of its inputs (the bytes, what we trust, what
we already hold, and the time), following The Update Framework's threat list:
arbitrary data (signature), untrusted keys, rollback, freeze (expiry) and
endless data (size limits before decoding).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from p2pdata.catalog.encoding import decode, encode
from p2pdata.catalog.fields import field as get
from p2pdata.catalog.fields import require_map
from p2pdata.catalog.identity import Identity, fingerprint, verify_signature
from p2pdata.catalog.manifest import Manifest
from p2pdata.errors import (
    BadSignature,
    Expired,
    MalformedData,
    Rollback,
    TooLarge,
    UntrustedKey,
)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 64 * 1024 * 1024
    max_datasets: int = 10_000
    max_files_per_dataset: int = 200_000


@dataclass(frozen=True)
class Catalog:
    cluster: str
    public_key: bytes
    version: int
    issued: int
    expires: int
    datasets: tuple[Manifest, ...]
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.extra)
        data.update(
            format=FORMAT_VERSION,
            cluster=self.cluster,
            key=self.public_key,
            version=self.version,
            issued=self.issued,
            expires=self.expires,
            datasets=[manifest.to_dict() for manifest in self.datasets],
        )
        return data


@dataclass(frozen=True)
class HeldCatalog:
    """What a verifier already holds of a publisher: its newest version and that body's hash."""

    version: int
    body_sha256: bytes


@dataclass(frozen=True)
class VerifiedCatalog:
    catalog: Catalog
    body_sha256: bytes
    raw: bytes


def sign_catalog(
    identity: Identity,
    datasets: list[Manifest] | tuple[Manifest, ...],
    *,
    version: int,
    now: int,
    lifetime: int,
) -> bytes:
    """The signed wire form: canonical {catalog: <body bytes>, signature: <Ed25519 over them>}."""
    catalog = Catalog(
        cluster=identity.cluster_id,
        public_key=identity.public_key,
        version=version,
        issued=now,
        expires=now + lifetime,
        datasets=tuple(datasets),
    )
    body = encode(catalog.to_dict())
    return encode({"catalog": body, "signature": identity.sign(body)})


TrustCheck = Callable[[str, bytes], bool]
"""(cluster id, public key) -> whether the caller trusts this publisher."""


def verify_catalog(
    blob: bytes,
    *,
    trusted: TrustCheck,
    now: int,
    held: HeldCatalog | None = None,
    limits: Limits = Limits(),
) -> VerifiedCatalog:
    """Return the verified catalog or raise the CatalogError subclass that names the failure."""
    body, signature, data = _open(blob, limits)
    public_key = get(data, "key", bytes, "catalog")
    cluster = get(data, "cluster", str, "catalog")
    if len(public_key) != 32:
        raise MalformedData(f"catalog.key: expected a 32-byte Ed25519 key, got {len(public_key)}")
    if fingerprint(public_key) != cluster:
        raise BadSignature(
            f"catalog claims cluster {cluster} but its key has fingerprint {fingerprint(public_key)}"
        )
    # Signature first: a trust check may pin the key (trust on first use), and only a key
    # that really signed these bytes may be pinned.
    if not verify_signature(public_key, body, signature):
        raise BadSignature(f"catalog from cluster {cluster}: signature does not match its contents")
    if not trusted(cluster, public_key):
        raise UntrustedKey(
            f"catalog is signed by cluster {cluster}, which is not in the trust store "
            f"(add it with `p2pdata trust add {cluster}`)"
        )

    catalog = _parse_body(data, cluster, public_key, limits)
    body_sha256 = hashlib.sha256(body).digest()
    if held is not None:
        if catalog.version < held.version:
            raise Rollback(
                f"catalog from cluster {cluster} has version {catalog.version}, "
                f"older than version {held.version} already held"
            )
        if catalog.version == held.version and body_sha256 != held.body_sha256:
            raise Rollback(
                f"catalog from cluster {cluster} reuses version {catalog.version} with different contents"
            )
    if catalog.expires <= now:
        raise Expired(
            f"catalog from cluster {cluster} (version {catalog.version}) expired "
            f"{now - catalog.expires} s ago"
        )
    return VerifiedCatalog(catalog, body_sha256, blob)


def read_verified(blob: bytes, limits: Limits = Limits()) -> Catalog:
    """A catalog that passed verify_catalog when it was stored, read back without the checks
    that depend on when (expiry, rollback, trust)."""
    _, _, data = _open(blob, limits)
    return _parse_body(data, get(data, "cluster", str, "catalog"), get(data, "key", bytes, "catalog"),
                       limits)


def _open(blob: bytes, limits: Limits) -> tuple[bytes, bytes, dict[str, Any]]:
    """The signed envelope's body bytes, signature, and decoded body."""
    if len(blob) > limits.max_bytes:
        raise TooLarge(f"catalog is {len(blob)} bytes, over the limit of {limits.max_bytes}")
    envelope = require_map(decode(blob, max_size=limits.max_bytes, what="catalog"), "catalog")
    body = get(envelope, "catalog", bytes, "catalog")
    signature = get(envelope, "signature", bytes, "catalog")
    data = require_map(decode(body, max_size=limits.max_bytes, what="catalog body"), "catalog")
    return body, signature, data


_CATALOG_FIELDS = frozenset({"format", "cluster", "key", "version", "issued", "expires", "datasets"})


def _parse_body(data: dict[str, Any], cluster: str, key: bytes, limits: Limits) -> Catalog:
    where = f"catalog[{cluster}]"
    format_version = get(data, "format", int, where)
    if format_version < 1:
        raise MalformedData(f"{where}.format: unknown format {format_version}")
    datasets = get(data, "datasets", list, where)
    if len(datasets) > limits.max_datasets:
        raise TooLarge(f"{where}: {len(datasets)} datasets, over the limit of {limits.max_datasets}")
    manifests = []
    refs: set[str] = set()
    for index, item in enumerate(datasets):
        files = require_map(item, f"{where}.datasets[{index}]").get("files")
        if isinstance(files, list) and len(files) > limits.max_files_per_dataset:
            raise TooLarge(
                f"{where}.datasets[{index}]: {len(files)} files, over the limit of "
                f"{limits.max_files_per_dataset}"
            )
        manifest = Manifest.from_dict(item, f"{where}.datasets[{index}]")
        if manifest.owner != cluster:
            raise MalformedData(
                f"{where}: dataset {manifest.ref} names owner {manifest.owner}, not the signer"
            )
        if manifest.ref in refs:
            raise MalformedData(f"{where}: dataset {manifest.ref} appears twice")
        refs.add(manifest.ref)
        manifests.append(manifest)
    version = get(data, "version", int, where)
    issued = get(data, "issued", int, where)
    expires = get(data, "expires", int, where)
    if version < 1 or expires < issued:
        raise MalformedData(f"{where}: version must be >= 1 and expires after issued")
    return Catalog(
        cluster=cluster,
        public_key=key,
        version=version,
        issued=issued,
        expires=expires,
        datasets=tuple(manifests),
        extra={k: v for k, v in data.items() if k not in _CATALOG_FIELDS},
    )
