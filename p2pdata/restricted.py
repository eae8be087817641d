"""Restricted datasets: closed at every door, not only in the catalog.

The owner's side: the public catalog shows a stub (name, publisher, size) or
nothing; the full manifest, the torrent and swarm certificates go only to
granted clusters whose requests are signed with their cluster key (see
catalog/access.py), and so does the listing of every restricted dataset a
cluster is granted (how it finds hidden ones); the torrent is an SSL torrent
rooted at the owner's CA (transfer/certs.py), so libtorrent itself refuses
peers without a certificate.

The fetcher's side: at each catalog sync, fetch the listing of what the peer
grants us (a 304 when unchanged) and index it beside its catalog; turn a stub
into the full manifest (checked against the id the signed catalog committed
to, and the owner's signature), obtain a certificate, and keep renewing it
while it fetches or re-seeds. A re-seeding
cluster never hands out manifests, torrents or certificates: only the owner
decides, and libtorrent on the re-seeder refuses peers without the owner's
certificate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from p2pdata.catalog import (
    FileEntry,
    Identity,
    LocalCatalog,
    Manifest,
    check_cluster_id,
    decode,
    encode,
    verify_signature,
)
from p2pdata.catalog.access import (
    AccessDenied,
    GrantTable,
    RequestVerifier,
    sign_request,
)
from p2pdata.catalog.fields import field, require_map
from p2pdata.catalog.identity import write_private
from p2pdata.catalog.store import CatalogStore
from p2pdata.catalog.trust import TrustStore
from p2pdata.errors import NotFound, P2pdataError, PeerError
from p2pdata.peers import PeerClient, PeerHttpError, PeerInfo, normalize_peer_url
from p2pdata.peers.directory import PeerDirectory
from p2pdata.transfer import TransferSession
from p2pdata.transfer.certs import (
    FFDHE2048_PEM,
    CertificateError,
    ClusterCA,
    Leaf,
    new_tls_key,
    private_key_pem,
    public_key_der,
)

log = logging.getLogger("p2pdata.restricted")

STUB_FIELD = "restricted_stub"  # in a stub manifest: the full manifest's id, signed with the catalog
SIGNATURE_HEADER = "X-P2pdata-Manifest-Signature"
GRANTED_PATH = "/v1/restricted/granted"  # the signed listing of what the caller is granted
_MANIFEST_DOMAIN = b"p2pdata-restricted-manifest\x00"
_MAX_MANIFEST = 64 * 1024 * 1024
_MAX_CERT = 16 * 1024
_STUB_FILE = "restricted"  # a manifest has at least one file; the stub's one says only the size

Certificate = tuple[Path, Path, Path]  # certificate, TLS key, DH parameters

_HELD = """
CREATE TABLE IF NOT EXISTS restricted_held (
    id TEXT PRIMARY KEY,        -- full manifest id
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    manifest BLOB NOT NULL      -- canonical bytes, as the owner sent them
);
"""


def torrent_name(manifest: Manifest) -> str:
    """The torrent's name, which the swarm certificate must name: one per dataset version."""
    digest = hashlib.sha256(f"{manifest.owner}/{manifest.name}@{manifest.version}".encode())
    return "p2pdata-" + digest.hexdigest()[:32]


def is_restricted(manifest: Manifest) -> bool:
    return manifest.access.mode == "restricted"


def is_stub(manifest: Manifest) -> bool:
    return STUB_FIELD in manifest.extra


def with_ssl_listen(listen: list[str]) -> str:
    """libtorrent listen_interfaces with an SSL entry (port 0) beside each plain one."""
    ssl = [f"{entry.rpartition(':')[0]}:0s" for entry in listen]
    return ",".join(listen + list(dict.fromkeys(ssl)))


def stub_of(manifest: Manifest) -> Manifest:
    """What the public catalog says of a restricted dataset: name, publisher, size; no files, no torrent."""
    return Manifest(
        name=manifest.name,
        version=manifest.version,
        owner=manifest.owner,
        created=manifest.created,
        format=manifest.format,
        files=(FileEntry(_STUB_FILE, manifest.total_size, bytes(32)),),
        access=replace(manifest.access, allow=()),  # who is granted is the owner's business
        extra={STUB_FIELD: manifest.id},
    )


def public_view(manifest: Manifest, show: str) -> Manifest | None:
    """A manifest as a public catalog shows it: restricted ones as stubs, or (`hidden`) not at all."""
    if not is_restricted(manifest):
        return manifest
    return None if show == "hidden" else stub_of(manifest)


class Restricted:
    """Grants, the CA, the doors, and the fetcher's certificates, for one daemon."""

    def __init__(self, conn: sqlite3.Connection, identity: Identity, local: LocalCatalog,
                 home: Path, *, show: str = "stub", certificate_lifetime: int = 3600,
                 clock: Callable[[], float] = time.time,
                 own_urls: Callable[[], tuple[str, ...]] | None = None) -> None:
        self.conn = conn
        self.identity = identity
        self.local = local
        self.show = show
        self.certificate_lifetime = certificate_lifetime
        self.clock = clock
        self.grants = GrantTable(conn)
        # With our URLs, a door only accepts requests signed for one of them (never relayed).
        # Clusters holding a grant keep their share of nonces however many strangers sign.
        self.verifier = RequestVerifier(identity.cluster_id, conn, clock, urls=own_urls,
                                        favoured=self.grants.any_to)
        self._granted_etags: dict[str, str] = {}  # peer url -> ETag of its listing we indexed
        self.dir = home / "restricted"
        self.ca = ClusterCA.load_or_create(self.dir, identity.cluster_id, int(clock()))
        self.certs = self.dir / "certs"
        self.certs.mkdir(mode=0o700, exist_ok=True)
        self._tls_key = self._load_tls_key()
        self._dh_params = self.dir / "dhparams.pem"
        self._dh_params.write_bytes(FFDHE2048_PEM)
        conn.executescript(_HELD)

    def _load_tls_key(self) -> Path:
        """One TLS key per cluster for all its swarm certificates; 0600, never sent anywhere."""
        path = self.dir / "tls.key"
        if not path.exists():
            write_private(path, private_key_pem(new_tls_key()))
        return path

    # ---- the owner's side -----------------------------------------------------------------

    def torrent_options(self, manifest: Manifest) -> dict[str, Any]:
        """make_torrent arguments: an SSL torrent rooted at our CA for a restricted dataset."""
        if not is_restricted(manifest):
            return {}
        return {"root_cert": self.ca.root_pem, "name": torrent_name(manifest)}

    def on_publish(self, manifest: Manifest) -> None:
        """`--allow CLUSTER...` at publish time are the first grants."""
        for cluster in manifest.access.allow:
            self.grants.grant(manifest.name, cluster, int(self.clock()))

    def public_view(self, manifest: Manifest) -> Manifest | None:
        """Our manifest as the public catalog shows it (None: not at all)."""
        return public_view(manifest, self.show)

    def grant(self, name: str, cluster: str) -> dict[str, Any]:
        """Let `cluster` fetch every version of our restricted dataset `name`."""
        self._check_owned(name)
        added = self.grants.grant(name, check_cluster_id(cluster), int(self.clock()))
        return {"dataset": name, "cluster": cluster, "granted": True, "new": added}

    def revoke(self, name: str, cluster: str) -> dict[str, Any]:
        """No new manifest, torrent, certificate or renewal for `cluster`, from now on.

        Certificates it already holds stay valid until they expire (at most
        certificate_lifetime seconds), and copies it already fetched stay its own.
        """
        self._check_owned(name)
        removed = self.grants.revoke(name, check_cluster_id(cluster))
        return {"dataset": name, "cluster": cluster, "revoked": removed,
                "certificates_expire_within": self.certificate_lifetime}

    def _check_owned(self, name: str) -> None:
        if not any(m.name == name and is_restricted(m) for m in self.local.datasets()):
            raise NotFound(f"this cluster publishes no restricted dataset named {name}")

    def own_certificate(self, manifest: Manifest) -> Certificate:
        """The owner's own certificate for its swarm: it is the root, so it never needs renewing."""
        pem = self.ca.issue(self.identity.cluster_id, self._tls_public(), torrent_name(manifest),
                            now=int(self.clock()), lifetime=20 * 365 * 86400)
        return self._write_cert(manifest.id, pem)

    def seed_certificate(self, manifest: Manifest) -> Certificate | None:
        """What to give libtorrent when seeding `manifest` (None for public datasets)."""
        if not is_restricted(manifest):
            return None
        if manifest.owner == self.identity.cluster_id:
            return self.own_certificate(manifest)
        path = self.certs / f"{manifest.id}.pem"
        return (path, self._tls_key, self._dh_params) if path.exists() else None

    # Doors: each verifies the signature first (401), then the grant (403). An unknown
    # dataset and a dataset not granted get the same answer: no existence oracle.

    def _own(self, name: str | None = None, version: str | None = None,
             manifest_id: str | None = None) -> Manifest | None:
        for manifest in self.local.datasets():
            if (manifest.name, manifest.version) == (name, version) or manifest.id == manifest_id:
                return manifest
        return None

    def _allowed(self, method: str, path: str, headers: Mapping[str, str],
                 manifest: Manifest | None) -> tuple[Manifest, str]:
        cluster = self.verifier.verify(method, path, headers)
        if (manifest is None or not is_restricted(manifest)
                or not self.grants.allowed(manifest.name, cluster)):
            raise AccessDenied(f"cluster {cluster} is not granted this dataset")
        return manifest, cluster

    def manifest_door(self, name: str, version: str, method: str, path: str,
                      headers: Mapping[str, str]) -> tuple[bytes, str]:
        """The full manifest, canonical bytes, and our signature over them."""
        manifest, _ = self._allowed(method, path, headers, self._own(name, version))
        body, signature = self._signed_manifest(manifest)
        return body, base64.b64encode(signature).decode()

    def granted_door(self, method: str, path: str, headers: Mapping[str, str]) -> bytes:
        """Every restricted dataset of ours the caller is granted, hidden or not, each signed
        as the manifest door signs it. A cluster granted nothing gets an empty listing, the
        same as from a cluster with no restricted datasets: no existence oracle."""
        cluster = self.verifier.verify(method, path, headers)
        listing = []
        for manifest in self.local.datasets():
            if is_restricted(manifest) and self.grants.allowed(manifest.name, cluster):
                body, signature = self._signed_manifest(manifest)
                listing.append({"manifest": body, "signature": signature})
        return encode({"datasets": listing})

    def _signed_manifest(self, manifest: Manifest) -> tuple[bytes, bytes]:
        body = encode(manifest.to_dict())
        return body, self.identity.sign(_MANIFEST_DOMAIN + body)

    def torrent_door(self, manifest_id: str, method: str, path: str,
                     headers: Mapping[str, str]) -> bytes:
        manifest, _ = self._allowed(method, path, headers, self._own(manifest_id=manifest_id))
        if manifest.torrent is None:
            raise NotFound(f"{manifest.ref} has no torrent")
        return manifest.torrent.data

    def certificate_door(self, manifest_id: str, key: str, method: str, path: str,
                         headers: Mapping[str, str]) -> bytes:
        """A short-lived swarm certificate for the caller's TLS key.

        The signed request is the proof of possession: it covers the path, so the TLS
        key in its query is bound to the cluster key that signed it, now, once.
        """
        manifest, cluster = self._allowed(method, path, headers,
                                          self._own(manifest_id=manifest_id))
        try:
            der = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        except (binascii.Error, ValueError):
            raise CertificateError("key: not base64url") from None  # bad input (400), signed properly
        return self.ca.issue(cluster, der, torrent_name(manifest), now=int(self.clock()),
                             lifetime=self.certificate_lifetime)

    # ---- the fetcher's side ---------------------------------------------------------------

    def full(self, manifest: Manifest) -> Manifest:
        """The full manifest behind a stub, once we hold it; otherwise `manifest` itself."""
        if not is_stub(manifest):
            return manifest
        row = self.conn.execute("SELECT manifest FROM restricted_held WHERE id = ?",
                                (manifest.extra[STUB_FIELD],)).fetchone()
        return manifest if row is None else Manifest.from_dict(decode(row[0], max_size=_MAX_MANIFEST))

    def _signed(self, url: str, path: str, owner: str) -> dict[str, str]:
        return sign_request(self.identity, "GET", path, owner, now=int(self.clock()),
                            url=normalize_peer_url(url))

    async def fetch_manifest(self, client: PeerClient, url: str, owner_key: bytes,
                             stub: Manifest) -> Manifest:
        """Ask the owner for the full manifest behind `stub`, and check it is the one it committed to."""
        path = f"/v1/restricted/{stub.name}/{stub.version}/manifest"
        body, headers = await client.signed_get(url, path, self._signed(url, path, stub.owner),
                                                _MAX_MANIFEST)
        try:
            signature = base64.b64decode(headers.get(SIGNATURE_HEADER, ""), validate=True)
        except binascii.Error:
            signature = b""
        where = f"{stub.ref}: the manifest from {url}"
        if hashlib.sha256(body).hexdigest() != stub.extra[STUB_FIELD]:
            raise P2pdataError(f"{where} is not the one its catalog names")
        manifest = _owners_manifest(body, signature, stub.owner, owner_key, where)
        if (manifest.name, manifest.version) != (stub.name, stub.version):
            raise P2pdataError(f"{stub.ref}: the owner sent a manifest of another dataset")
        self._hold([(manifest, body)])
        return manifest

    async def fetch_granted(self, client: PeerClient, url: str, peer: PeerInfo) -> list[Manifest] | None:
        """The restricted datasets `peer` grants us, hidden ones included, each checked against
        its signature and kept; None when the listing is unchanged since the last call."""
        fetched = await client.signed_listing(url, GRANTED_PATH,
                                              self._signed(url, GRANTED_PATH, peer.cluster_id),
                                              self._granted_etags.get(url))
        if fetched.data is None:
            return None
        where = f"the restricted datasets {url} grants us"
        listing = require_map(decode(fetched.data, max_size=len(fetched.data), what=where), where)
        held = []
        for index, item in enumerate(field(listing, "datasets", list, where)):
            entry = require_map(item, f"{where}: datasets[{index}]")
            body = field(entry, "manifest", bytes, f"{where}: datasets[{index}]")
            signature = field(entry, "signature", bytes, f"{where}: datasets[{index}]")
            held.append((_owners_manifest(body, signature, peer.cluster_id, peer.public_key, where),
                         body))
        if len({(m.name, m.version) for m, _ in held}) != len(held):
            raise P2pdataError(f"{where}: a dataset appears twice")
        self._hold(held)
        self._granted_etags[url] = fetched.etag
        return [manifest for manifest, _ in held]

    def _hold(self, manifests: list[tuple[Manifest, bytes]]) -> None:
        """Keep full manifests (with the canonical bytes the owner signed) for fetching and re-seeding."""
        self.conn.executemany("INSERT OR REPLACE INTO restricted_held VALUES (?, ?, ?, ?, ?)",
                              [(m.id, m.owner, m.name, m.version, body) for m, body in manifests])

    async def obtain_certificate(self, client: PeerClient, url: str, manifest: Manifest) -> Certificate:
        """A swarm certificate from the owner, for our TLS key."""
        key = base64.urlsafe_b64encode(self._tls_public()).decode().rstrip("=")
        path = f"/v1/restricted/{manifest.id}/certificate?key={key}"
        pem, _ = await client.signed_get(url, path, self._signed(url, path, manifest.owner), _MAX_CERT)
        leaf = Leaf.parse(pem)
        if leaf.cluster_id != self.identity.cluster_id or leaf.dns_name != torrent_name(manifest):
            raise P2pdataError(f"{manifest.ref}: the owner issued a certificate for something else")
        return self._write_cert(manifest.id, pem)

    def held(self) -> list[Manifest]:
        rows = self.conn.execute("SELECT manifest FROM restricted_held").fetchall()
        return [Manifest.from_dict(decode(row[0], max_size=_MAX_MANIFEST)) for row in rows]

    def held_ids(self) -> list[str]:
        """The ids of held(), without decoding the manifests."""
        return sorted(row[0] for row in self.conn.execute("SELECT id FROM restricted_held"))

    def _tls_public(self) -> bytes:
        key = serialization.load_pem_private_key(self._tls_key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return public_key_der(key)

    def _write_cert(self, manifest_id: str, pem: bytes) -> Certificate:
        path = self.certs / f"{manifest_id}.pem"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(pem)
        os.replace(temporary, path)  # libtorrent may read it at any moment: never a torn file
        return path, self._tls_key, self._dh_params


def _owners_manifest(body: bytes, signature: bytes, owner: str, owner_key: bytes,
                     where: str) -> Manifest:
    """A full restricted manifest from its canonical bytes, if `owner` signed it for the manifest door."""
    if not verify_signature(owner_key, _MANIFEST_DOMAIN + body, signature):
        raise P2pdataError(f"{where}: not signed by {owner}")
    manifest = Manifest.from_dict(decode(body, max_size=_MAX_MANIFEST))
    if manifest.owner != owner or not is_restricted(manifest) or manifest.torrent is None:
        raise P2pdataError(f"{where}: {manifest.ref} is not a restricted dataset of {owner} "
                           "with a torrent")
    return manifest


# ---- glue: what the daemon and the fetch room call ------------------------------------------


class RestrictedPeers:
    """The fetcher's side of restricted datasets, against the peers we know of: listings at
    each sync, manifest and certificate before a fetch, SSL endpoints, certificate renewal."""

    def __init__(self, restricted: Restricted, directory: PeerDirectory, client: PeerClient,
                 trust: TrustStore, catalogs: CatalogStore, transfer: TransferSession) -> None:
        self.restricted = restricted
        self.directory = directory
        self.client = client
        self.trust = trust
        self.catalogs = catalogs
        self.transfer = transfer

    async def sync_granted(self, url: str, peer: PeerInfo) -> None:
        """After a catalog sync: index the restricted datasets `peer` grants us beside its catalog.

        Hidden ones are found only this way. Untrusted peers are not asked; a peer without the
        listing (older software) is skipped quietly; a bad listing is refused as a whole.
        """
        if not peer.proven or not self.trust.is_trusted(peer.cluster_id, peer.public_key):
            return  # an unproven URL may be an impostor relaying our signed requests
        try:
            granted = await self.restricted.fetch_granted(self.client, url, peer)
        except PeerError as exc:
            if isinstance(exc, PeerHttpError) and exc.status == 404:
                log.debug("%s has no listing of granted datasets (older software)", url)
            else:
                log.warning("cannot list the restricted datasets %s grants us: %s", url, exc)
            return
        except P2pdataError as exc:
            log.warning("refused the restricted datasets %s lists for us: %s", url, exc)
            return
        if granted is not None:
            self.catalogs.store_private(peer.cluster_id, granted)

    def full(self, manifest: Manifest) -> Manifest:
        return self.restricted.full(manifest)

    async def prepare_fetch(self, manifest: Manifest) -> tuple[Manifest, Certificate]:
        """The full manifest and a swarm certificate for fetching a restricted dataset."""
        url, key = self.directory.owner(manifest.owner)
        full = self.restricted.full(manifest)
        if is_stub(full):
            full = await self.restricted.fetch_manifest(self.client, url, key, manifest)
        return full, await self.restricted.obtain_certificate(self.client, url, full)

    def endpoints(self, manifest: Manifest) -> list[tuple[str, int]]:
        """SSL torrent endpoints of every peer that has this restricted dataset (owner included)."""
        return self.directory.ssl_seeders(manifest.id, manifest.owner)

    async def renew_loop(self) -> None:
        """Renew the swarm certificates of restricted datasets we fetch or re-seed, half way through.

        A revoked cluster's renewal is refused, so its certificate runs out and
        libtorrent on every peer refuses its new connections from then on.
        """
        while True:
            next_at = await self.renew_due()
            await asyncio.sleep(min(60.0, max(1.0, next_at - self.restricted.clock())))

    async def renew_due(self) -> float:
        """Renew every certificate past half its life; return when the next one will be."""
        restricted = self.restricted
        now = restricted.clock()
        next_at = now + 60.0
        swarming = {swarm.key for swarm in self.transfer.swarms()}
        for manifest in restricted.held():
            path = restricted.certs / f"{manifest.id}.pem"
            if manifest.torrent is None or manifest.torrent.info_hash.hex() not in swarming \
                    or not path.exists():
                continue
            renew_at = Leaf.parse(path.read_bytes()).renew_at
            if renew_at > now:
                next_at = min(next_at, renew_at)
                continue
            try:
                url, _ = self.directory.owner(manifest.owner)
                certificate = await restricted.obtain_certificate(self.client, url, manifest)
            except P2pdataError as exc:
                log.warning("cannot renew the swarm certificate of %s: %s", manifest.ref, exc)
                next_at = min(next_at, now + 30.0)  # try again: the failure may pass
                continue
            self.transfer.set_certificate(manifest.torrent.info_hash.hex(), certificate)
            next_at = min(next_at, Leaf.parse(certificate[0].read_bytes()).renew_at)
        return next_at
