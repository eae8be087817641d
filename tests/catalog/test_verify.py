"""Signed catalogs: round trip, and every rejection of the verifier built as a bad input."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from p2pdata.catalog import (
    Catalog,
    HeldCatalog,
    Identity,
    Limits,
    Manifest,
    Torrent,
    decode,
    encode,
    sign_catalog,
    verify_catalog,
)
from p2pdata.errors import (
    BadSignature,
    Expired,
    MalformedData,
    Rollback,
    TooLarge,
    UnsafePath,
    UntrustedKey,
)
from tests.catalog.conftest import NOW, catalog_body, sign_body


def trust_all(cluster: str, key: bytes) -> bool:
    return True


def verify(blob: bytes, **kw: Any):
    kw.setdefault("trusted", trust_all)
    kw.setdefault("now", NOW + 10)
    return verify_catalog(blob, **kw)


def test_catalog_round_trip(identity: Identity, manifest: Callable[..., Manifest]) -> None:
    datasets = [
        manifest("a", "1", tags=("vision",), description="images"),
        manifest("b", "2.0", torrent=Torrent(b"\x01" * 32, b"d4:infoe")),
    ]
    blob = sign_catalog(identity, datasets, version=3, now=NOW, lifetime=3600)
    verified = verify(blob)
    catalog = verified.catalog
    assert catalog == Catalog(identity.cluster_id, identity.public_key, 3, NOW, NOW + 3600,
                              tuple(datasets))
    assert verified.raw == blob
    body = decode(blob, max_size=len(blob))["catalog"]
    assert verified.body_sha256 == hashlib.sha256(body).digest()
    assert Manifest.from_dict(datasets[0].to_dict()) == datasets[0]


def test_unknown_fields_are_kept_and_still_verify(identity: Identity, manifest) -> None:
    item = manifest().to_dict() | {"future": {"x": 1}}
    blob = sign_body(identity, catalog_body(identity, [item], novel="yes"))
    catalog = verify(blob).catalog
    assert catalog.extra == {"novel": "yes"}
    assert catalog.datasets[0].extra == {"future": {"x": 1}}
    assert encode(catalog.to_dict()) == decode(blob, max_size=len(blob))["catalog"]


def test_bad_signature(identity: Identity, manifest) -> None:
    envelope = decode(sign_catalog(identity, [manifest()], version=1, now=NOW, lifetime=60),
                      max_size=1 << 20)
    signature = bytearray(envelope["signature"])
    signature[0] ^= 1
    with pytest.raises(BadSignature, match="signature"):
        verify(encode({"catalog": envelope["catalog"], "key": identity.public_key,
                       "signature": bytes(signature)}))


def test_tampered_body(identity: Identity, manifest) -> None:
    envelope = decode(sign_catalog(identity, [manifest()], version=1, now=NOW, lifetime=60),
                      max_size=1 << 20)
    body = decode(envelope["catalog"], max_size=1 << 20)
    body["version"] = 99
    with pytest.raises(BadSignature):
        verify(encode({"catalog": encode(body), "key": identity.public_key,
                       "signature": envelope["signature"]}))


def test_claimed_cluster_must_match_key(identity: Identity, other_identity: Identity) -> None:
    body = catalog_body(identity, [], cluster=other_identity.cluster_id)
    with pytest.raises(BadSignature, match="fingerprint"):
        verify(sign_body(identity, body))


def test_signed_by_another_key(identity: Identity, other_identity: Identity) -> None:
    # Identity's body and key, but the other cluster's signature.
    with pytest.raises(BadSignature):
        verify(sign_body(other_identity, catalog_body(identity, [])))


def test_untrusted_key(identity: Identity, manifest) -> None:
    blob = sign_catalog(identity, [manifest()], version=1, now=NOW, lifetime=60)
    with pytest.raises(UntrustedKey, match=identity.cluster_id):
        verify(blob, trusted=lambda cluster, key: False)


def test_bad_signature_is_checked_before_trust(identity: Identity) -> None:
    body = encode(catalog_body(identity, []))
    asked = []
    blob = encode({"catalog": body, "key": identity.public_key, "signature": b"\x00" * 64})
    with pytest.raises(BadSignature):
        verify(blob, trusted=lambda cluster, key: asked.append(cluster) or True)
    assert asked == []  # a trust-on-first-use store was never asked to pin a forger


def test_rollback(identity: Identity, manifest) -> None:
    blob = sign_catalog(identity, [manifest()], version=4, now=NOW, lifetime=60)
    with pytest.raises(Rollback, match="older than version 5"):
        verify(blob, held=HeldCatalog(5, b"\x00" * 32))


def test_same_version_same_body_is_accepted_other_body_is_rollback(identity, manifest) -> None:
    blob = sign_catalog(identity, [manifest()], version=4, now=NOW, lifetime=60)
    held = HeldCatalog(4, verify(blob).body_sha256)
    assert verify(blob, held=held).catalog.version == 4
    other = sign_catalog(identity, [manifest(description="x")], version=4, now=NOW, lifetime=60)
    with pytest.raises(Rollback, match="reuses version 4"):
        verify(other, held=held)
    assert verify(sign_catalog(identity, [], version=5, now=NOW, lifetime=60),
                  held=held).catalog.version == 5


def test_expired(identity: Identity, manifest) -> None:
    blob = sign_catalog(identity, [manifest()], version=1, now=NOW, lifetime=60)
    with pytest.raises(Expired, match="expired"):
        verify(blob, now=NOW + 60)


def test_over_size_limit_checked_before_decoding() -> None:
    with pytest.raises(TooLarge):
        verify(b"\xc1" * 1001, limits=Limits(max_bytes=1000))


def test_over_dataset_and_file_limits(identity: Identity, manifest) -> None:
    blob = sign_catalog(identity, [manifest("a"), manifest("b")], version=1, now=NOW,
                        lifetime=60)
    with pytest.raises(TooLarge, match="datasets"):
        verify(blob, limits=Limits(max_datasets=1))
    with pytest.raises(TooLarge, match="files"):
        verify(blob, limits=Limits(max_files_per_dataset=0))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda b: b.pop("version"), "missing field 'version'"),
        (lambda b: b.update(version="1"), "expected int"),
        (lambda b: b.update(version=True), "expected int"),
        (lambda b: b.update(datasets={}), "expected list"),
        (lambda b: b.pop("format"), "missing field 'format'"),
        (lambda b: b.update(expires=NOW - 1), "expires after issued"),
    ],
    ids=["missing-version", "str-version", "bool-version", "map-datasets", "missing-format",
         "expires-before-issued"],
)
def test_malformed_catalog(identity: Identity, change, error: str) -> None:
    body = catalog_body(identity, [])
    change(body)
    with pytest.raises(MalformedData, match=error):
        verify(sign_body(identity, body))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda m: m.pop("files"), "missing field 'files'"),
        (lambda m: m.pop("name"), "missing field 'name'"),
        (lambda m: m.update(created="now"), "expected int"),
        (lambda m: m.update(tags=["a", 1]), "expected str"),
        (lambda m: m.update(format="zip"), "format"),
        (lambda m: m.update(name="Bad Name"), "must match"),
        (lambda m: m.update(total_size=1), "add up"),
        (lambda m: m.update(files=[]), "at least one file"),
        (lambda m: m["files"][0].update(sha256=b"short"), "32 bytes"),
        (lambda m: m["files"][0].update(size=-1), "not a file size"),
        (lambda m: m["files"][0].update(size="10"), "expected int"),
        (lambda m: m.update(access={"mode": "secret"}), "mode"),
        (lambda m: m.update(owner="someoneelse"), "not the signer"),
    ],
    ids=["no-files", "no-name", "created-str", "tag-int", "format", "name", "total-size",
         "empty-files", "short-hash", "negative-size", "size-str", "access-mode", "owner"],
)
def test_malformed_manifest(identity: Identity, manifest, change, error: str) -> None:
    item = manifest().to_dict()
    change(item)
    with pytest.raises(MalformedData, match=error):
        verify(sign_body(identity, catalog_body(identity, [item])))


def test_dataset_listed_twice(identity: Identity, manifest) -> None:
    item = manifest().to_dict()
    with pytest.raises(MalformedData, match="twice"):
        verify(sign_body(identity, catalog_body(identity, [item, item])))


@pytest.mark.parametrize(
    ("paths", "error"),
    [
        (["/etc/passwd"], "absolute"),
        (["C:/x"], "absolute"),
        (["a\\b"], "absolute"),
        (["../x"], r"'\.\.'"),
        (["a/../../x"], r"'\.\.'"),
        (["a", "a"], "repeats"),
        (["a/./b"], "not normalised"),
        (["a//b"], "not normalised"),
        (["a/"], "not normalised"),
        (["./a"], "not normalised"),
        (["."], "not normalised"),
        ([""], "empty"),
        (["a\x00b"], "NUL"),
        (["a", "a/b"], "is a file and the directory"),
    ],
)
def test_unsafe_paths(identity: Identity, manifest, paths: list[str], error: str) -> None:
    item = manifest().to_dict()
    item["files"] = [{"path": p, "size": 1, "sha256": b"\x00" * 32} for p in paths]
    item["total_size"] = len(paths)
    with pytest.raises(UnsafePath, match=error):
        verify(sign_body(identity, catalog_body(identity, [item])))


def test_non_canonical_encoding(identity: Identity) -> None:
    body = catalog_body(identity, [])
    unsorted_body = msgpack.packb(dict(reversed(list(body.items()))), use_bin_type=True)
    blob = encode({"catalog": unsorted_body, "key": identity.public_key,
                   "signature": identity.sign(unsorted_body)})
    with pytest.raises(MalformedData, match="canonical"):
        verify(blob)
    # The envelope itself must be canonical too.
    good = encode(catalog_body(identity, []))
    envelope = msgpack.packb({"signature": identity.sign(good), "catalog": good, "key": identity.public_key},
                             use_bin_type=True)
    with pytest.raises(MalformedData, match="canonical"):
        verify(envelope)


def test_envelope_wrong_types(identity: Identity) -> None:
    with pytest.raises(MalformedData, match="expected a map"):
        verify(encode([1, 2]))
    with pytest.raises(MalformedData, match="expected bytes"):
        verify(encode({"catalog": "text", "signature": b""}))
    with pytest.raises(MalformedData, match="32-byte"):
        verify(sign_body(identity, catalog_body(identity, [], key=b"short")))


def test_catalog_properties(identity: Identity, manifest) -> None:
    m = manifest()
    assert m.total_size == 10 and m.ref == "demo@1" and len(m.id) == 64
