"""A cluster's identity: an Ed25519 key pair, and the short fingerprint that names it."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from p2pdata.errors import IdentityError

PRIVATE_KEY_FILE = "cluster.key"
PUBLIC_KEY_FILE = "cluster.pub"


def fingerprint(public_key: bytes) -> str:
    """Cluster id: 16 base32 characters of the key's SHA-256 (80 bits), lower case."""
    digest = hashlib.sha256(b"p2pdata-cluster-key\x00" + public_key).digest()
    return base64.b32encode(digest[:10]).decode().lower()


def verify_signature(public_key: bytes, data: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def bep44_message(salt: bytes, seq: int, value: bytes) -> bytes:
    """The bytes a BEP 44 mutable item's signature covers, for a value that is a bencoded string
    (the DHT's wire format; here because both who signs and who checks such items need it)."""
    prefix = b"4:salt%d:%s" % (len(salt), salt) if salt else b""
    return prefix + b"3:seqi%de1:v%d:%s" % (seq, len(value), value)


def encode_public_key(public_key: bytes) -> str:
    """Text form used in files, JSON and the CLI: `ed25519:<base64>`."""
    return "ed25519:" + base64.b64encode(public_key).decode()


def decode_public_key(text: str) -> bytes:
    prefix, _, body = text.strip().partition(":")
    try:
        key = base64.b64decode(body, validate=True)
    except ValueError as exc:
        raise IdentityError(f"public key {text!r} is not valid base64") from exc
    if prefix != "ed25519" or len(key) != 32:
        raise IdentityError(f"public key {text!r} is not of the form ed25519:<32 bytes base64>")
    return key


def write_private(path: Path, data: bytes) -> None:
    """Write a secret: 0600 from creation (O_EXCL), so never readable by others, not even
    briefly; replaced atomically, so a crash never leaves half a key."""
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


@dataclass(frozen=True)
class Identity:
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def cluster_id(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    def save(self, directory: Path, *, force: bool = False) -> None:
        """Write the key pair; the private key file is created 0600 and never world-readable."""
        private_path = directory / PRIVATE_KEY_FILE
        if private_path.exists() and not force:
            raise IdentityError(f"{private_path} already holds a cluster identity; use --force to replace it")
        directory.mkdir(parents=True, exist_ok=True)
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(private_path, pem)
        (directory / PUBLIC_KEY_FILE).write_text(encode_public_key(self.public_key) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Identity:
        private_path = directory / PRIVATE_KEY_FILE
        if not private_path.exists():
            raise IdentityError(f"no cluster identity in {directory}; run `p2pdata init` first")
        mode = private_path.stat().st_mode & 0o777
        if mode & 0o077:
            raise IdentityError(f"{private_path} is readable by others (mode {mode:o}); run chmod 600 on it")
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{private_path} does not hold an Ed25519 private key")
        return cls(key)
