"""The owner's small CA: a root per cluster, short-lived leaves bound to one torrent."""

from __future__ import annotations

import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from p2pdata.transfer.certs import CertificateError, ClusterCA, Leaf, new_tls_key, public_key_der


def test_the_root_is_created_once_and_kept_private(tmp_path):
    now = int(time.time())
    first = ClusterCA.load_or_create(tmp_path / "ca", "owner", now)
    again = ClusterCA.load_or_create(tmp_path / "ca", "owner", now + 10)
    assert first.root_pem == again.root_pem
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600


def test_a_leaf_chains_to_the_root_and_names_cluster_and_torrent(tmp_path):
    now = int(time.time())
    ca = ClusterCA.load_or_create(tmp_path / "ca", "owner", now)
    pem = ca.issue("granted", public_key_der(new_tls_key()), "p2pdata-abc", now=now, lifetime=600)
    leaf = Leaf.parse(pem)
    assert (leaf.cluster_id, leaf.dns_name, leaf.not_after) == ("granted", "p2pdata-abc", now + 600)
    assert leaf.renew_at == now + 300
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(ca.cert)


def test_only_p256_keys_are_certified(tmp_path):
    ca = ClusterCA.load_or_create(tmp_path / "ca", "owner", int(time.time()))
    other = ec.generate_private_key(ec.SECP384R1())
    from cryptography.hazmat.primitives import serialization

    der = other.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(CertificateError, match="P-256"):
        ca.issue("x", der, "t", now=0, lifetime=1)
    with pytest.raises(CertificateError):
        ca.issue("x", b"junk", "t", now=0, lifetime=1)
    with pytest.raises(CertificateError, match="over"):
        ca.issue("x", b"\0" * 1000, "t", now=0, lifetime=1)
    # A well-formed key of an algorithm OpenSSL does not know (was UnsupportedAlgorithm: a 500).
    p256 = public_key_der(new_tls_key())
    unknown = p256.replace(bytes.fromhex("2a8648ce3d0201"), bytes.fromhex("2a8648ce3d0209"))
    with pytest.raises(CertificateError, match="not a DER public key"):
        ca.issue("x", unknown, "t", now=0, lifetime=1)
