"""The client for other daemons' peer API: bounded, time-limited and strict about what it accepts.

Everything a peer sends is untrusted. Sizes are checked against Content-Length before reading
and again while reading (a peer can lie or omit it), JSON is validated field by field, and
redirects are never followed, so a peer cannot point us at another host.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from p2pdata.catalog.access import H_SIGNATURE, info_proof_ok, sign_request
from p2pdata.catalog.identity import Identity, decode_public_key, fingerprint
from p2pdata.errors import ConfigError, IdentityError
from p2pdata.peers.errors import (
    InvalidPeerUrl,
    PeerBadResponse,
    PeerHttpError,
    PeerTimeout,
    PeerTlsError,
    PeerTooLarge,
    PeerUnreachable,
)
from p2pdata.peers.urls import normalize_peer_url

CLUSTER_ID = re.compile(r"[a-z2-7]{16}")
MANIFEST_ID = re.compile(r"[0-9a-f]{64}")
_ETAG = re.compile(r'"([0-9a-f]{64})"')
_MAX_TEXT = 256
_MAX_HOST = 255
_MAX_ENDPOINTS = 64
_MAX_HAVE = 100_000
HAVE_ASK = 12  # manifest ids one /v1/have?ask= names at most: its path stays under 1024 bytes
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ClientLimits:
    max_json: int = 1024 * 1024
    max_have_json: int = 8 * 1024 * 1024  # 100k manifest ids are ~7 MB of JSON
    max_catalog: int = 32 * 1024 * 1024  # the catalog room's Limits.max_bytes
    max_torrent: int = 64 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 15.0  # longest silence between two chunks
    json_timeout: float = 30.0  # whole request, small answers
    transfer_timeout: float = 300.0  # whole request, catalog and torrent
    # A body must average at least this rate once `rate_grace` seconds have passed: a peer
    # trickling a byte a second otherwise holds a sync for the whole transfer timeout.
    min_rate: int = 16 * 1024  # bytes per second
    rate_grace: float = 5.0


@dataclass(frozen=True)
class PeerInfo:
    cluster_id: str
    public_key: bytes
    name: str
    software_version: str
    peer_api: str
    torrent_endpoints: tuple[tuple[str, int], ...]
    # SSL listen endpoints, for restricted datasets' swarms (empty from older daemons).
    ssl_torrent_endpoints: tuple[tuple[str, int], ...] = ()
    # It signed our nonce with its cluster key, naming the very URL we called as its own:
    # only such a URL is sent requests that matter (restricted datasets).
    proven: bool = False


@dataclass(frozen=True)
class CatalogFetch:
    """`data` is None when the peer answered 304 (unchanged); `etag` is the body's SHA-256 hex."""

    data: bytes | None
    etag: str


def tls_context(
    ca_file: str | os.PathLike[str] | None = None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext | None:
    """The TLS settings for https peers: the CAs to trust (default: the system's) and a
    client certificate to present (its key in `key_file`, or in `cert_file` itself).

    None when nothing is set. Files that cannot be loaded are a ConfigError naming them.
    """
    if ca_file is None and cert_file is None and key_file is None:
        return None
    if key_file is not None and cert_file is None:
        raise ConfigError(f"peer client key {os.fspath(key_file)!r} given without a client "
                          "certificate ([discovery] peer_client_cert)")
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the CA certificates for https peers from "
                          f"{os.fspath(ca_file or '')!r} ([discovery] peer_ca_file): {exc}") from exc
    if cert_file is not None:
        files = " and ".join(repr(os.fspath(f)) for f in (cert_file, key_file) if f is not None)
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the client certificate for https peers from {files} "
                              f"([discovery] peer_client_cert, peer_client_key): {exc}") from exc
    return context


class PeerClient:
    """One aiohttp session for all peers; use as `async with PeerClient() as client`.

    `tls` (see `tls_context`) applies to https peers; by default they are checked against
    the system's CAs.
    """

    def __init__(self, limits: ClientLimits = ClientLimits(), *, user_agent: str = "p2pdata",
                 tls: ssl.SSLContext | None = None, identity: Identity | None = None) -> None:
        self.limits = limits
        # With an identity every request is signed for the URL it goes to: a peer that
        # knows this cluster then gives it a rate-limit budget of its own.
        self.identity = identity
        self._user_agent = user_agent
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PeerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily so the client can be built outside a running loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": self._user_agent},
                # Compressed bodies would make Content-Length checks meaningless.
                auto_decompress=False,
                # Peers are addressed by the URL we hold; no ambient proxies or cookies.
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                connector=aiohttp.TCPConnector(ssl=self._tls if self._tls is not None else True),
            )
        return self._session

    async def info(self, url: str) -> PeerInfo:
        """What the peer says of itself, and whether it proved it: it signs our fresh nonce
        and its own URL with its cluster key (`PeerInfo.proven` when that URL is `url`)."""
        base = normalize_peer_url(url)
        nonce = secrets.token_hex(16)
        body = await self._get(base, f"/v1/info?nonce={nonce}", self.limits.max_json,
                               self.limits.json_timeout)
        data = _load_json(base, "/v1/info", body)
        info = _parse_info(base, data)
        proof = data.get("proof")
        if proof is None:
            return info  # software without proofs: its public catalog only, never our requests
        if not isinstance(proof, str) or not info_proof_ok(info.public_key, nonce, data["peer_api"], proof):
            raise PeerBadResponse(base, f"/v1/info: claims cluster {info.cluster_id} but cannot prove "
                                        "it holds that cluster's key (bad proof)")
        return replace(info, proven=info.peer_api == base)

    async def catalog(self, url: str, etag: str | None = None) -> CatalogFetch:
        return await self._conditional(normalize_peer_url(url), "/v1/catalog", {}, etag)

    async def signed_listing(self, url: str, path: str, headers: dict[str, str],
                             etag: str | None = None) -> CatalogFetch:
        """GET a signed listing (see signed_get) as `catalog` does: no data when unchanged."""
        return await self._conditional(normalize_peer_url(url), path, headers, etag)

    async def _conditional(self, base: str, path: str, headers: dict[str, str],
                           etag: str | None) -> CatalogFetch:
        if etag:
            headers = {**headers, "If-None-Match": f'"{etag}"'}
        async with self._request(
            base, path, self.limits.transfer_timeout, headers, expect=(200, 304)
        ) as response:
            if response.status == 304:
                if etag is None:
                    raise PeerBadResponse(base, f"{path}: 304 Not Modified to a plain GET")
                return CatalogFetch(None, etag)
            data = await _read(base, path, response, self.limits.max_catalog, self.limits)
            header = response.headers.get("ETag")
        digest = hashlib.sha256(data).hexdigest()
        match = _ETAG.fullmatch(header or "")
        if match and match.group(1) != digest:
            raise PeerBadResponse(base, f"{path}: body does not match its ETag")
        return CatalogFetch(data, digest)

    async def torrent(self, url: str, manifest_id: str) -> bytes:
        base = normalize_peer_url(url)
        if not MANIFEST_ID.fullmatch(manifest_id):
            raise ValueError(f"manifest id {manifest_id!r} is not 64 lower-case hex digits")
        return await self._get(
            base,
            f"/v1/datasets/{manifest_id}/torrent",
            self.limits.max_torrent,
            self.limits.transfer_timeout,
        )

    async def have(self, url: str, ask: Sequence[str] = ()) -> tuple[str, ...]:
        """Manifest ids the peer seeds: the public ones, and those of `ask` it seeds (a peer
        names a restricted id only to who names it first: a cluster it was granted to)."""
        base = normalize_peer_url(url)
        have = list(await self._have(base, "/v1/have"))
        for start in range(0, len(ask), HAVE_ASK):
            batch = ask[start:start + HAVE_ASK]
            # Older software ignores ask and lists everything: keep only what was asked.
            have += set(batch) & set(await self._have(base, f"/v1/have?ask={','.join(batch)}"))
        return tuple(dict.fromkeys(have))

    async def _have(self, base: str, path: str) -> tuple[str, ...]:
        body = await self._get(base, path, self.limits.max_have_json, self.limits.json_timeout)
        data = _load_json(base, "/v1/have", body)
        if not isinstance(data, dict):
            raise PeerBadResponse(base, f"/v1/have: expected an object, got {_kind(data)}")
        datasets = data.get("datasets")
        if not isinstance(datasets, list):
            raise PeerBadResponse(base, f"/v1/have: datasets: expected a list, got {_kind(datasets)}")
        if len(datasets) > _MAX_HAVE:
            raise PeerBadResponse(base, f"/v1/have: {len(datasets)} datasets, over {_MAX_HAVE}")
        for index, item in enumerate(datasets):
            if not isinstance(item, str) or not MANIFEST_ID.fullmatch(item):
                raise PeerBadResponse(
                    base, f"/v1/have: datasets[{index}] is not a manifest id (64 hex digits)"
                )
        return tuple(dict.fromkeys(datasets))

    async def signed_get(self, url: str, path: str, headers: dict[str, str],
                         limit: int) -> tuple[bytes, dict[str, str]]:
        """GET a restricted door with request-signature headers; the body and response headers.

        `path` (with its query) must be exactly what was signed, so it is sent as is.
        """
        base = normalize_peer_url(url)
        async with self._request(base, path, self.limits.transfer_timeout, headers,
                                 expect=(200,)) as response:
            body = await _read(base, path, response, limit, self.limits)
            return body, dict(response.headers)

    async def _get(self, base: str, path: str, limit: int, timeout: float) -> bytes:
        async with self._request(base, path, timeout, {}, expect=(200,)) as response:
            return await _read(base, path, response, limit, self.limits)

    def _request(
        self,
        base: str,
        path: str,
        timeout: float,
        headers: dict[str, str],
        expect: tuple[int, ...],
    ) -> _Request:
        return _Request(self, base, path, timeout, headers, expect)


class _Request:
    """Context manager around one GET that turns every failure into a PeerRequestError."""

    def __init__(
        self,
        client: PeerClient,
        base: str,
        path: str,
        timeout: float,
        headers: dict[str, str],
        expect: tuple[int, ...],
    ) -> None:
        self._client = client
        self._base = base
        self._path = path
        self._timeout = aiohttp.ClientTimeout(
            total=timeout,
            sock_connect=client.limits.connect_timeout,
            sock_read=client.limits.read_timeout,
        )
        self._headers = {"Accept-Encoding": "identity", **headers}
        if client.identity is not None and H_SIGNATURE not in headers:
            self._headers.update(sign_request(client.identity, "GET", path, base, now=int(time.time()),
                                              url=base))
        self._expect = expect
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        try:
            response = await self._client._get_session().get(
                self._base + self._path,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except Exception as exc:
            raise _translate(self._base, self._path, exc) from exc
        self._response = response
        if response.status not in self._expect:
            response.release()
            where = response.headers.get("Location")
            detail = f"{self._path}: HTTP {response.status} {response.reason or ''}".rstrip()
            if where is not None:
                detail += " (redirects are not followed)"
            raise PeerHttpError(self._base, detail, response.status)
        return response

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._response is not None:
            self._response.release()
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            translated = _translate(self._base, self._path, exc)
            if translated is not exc:
                raise translated from exc


def _translate(base: str, path: str, exc: BaseException) -> BaseException:
    """Map aiohttp/asyncio failures to PeerRequestError subclasses; leave ours and cancellation."""
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return PeerTimeout(base, f"{path}: no answer in time")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        reason = getattr(cert, "verify_message", None) or str(cert)
        return PeerTlsError(base, f"{path}: TLS certificate not trusted ({reason}); if a private "
                                  "CA signed it, trust that CA with [discovery] peer_ca_file")
    if isinstance(exc, aiohttp.ClientSSLError):
        return PeerTlsError(base, f"{path}: TLS handshake failed ({exc.os_error})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return PeerUnreachable(base, f"{path}: cannot connect ({exc.os_error or exc})")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return PeerBadResponse(base, f"{path}: broken response body ({exc})")
    if isinstance(exc, aiohttp.ClientResponseError):
        return PeerBadResponse(base, f"{path}: malformed HTTP response ({exc.message})")
    if isinstance(exc, aiohttp.ServerDisconnectedError) and base.startswith("https:"):
        # What TLS 1.3 shows of a refused client certificate: the alert itself is not passed on.
        return PeerUnreachable(base, f"{path}: the peer closed the connection without answering "
                                     "(an https peer that wants a client certificate does that "
                                     "when it has none it accepts: [discovery] peer_client_cert)")
    if isinstance(exc, aiohttp.ClientError):
        return PeerUnreachable(base, f"{path}: connection failed ({type(exc).__name__}: {exc})")
    return exc


async def _read(base: str, path: str, response: aiohttp.ClientResponse, limit: int,
                limits: ClientLimits) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise PeerTooLarge(
            base, f"{path}: announces {response.content_length} bytes, over the limit of {limit}"
        )
    chunks: list[bytes] = []
    size = 0
    started = time.monotonic()
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise PeerTooLarge(base, f"{path}: body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        elapsed = time.monotonic() - started
        if elapsed > limits.rate_grace and size < limits.min_rate * elapsed:
            raise PeerTimeout(base, f"{path}: {size} bytes in {elapsed:.0f} s, under the minimum "
                                    f"rate of {limits.min_rate} bytes/s")
    return b"".join(chunks)


def _load_json(base: str, path: str, body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PeerBadResponse(base, f"{path}: not valid JSON ({exc})") from exc


def _kind(value: Any) -> str:
    return type(value).__name__


def _text(base: str, data: dict[str, Any], key: str, limit: int = _MAX_TEXT) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise PeerBadResponse(base, f"/v1/info: {key}: expected a string, got {_kind(value)}")
    if len(value) > limit:
        raise PeerBadResponse(base, f"/v1/info: {key}: {len(value)} characters, over {limit}")
    return value


def _parse_info(base: str, data: Any) -> PeerInfo:
    if not isinstance(data, dict):
        raise PeerBadResponse(base, f"/v1/info: expected an object, got {_kind(data)}")
    cluster_id = _text(base, data, "cluster_id")
    if not CLUSTER_ID.fullmatch(cluster_id):
        raise PeerBadResponse(base, f"/v1/info: cluster_id {cluster_id!r} is not a cluster id")
    try:
        public_key = decode_public_key(_text(base, data, "public_key"))
    except IdentityError as exc:
        raise PeerBadResponse(base, f"/v1/info: public_key: {exc}") from exc
    if fingerprint(public_key) != cluster_id:
        raise PeerBadResponse(
            base, f"/v1/info: cluster_id {cluster_id} is not the fingerprint of its public key"
        )
    try:
        peer_api = normalize_peer_url(_text(base, data, "peer_api", 2048))
    except InvalidPeerUrl as exc:
        raise PeerBadResponse(base, f"/v1/info: peer_api: {exc}") from exc
    return PeerInfo(
        cluster_id=cluster_id,
        public_key=public_key,
        name=_text(base, data, "name"),
        software_version=_text(base, data, "software_version", 64),
        peer_api=peer_api,
        torrent_endpoints=_endpoints(base, data, "torrent_endpoints"),
        ssl_torrent_endpoints=_endpoints(base, data, "ssl_torrent_endpoints", default=[]),
    )


def _endpoints(base: str, data: dict[str, Any], key: str,
               default: list[Any] | None = None) -> tuple[tuple[str, int], ...]:
    raw_endpoints = data.get(key, default)
    if not isinstance(raw_endpoints, list):
        raise PeerBadResponse(base, f"/v1/info: {key}: expected a list, got {_kind(raw_endpoints)}")
    if len(raw_endpoints) > _MAX_ENDPOINTS:
        raise PeerBadResponse(
            base, f"/v1/info: {len(raw_endpoints)} {key}, over {_MAX_ENDPOINTS}"
        )
    endpoints = []
    for index, item in enumerate(raw_endpoints):
        ok = (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and 0 < len(item[0]) <= _MAX_HOST
            and type(item[1]) is int  # bool is an int subclass; refuse it
            and 0 < item[1] < 65536
        )
        if not ok:
            raise PeerBadResponse(
                base, f"/v1/info: {key}[{index}]: expected [host, port], got {item!r:.80}"
            )
        endpoints.append((item[0], item[1]))
    return tuple(endpoints)
