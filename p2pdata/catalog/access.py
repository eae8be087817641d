"""Who may use a restricted dataset: the grants table, and signed peer requests.

A request to a restricted door carries the caller's cluster id, public key, a
timestamp, a random nonce and an Ed25519 signature over the canonical bytes of
(method, path with query, time, nonce, caller, audience, URL). The audience is the
cluster asked, so a request signed for one owner cannot be replayed to
another; the URL is the peer API it was sent to, so an impostor claiming the
owner's identity at another URL cannot relay it to the owner. The verifier is a plain class with a clock: it refuses bad
signatures, keys that do not match the claimed cluster id, timestamps outside
the window, and nonces it has already seen inside the window (replays). Seen
nonces are kept in SQLite, so a restart does not reopen the window to replays.
"""

from __future__ import annotations

import base64
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from p2pdata.catalog._sql import transaction
from p2pdata.catalog.encoding import encode
from p2pdata.catalog.identity import (
    Identity,
    decode_public_key,
    encode_public_key,
    fingerprint,
    verify_signature,
)
from p2pdata.db import add_columns
from p2pdata.errors import IdentityError, P2pdataError

H_CLUSTER = "X-P2pdata-Cluster"
H_KEY = "X-P2pdata-Key"
H_TIME = "X-P2pdata-Time"
H_NONCE = "X-P2pdata-Nonce"
H_SIGNATURE = "X-P2pdata-Signature"
H_URL = "X-P2pdata-Url"  # the peer API base URL the request was signed for

_NONCE = re.compile(r"[0-9a-f]{32}")
_DOMAIN = "p2pdata-request-v1"
_INFO_DOMAIN = "p2pdata-info-v1"


class AccessDenied(P2pdataError):
    """The caller is known but not allowed (HTTP 403)."""


class BadRequestSignature(P2pdataError):
    """The request does not prove who sent it, or not now, or not for the first time (HTTP 401)."""


class RequestExpired(BadRequestSignature):
    pass


class RequestReplayed(BadRequestSignature):
    pass


def _canonical(method: str, path: str, time: int, nonce: str, cluster: str, audience: str,
               url: str) -> bytes:
    data: dict[str, object] = {
        "domain": _DOMAIN,
        "method": method.upper(),
        "path": path,
        "time": time,
        "nonce": nonce,
        "cluster": cluster,
        "audience": audience,
    }
    if url:  # the URL the request was sent to: a relay at another URL cannot pass it on
        data["url"] = url
    return encode(data)


def sign_request(identity: Identity, method: str, path: str, audience: str, *, now: int,
                 nonce: str | None = None, url: str = "") -> dict[str, str]:
    """The headers that sign `method path` (path with its query) for the cluster `audience`
    at the peer API `url` (its normalised base URL)."""
    nonce = nonce or secrets.token_hex(16)
    data = _canonical(method, path, now, nonce, identity.cluster_id, audience, url)
    headers = {
        H_CLUSTER: identity.cluster_id,
        H_KEY: encode_public_key(identity.public_key),
        H_TIME: str(now),
        H_NONCE: nonce,
        H_SIGNATURE: base64.b64encode(identity.sign(data)).decode(),
    }
    if url:
        headers[H_URL] = url
    return headers


def _info_canonical(nonce: str, cluster: str, peer_api: str) -> bytes:
    return encode({"domain": _INFO_DOMAIN, "nonce": nonce, "cluster": cluster, "peer_api": peer_api})


def prove_info(identity: Identity, nonce: str, peer_api: str) -> str:
    """A daemon's proof, for a client's `nonce`, that it holds its cluster key and that
    `peer_api` is its own URL (a relay at another URL can pass the proof on, but the
    client sees that the URL in it is not the one it called)."""
    return base64.b64encode(identity.sign(_info_canonical(nonce, identity.cluster_id, peer_api))).decode()


def info_proof_ok(key: bytes, nonce: str, peer_api: str, proof: str) -> bool:
    try:
        signature = base64.b64decode(proof, validate=True)
    except ValueError:
        return False
    return verify_signature(key, _info_canonical(nonce, fingerprint(key), peer_api), signature)


@dataclass(frozen=True)
class SignedRequest:
    cluster: str
    key: bytes
    time: int
    nonce: str


def claimed_caller(headers: Mapping[str, str]) -> tuple[str, bytes] | None:
    """(cluster, key) a request claims to come from, before any signature is checked."""
    try:
        key = decode_public_key(headers[H_KEY])
    except (KeyError, IdentityError):
        return None
    cluster = headers.get(H_CLUSTER, "")
    return (cluster, key) if fingerprint(key) == cluster else None


def read_signed_request(method: str, path: str, headers: Mapping[str, str], audience: str,
                        urls: Iterable[str] | None = None) -> SignedRequest:
    """Who signed this request for `audience`; BadRequestSignature if it does not prove it.

    With `urls` (this daemon's own peer API URLs), the request must be signed for one of
    them: a request sent to an impostor at another URL cannot be relayed here. The time
    window and replays are the caller's to check."""
    url = headers.get(H_URL, "")
    if urls is not None and url not in set(urls):
        raise BadRequestSignature(f"request signed for {url or 'no URL'}, not for this peer API "
                                  f"({', '.join(urls)}): it was sent to another address")
    try:
        cluster = headers[H_CLUSTER]
        key = decode_public_key(headers[H_KEY])
        raw_time = headers[H_TIME]
        nonce = headers[H_NONCE]
        signature = base64.b64decode(headers[H_SIGNATURE], validate=True)
    except KeyError as exc:
        raise BadRequestSignature(f"unsigned request: no {exc.args[0]} header") from None
    except (IdentityError, ValueError) as exc:
        raise BadRequestSignature(f"malformed request signature: {exc}") from None
    if not raw_time.isdigit() or len(raw_time) > 12 or not _NONCE.fullmatch(nonce):
        raise BadRequestSignature("malformed request time or nonce")
    if fingerprint(key) != cluster:
        raise BadRequestSignature(f"key is not the key of cluster {cluster}")
    sent = int(raw_time)
    if not verify_signature(key, _canonical(method, path, sent, nonce, cluster, audience, url), signature):
        raise BadRequestSignature(f"bad request signature from {cluster}")
    return SignedRequest(cluster, key, sent, nonce)


_NONCES = """
CREATE TABLE IF NOT EXISTS request_nonces (
    nonce TEXT PRIMARY KEY,
    forget_after INTEGER NOT NULL   -- past this, the time check alone refuses the request
);
CREATE INDEX IF NOT EXISTS request_nonces_forget ON request_nonces (forget_after);
"""
# Who spent each nonce, and whether it held a grant then (added later: older tables lack them).
_NONCE_COLUMNS = {"cluster": "TEXT NOT NULL DEFAULT ''", "favoured": "INTEGER NOT NULL DEFAULT 0"}


class RequestVerifier:
    """Checks signed requests addressed to `audience`; remembers nonces so replays fail.

    Nonces are kept (in `conn`, so they outlive a restart) only while their
    timestamp is inside the window: after that the time check refuses the
    request anyway. The store is bounded; when it is full of live nonces new
    requests are refused rather than old nonces forgotten, because forgetting
    one would let it be replayed.

    Anyone can sign validly with a key of its own, so the bounds are split: each cluster
    holds at most `per_cluster` live nonces, and only the nonces of clusters not
    `favoured` (holding no grant) count against `max_nonces`. A flood by strangers,
    however many keys it makes, fills the strangers' share only; favoured clusters are
    bounded by their number (the owner's grants) times `per_cluster`. A stranger sees the
    same answers as before, so nothing tells it which clusters are favoured.
    """

    def __init__(self, audience: str, conn: sqlite3.Connection, clock: Callable[[], float], *,
                 window: int = 60, max_nonces: int = 100_000, per_cluster: int = 1_000,
                 favoured: Callable[[str], bool] = lambda cluster: False,
                 urls: Callable[[], Iterable[str]] | None = None) -> None:
        self.audience = audience
        self.urls = urls  # this daemon's own peer API URLs; requests must be signed for one
        self.conn = conn
        self.clock = clock
        self.window = window
        self.max_nonces = max_nonces
        self.per_cluster = per_cluster
        self.favoured = favoured
        conn.executescript(_NONCES)
        add_columns(conn, "request_nonces", _NONCE_COLUMNS.items())
        conn.execute("CREATE INDEX IF NOT EXISTS request_nonces_cluster ON request_nonces (cluster)")
        self._pruned_at: int | None = None
        self._count = conn.execute(  # strangers' live nonces, the ones max_nonces bounds
            "SELECT count(*) FROM request_nonces WHERE favoured = 0").fetchone()[0]

    def verify(self, method: str, path: str, headers: Mapping[str, str]) -> str:
        """Return the caller's cluster id, or raise BadRequestSignature."""
        signed = read_signed_request(method, path, headers, self.audience,
                                     None if self.urls is None else tuple(self.urls()))
        cluster, sent, nonce = signed.cluster, signed.time, signed.nonce
        now = int(self.clock())
        self._forget_old(now)
        if abs(now - sent) > self.window:
            raise RequestExpired(f"request from {cluster} is {now - sent} s old "
                                 f"(window ±{self.window} s): check the clocks")
        if self.conn.execute("SELECT 1 FROM request_nonces WHERE nonce = ?", (nonce,)).fetchone():
            raise RequestReplayed(f"request from {cluster} replays nonce {nonce}")
        favoured = self.favoured(cluster)
        live = self.conn.execute("SELECT count(*) FROM request_nonces WHERE cluster = ?",
                                 (cluster,)).fetchone()[0]
        if live >= self.per_cluster or (not favoured and self._count >= self.max_nonces):
            raise BadRequestSignature("too many signed requests in the window; try again shortly")
        self.conn.execute("INSERT INTO request_nonces (nonce, forget_after, cluster, favoured) "
                          "VALUES (?, ?, ?, ?)", (nonce, sent + self.window, cluster, int(favoured)))
        self._count += not favoured
        return cluster

    def _forget_old(self, now: int) -> None:
        if now == self._pruned_at:  # once a second is enough: it is a write
            return
        # RETURNING: SQLite 3.35+ (Debian 12 has 3.40); the strangers' rows leave their count.
        self._count -= sum(row[0] for row in self.conn.execute(
            "DELETE FROM request_nonces WHERE forget_after < ? RETURNING favoured = 0", (now,)))
        self._pruned_at = now


_GRANTS = """
CREATE TABLE IF NOT EXISTS restricted_grants (
    dataset TEXT NOT NULL,   -- dataset name: a grant covers every version
    cluster TEXT NOT NULL,
    granted INTEGER NOT NULL,
    PRIMARY KEY (dataset, cluster)
);
"""


@dataclass(frozen=True)
class Grant:
    dataset: str
    cluster: str
    granted: int


class GrantTable:
    """The owner's grants, in the daemon's SQLite database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.executescript(_GRANTS)

    def grant(self, dataset: str, cluster: str, now: int) -> bool:
        """True if this is a new grant."""
        with transaction(self.conn):
            return bool(self.conn.execute(
                "INSERT OR IGNORE INTO restricted_grants VALUES (?, ?, ?)", (dataset, cluster, now)
            ).rowcount)

    def revoke(self, dataset: str, cluster: str) -> bool:
        """True if there was a grant to revoke."""
        with transaction(self.conn):
            return bool(self.conn.execute(
                "DELETE FROM restricted_grants WHERE dataset = ? AND cluster = ?", (dataset, cluster)
            ).rowcount)

    def allowed(self, dataset: str, cluster: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM restricted_grants WHERE dataset = ? AND cluster = ?", (dataset, cluster)
        ).fetchone() is not None

    def any_to(self, cluster: str) -> bool:
        """Whether `cluster` holds any grant."""
        return self.conn.execute(
            "SELECT 1 FROM restricted_grants WHERE cluster = ? LIMIT 1", (cluster,)
        ).fetchone() is not None

    def list(self, dataset: str | None = None) -> list[Grant]:
        rows = self.conn.execute(
            "SELECT dataset, cluster, granted FROM restricted_grants"
            + (" WHERE dataset = ?" if dataset else "") + " ORDER BY dataset, cluster",
            (dataset,) if dataset else (),
        ).fetchall()
        return [Grant(row[0], row[1], row[2]) for row in rows]
