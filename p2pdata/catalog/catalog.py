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
    # A few hundred large datasets with their torrents (a 2,000-piece hybrid torrent is
    # about 100 KiB); the old 64 MiB let one hostile blob cost gigabytes to decode.
    max_bytes: int = 32 * 1024 * 1024
    max_datasets: int = 10_000
    max_files_per_dataset: int = 200_000
    # Decoded objects in one body: 200,000 files are 1.4 million; a 4 MiB msgpack bomb of
    # empty lists is 4 million, ~750 MiB of Python objects.
    max_objects: int = 2_000_000


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
    # The key beside the body lets a verifier check the signature and the signer's trust
    # before it decodes a single byte of the body.
    return encode({"catalog": body, "key": identity.public_key, "signature": identity.sign(body)})


TrustCheck = Callable[[str, bytes], bool]
"""(cluster id, public key) -> whether the caller trusts this publisher."""


class WrongSigner(BadSignature):
    """The catalog is signed, but by another cluster than the one expected."""

    def __init__(self, signer: str, message: str) -> None:
        super().__init__(message)
        self.signer = signer


@dataclass(frozen=True)
class SignedCatalog:
    """A catalog whose signature checked out, its body not yet decoded."""

    body: bytes
    cluster: str
    public_key: bytes
    raw: bytes


def verify_catalog(
    blob: bytes,
    *,
    trusted: TrustCheck,
    now: int,
    held: HeldCatalog | None = None,
    limits: Limits = Limits(),
    signer: bytes | None = None,
) -> VerifiedCatalog:
    """Return the verified catalog or raise the CatalogError subclass that names the failure.

    `signer` is the key the catalog is expected from (a peer's /v1/info); the envelope's
    own key is used without it. Either way the signature and the signer's trust are
    checked over the raw body bytes before the body is decoded.
    """
    signed = check_signature(blob, limits, signer)
    check_trust(signed, trusted)
    return read_body(signed, now=now, held=held, limits=limits)


def check_signature(blob: bytes, limits: Limits = Limits(), signer: bytes | None = None) -> SignedCatalog:
    """The envelope opened and its signature checked; cheap whatever the body holds."""
    if len(blob) > limits.max_bytes:
        raise TooLarge(f"catalog is {len(blob)} bytes, over the limit of {limits.max_bytes}")
    envelope = _envelope(blob, limits)
    body = get(envelope, "catalog", bytes, "catalog")
    signature = get(envelope, "signature", bytes, "catalog")
    key = get(envelope, "key", bytes, "catalog", default=signer)
    if key is None:
        raise MalformedData("catalog: the envelope names no key and none was expected")
    if len(key) != 32:
        raise MalformedData(f"catalog.key: expected a 32-byte Ed25519 key, got {len(key)}")
    cluster = fingerprint(key)
    if signer is not None and key != signer:
        raise WrongSigner(cluster, f"catalog is signed by cluster {cluster}, not by the expected "
                                   f"cluster {fingerprint(signer)}")
    if not verify_signature(key, body, signature):
        raise BadSignature(f"catalog from cluster {cluster}: signature does not match its contents")
    return SignedCatalog(body, cluster, key, blob)


def check_trust(signed: SignedCatalog, trusted: TrustCheck) -> None:
    """After the signature: a trust check may pin the key (trust on first use), and only a
    key that really signed these bytes may be pinned."""
    if not trusted(signed.cluster, signed.public_key):
        raise UntrustedKey(
            f"catalog is signed by cluster {signed.cluster}, which is not in the trust store "
            f"(add it with `p2pdata trust add {signed.cluster}`)"
        )


def read_body(signed: SignedCatalog, *, now: int, held: HeldCatalog | None = None,
              limits: Limits = Limits()) -> VerifiedCatalog:
    """Decode and check a signed, trusted body: the costly part, pure, safe in a thread."""
    data = _decode_body(signed.body, limits)
    cluster, public_key = signed.cluster, signed.public_key
    named_key, named = get(data, "key", bytes, "catalog"), get(data, "cluster", str, "catalog")
    if len(named_key) != 32:
        raise MalformedData(f"catalog.key: expected a 32-byte Ed25519 key, got {len(named_key)}")
    if fingerprint(named_key) != named:
        raise BadSignature(f"catalog claims cluster {named} but its key has fingerprint {fingerprint(named_key)}")
    if named_key != public_key:
        raise BadSignature(f"catalog signed by cluster {cluster} claims to be cluster {named}")
    catalog = _parse_body(data, cluster, public_key, limits)
    body_sha256 = hashlib.sha256(signed.body).digest()
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
    return VerifiedCatalog(catalog, body_sha256, signed.raw)


def read_verified(blob: bytes, limits: Limits = Limits()) -> Catalog:
    """A catalog that passed verify_catalog when it was stored, read back without the checks
    that depend on when (expiry, rollback, trust)."""
    data = _decode_body(get(_envelope(blob, limits), "catalog", bytes, "catalog"), limits)
    return _parse_body(data, get(data, "cluster", str, "catalog"), get(data, "key", bytes, "catalog"),
                       limits)


def _envelope(blob: bytes, limits: Limits) -> dict[str, Any]:
    # A map of a few byte strings: anything else fails before it can allocate much.
    return require_map(decode(blob, max_size=limits.max_bytes, what="catalog", max_objects=8), "catalog")


def _decode_body(body: bytes, limits: Limits) -> dict[str, Any]:
    return require_map(decode(body, max_size=limits.max_bytes, what="catalog body",
                              max_objects=limits.max_objects), "catalog")


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
