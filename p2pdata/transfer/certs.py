"""The owner's small certificate authority for restricted datasets' SSL torrents.

Each cluster has one self-signed root (EC P-256). A restricted dataset's
torrent names that root, so libtorrent lets into its swarm only peers whose
certificate chains to it. Leaf certificates are short-lived: libtorrent cannot
consult a revocation list, so expiry is what ends a revoked cluster's access
to new connections.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from p2pdata.catalog.identity import write_private
from p2pdata.errors import P2pdataError

ROOT_KEY_FILE = "ca.key"
ROOT_CERT_FILE = "ca.pem"
_ROOT_YEARS = 20
_SKEW = 300  # seconds a leaf is valid before its issue time, for clocks a little behind
MAX_PUBLIC_KEY_DER = 512


# RFC 7919's ffdhe2048 group. libtorrent wants a DH parameter file beside every SSL
# certificate (without one it raises a torrent error); a published standard group is
# as good as a generated one and costs nothing.
FFDHE2048_PEM = b"""-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""


class CertificateError(P2pdataError):
    pass


def _utc(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def new_tls_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_key_der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_tls_public_key(der: bytes) -> ec.EllipticCurvePublicKey:
    """A requester's TLS key: only EC P-256, bounded in size."""
    if len(der) > MAX_PUBLIC_KEY_DER:
        raise CertificateError(f"TLS public key is {len(der)} bytes, over {MAX_PUBLIC_KEY_DER}")
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:  # a key type OpenSSL does not know: 400, not 500
        raise CertificateError(f"TLS public key is not a DER public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CertificateError("TLS public key must be EC P-256")
    return key


@dataclass(frozen=True)
class Leaf:
    cluster_id: str  # the subject's common name
    dns_name: str  # which torrent (libtorrent matches it against the torrent's name)
    issued: int
    not_after: int

    @property
    def renew_at(self) -> int:
        """Half way through its life: time enough to retry before it lapses."""
        return (self.issued + self.not_after) // 2

    @classmethod
    def parse(cls, pem: bytes) -> Leaf:
        cert = x509.load_pem_x509_certificate(pem)
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return cls(
            cluster_id=str(common[0].value) if common else "",
            dns_name=names.get_values_for_type(x509.DNSName)[0],
            issued=int(cert.not_valid_before_utc.timestamp()) + _SKEW,
            not_after=int(cert.not_valid_after_utc.timestamp()),
        )


class ClusterCA:
    """The root key and certificate of one cluster, kept 0600 under `directory`."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @property
    def root_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def load_or_create(cls, directory: Path, cluster_id: str, now: int) -> ClusterCA:
        key_path, cert_path = directory / ROOT_KEY_FILE, directory / ROOT_CERT_FILE
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise CertificateError(f"{key_path} does not hold an EC private key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = new_tls_key()
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "p2pdata"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"p2pdata restricted root {cluster_id}"),
        ])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_utc(now - _SKEW))
            .not_valid_after(_utc(now + _ROOT_YEARS * 365 * 86400))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        write_private(key_path, private_key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert)

    def issue(self, cluster_id: str, public_der: bytes, dns_name: str, *, now: int,
              lifetime: int) -> bytes:
        """A leaf for `cluster_id`'s TLS key, valid for one torrent (`dns_name`) until now+lifetime."""
        public = load_tls_public_key(public_der)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cluster_id)]))
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_utc(now - _SKEW))
            .not_valid_after(_utc(now + lifetime))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)
