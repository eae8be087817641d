"""The catalog room: manifests, canonical encoding, signing, catalogs, trust and search.

Typical use (CLI / daemon)::

    identity = Identity.load(home)
    conn = open_db(home / "state.db")
    local = LocalCatalog(conn, identity)
    local.add(scan_dataset(path, name=..., version=..., owner=identity.cluster_id, now=now))
    blob = local.signed(now, lifetime)                         # serve / export

    trust = TrustStore(conn, trust_on_first_use=config_tofu)
    store = CatalogStore(conn)
    verified = verify_catalog(blob, trusted=trust.is_trusted, now=now,
                              held=store.held(cluster))        # cluster: who we fetched from
    store.store(verified, source=peer_url)
    store.search("imagenet", format="parquet"); store.resolve("imagenet@1.2")
"""

from p2pdata.catalog.catalog import (
    Catalog,
    HeldCatalog,
    Limits,
    TrustCheck,
    VerifiedCatalog,
    sign_catalog,
    verify_catalog,
)
from p2pdata.catalog.encoding import decode, encode
from p2pdata.catalog.identity import (
    Identity,
    decode_public_key,
    encode_public_key,
    fingerprint,
    verify_signature,
)
from p2pdata.catalog.local import LocalCatalog
from p2pdata.catalog.manifest import (
    ACCESS_MODES,
    FORMATS,
    Access,
    Column,
    FileEntry,
    Manifest,
    Torrent,
    check_name,
    check_relative_path,
    parse_ref,
)
from p2pdata.catalog.merkle import V2Hashes
from p2pdata.catalog.names import PublisherNames
from p2pdata.catalog.publish import Scan, detect_format, hash_file, scan_dataset, scan_for_publish
from p2pdata.catalog.store import CatalogStore, HeldInfo, SearchResult, version_key
from p2pdata.catalog.trust import TrustedCluster, TrustStore, check_cluster_id

__all__ = [
    "ACCESS_MODES",
    "FORMATS",
    "Access",
    "Catalog",
    "CatalogStore",
    "Column",
    "FileEntry",
    "HeldCatalog",
    "HeldInfo",
    "Identity",
    "Limits",
    "LocalCatalog",
    "Manifest",
    "PublisherNames",
    "Scan",
    "SearchResult",
    "Torrent",
    "TrustCheck",
    "TrustStore",
    "TrustedCluster",
    "V2Hashes",
    "VerifiedCatalog",
    "check_cluster_id",
    "check_name",
    "check_relative_path",
    "decode",
    "decode_public_key",
    "detect_format",
    "encode",
    "encode_public_key",
    "fingerprint",
    "hash_file",
    "parse_ref",
    "scan_dataset",
    "scan_for_publish",
    "sign_catalog",
    "verify_catalog",
    "verify_signature",
    "version_key",
]
