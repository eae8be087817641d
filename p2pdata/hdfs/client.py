"""An asyncio WebHDFS client (aiohttp) that streams, retries what is safe, and types errors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import ssl as ssl_module
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import parse_qs, quote, quote_plus, urlencode, urljoin, urlsplit

import aiohttp

from p2pdata.hdfs.errors import (
    HdfsAlreadyExists,
    HdfsConnectionError,
    HdfsError,
    HdfsFileNotFound,
    HdfsPermissionDenied,
    HdfsRemoteError,
    HdfsTlsError,
    HdfsUnsupportedOperation,
)
from p2pdata.hdfs.tiers import policy_name, resolve_tier

log = logging.getLogger(__name__)

Body = bytes | AsyncIterable[bytes]
Params = Mapping[str, Any] | Sequence[tuple[str, Any]]

_ERRORS: dict[str, type[HdfsRemoteError]] = {
    "FileNotFoundException": HdfsFileNotFound,
    "AccessControlException": HdfsPermissionDenied,
    "SecurityException": HdfsPermissionDenied,
    "FileAlreadyExistsException": HdfsAlreadyExists,
    "AlreadyBeingCreatedException": HdfsAlreadyExists,
    "UnsupportedOperationException": HdfsUnsupportedOperation,
}
# Errors that a retry cannot fix, even when the server sent them with a 5xx status.
_PERMANENT = (HdfsFileNotFound, HdfsPermissionDenied, HdfsAlreadyExists, HdfsUnsupportedOperation)
_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 5


@dataclass(frozen=True)
class FileStatus:
    path: str  # the path asked about, or for list() the child's full path
    type: str  # FILE, DIRECTORY or SYMLINK
    length: int
    owner: str
    group: str
    permission: str
    replication: int
    block_size: int
    modification_time: int  # milliseconds since the epoch
    storage_policy: str | None  # the inode's own policy; None if unset (inherited)
    ec_policy: str | None = None  # the erasure coding policy (Hadoop 3), None if replicated

    @property
    def is_dir(self) -> bool:
        return self.type == "DIRECTORY"

    @classmethod
    def from_json(cls, path: str, data: Mapping[str, Any]) -> FileStatus:
        return cls(
            path=path,
            type=data["type"],
            length=int(data.get("length", 0)),
            owner=data.get("owner", ""),
            group=data.get("group", ""),
            permission=data.get("permission", ""),
            replication=int(data.get("replication", 0)),
            block_size=int(data.get("blockSize", 0)),
            modification_time=int(data.get("modificationTime", 0)),
            storage_policy=policy_name(data.get("storagePolicy")),
            ec_policy=data.get("ecPolicy") or None,
        )


def _join(parent: str, child: str) -> str:
    return parent.rstrip("/") + "/" + child if child else parent


class WebHdfsClient:
    """WebHDFS over aiohttp.

    ``url`` is ``http://``, ``https://``, ``webhdfs://`` or ``swebhdfs://`` (TLS) with the
    NameNode's HTTP host and port. ``ca_file`` is a PEM file of the CA certificates to
    trust for TLS instead of the system's (``ssl`` takes a whole context instead).
    ``delegation`` is a delegation token, sent instead of ``user`` on every request,
    the DataNode redirects included; it never appears in logs or error messages.
    ``storagepolicy_command`` is the cluster's ``hdfs storagepolicies`` command line,
    used where WebHDFS lacks SETSTORAGEPOLICY. ``timeout`` bounds a request; a file's bytes
    (CREATE, APPEND, OPEN) take as long as they keep moving, but never ``timeout`` without
    moving: a big file on a slow link must not fail on the clock alone.
    """

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        delegation: str | None = None,
        storagepolicy_command: Sequence[str] | None = None,
        ssl: ssl_module.SSLContext | bool | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        retries: int = 4,
        backoff: float = 0.2,
        timeout: float = 300.0,
        chunk_size: int = 1 << 20,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        parts = urlsplit(url)
        scheme = {"webhdfs": "http", "swebhdfs": "https"}.get(parts.scheme, parts.scheme)
        if scheme not in ("http", "https") or not parts.netloc:
            raise HdfsError(f"WebHDFS URL {url!r} must look like http://namenode:9870")
        if ca_file is not None:
            if scheme != "https":
                raise HdfsError(f"ca_file is for https:// or swebhdfs:// URLs, not {url!r}")
            if ssl is not None:
                raise HdfsError("give either ssl or ca_file, not both")
            ssl = _trusting(ca_file)
        self.base_url = f"{scheme}://{parts.netloc}/webhdfs/v1"
        self.user = user
        self.delegation = delegation or None
        self.storagepolicy_command = list(storagepolicy_command or [])
        self.retries = retries
        self.backoff = backoff
        self.chunk_size = chunk_size
        self._ssl = ssl
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=30)
        self._stream_timeout = aiohttp.ClientTimeout(sock_connect=30, sock_read=timeout)
        self._session = session
        self._own_session = session is None
        self._has_setstoragepolicy: bool | None = None  # learnt on first use

    # -- plumbing -------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> WebHdfsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _url(self, path: str) -> str:
        if not path.startswith("/"):
            raise HdfsError(f"HDFS path {path!r} must be absolute")
        return self.base_url + quote(path)

    def _auth(self) -> list[tuple[str, str]]:
        if self.delegation:
            return [("delegation", self.delegation)]
        return [("user.name", self.user)] if self.user else []

    def _params(self, op: str, extra: Params | None) -> list[tuple[str, str]]:
        # A list of pairs, because some ops repeat a key (GETXATTRS's xattr.name).
        params = [("op", op), *self._auth()]
        pairs = extra.items() if isinstance(extra, Mapping) else (extra or ())
        for key, value in pairs:
            if value is not None:
                params.append((key, str(value).lower() if isinstance(value, bool) else str(value)))
        return params

    def _authorized(self, location: str) -> str:
        """A redirect target carrying this client's credentials.

        A NameNode without security drops the token from its redirects; one with security
        copies it. Either way the DataNode gets the token (or user name) the client has.
        """
        query = parse_qs(urlsplit(location).query)
        missing = [(k, v) for k, v in self._auth()
                   if k not in query and not (k == "user.name" and "delegation" in query)]
        if not missing:
            return location
        return location + ("&" if urlsplit(location).query else "?") + urlencode(missing)

    def _redact(self, text: str) -> str:
        """``text`` without the delegation token (in any URL encoding)."""
        if self.delegation:
            for form in {self.delegation, quote(self.delegation, safe=""),
                         quote_plus(self.delegation)}:
                text = text.replace(form, "<delegation token>")
        return text

    def _fail(self, error: HdfsError, cause: BaseException) -> NoReturn:
        # aiohttp's errors may quote request URLs, and with them the token: drop such a
        # cause from the chain so tracebacks cannot print it.
        if self.delegation and self._redact(f"{cause!r} {cause}") != f"{cause!r} {cause}":
            raise error from None
        raise error from cause

    def _transport_error(self, op: str, path: str, exc: BaseException) -> NoReturn:
        if isinstance(exc, aiohttp.ClientSSLError):
            cert = getattr(exc, "certificate_error", None)
            reason = getattr(cert, "verify_message", None) or str(cert or exc.os_error)
            self._fail(HdfsTlsError(self._redact(
                f"WebHDFS {op} {path}: TLS with {exc.host}:{exc.port} failed: {reason}. "
                "If a private CA signed the server's certificate, trust it with ca_file "
                "(store.ca_file)")), exc)
        self._fail(HdfsConnectionError(self._redact(f"WebHDFS {op} {path}: {exc!r}")), exc)

    async def _raise_for(self, resp: aiohttp.ClientResponse, op: str, path: str) -> None:
        if resp.status < 400:
            return
        text = self._redact(await resp.text(errors="replace"))
        try:
            remote = json.loads(text)["RemoteException"]
            name = remote.get("exception", "RemoteException")
            message = remote.get("message", "")
            java_class = remote.get("javaClassName", "")
        except (ValueError, KeyError, TypeError):
            name, message, java_class = f"HTTP {resp.status}", text.strip()[:500], ""
        cls = _ERRORS.get(name, HdfsRemoteError)
        if name == "IllegalArgumentException" and "No enum constant" in message:
            cls = HdfsUnsupportedOperation  # an op this Hadoop version does not know
        error = cls(name, f"{message} ({op} {path})", resp.status, java_class)
        raise error

    async def _send(self, method: str, url: str, params: Params | None,
                    redirect: bool, stream: bool = False) -> aiohttp.ClientResponse:
        """One request; redirects are followed here so that each hop carries credentials.
        ``stream``: the response is a file's bytes, bounded by how long they stall."""
        session = self._get_session()
        timeout = self._stream_timeout if stream else self._timeout
        resp = await session.request(method, url, params=params, allow_redirects=False,
                                     ssl=self._ssl, timeout=timeout)
        if not redirect:
            return resp
        for _ in range(_MAX_REDIRECTS):
            location = resp.headers.get("Location")
            if resp.status not in _REDIRECTS or not location:
                return resp
            resp.release()
            target = self._authorized(urljoin(str(resp.url), location))
            resp = await session.request(method, target, allow_redirects=False, ssl=self._ssl,
                                         timeout=timeout)
        resp.release()
        raise HdfsError(f"WebHDFS {method} {urlsplit(url).path}: more than {_MAX_REDIRECTS} "
                        "redirects")

    async def _request(
        self,
        method: str,
        op: str,
        path: str,
        params: Params | None = None,
        *,
        idempotent: bool,
        redirect: bool = True,
        stream: bool = False,
    ) -> aiohttp.ClientResponse:
        """One request (no body), retried with backoff if the operation is idempotent.

        The caller owns the returned response and must release it.
        """
        url = self._url(path)
        attempts = self.retries + 1 if idempotent else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                resp = await self._send(method, url, self._params(op, params), redirect, stream)
            except (TimeoutError, aiohttp.ClientError) as exc:
                if last or isinstance(exc, aiohttp.ClientSSLError):
                    self._transport_error(op, path, exc)
                reason = self._redact(repr(exc))
            else:
                try:
                    await self._raise_for(resp, op, path)
                    return resp
                except HdfsRemoteError as exc:
                    resp.release()
                    if last or exc.status < 500 or isinstance(exc, _PERMANENT):
                        raise
                    reason = str(exc)
            delay = self.backoff * 2**attempt
            log.debug("WebHDFS %s %s failed (%s), retry in %.1fs", op, path, reason, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _json(
        self, method: str, op: str, path: str, params: Params | None = None,
        *, idempotent: bool,
    ) -> Any:
        resp = await self._request(method, op, path, params, idempotent=idempotent)
        async with resp:
            return await resp.json(content_type=None)

    async def _send_body(
        self, method: str, op: str, path: str, params: Params, body: Body,
        expect: int,
    ) -> None:
        """The two-step write: ask the NameNode where, then stream the body to the DataNode."""
        # Step one sends no data and changes nothing, so it may be retried.
        resp = await self._request(method, op, path, params, idempotent=True, redirect=False)
        async with resp:
            location = resp.headers.get("Location")
        if resp.status != 307 or not location:
            raise HdfsError(f"WebHDFS {op} {path}: expected a 307 redirect, got {resp.status}")
        # Step two consumes the body, so it is never retried. It may take as long as the
        # bytes keep moving: each chunk taken puts the deadline off (aiohttp has no timeout
        # for a peer that stops reading).
        idle = self._timeout.total
        try:
            async with asyncio.timeout(idle) as stalled:

                async def moving(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
                    async for chunk in chunks:
                        yield chunk
                        stalled.reschedule(asyncio.get_running_loop().time() + idle)

                async with self._get_session().request(
                    method, self._authorized(urljoin(str(resp.url), location)),
                    data=body if isinstance(body, bytes) else moving(body), ssl=self._ssl,
                    headers={"Content-Type": "application/octet-stream"},
                    timeout=self._stream_timeout,
                ) as resp:
                    await self._raise_for(resp, op, path)
                    if resp.status != expect:
                        raise HdfsError(f"WebHDFS {op} {path}: unexpected HTTP {resp.status}")
        except TimeoutError as exc:
            if stalled.expired():
                self._fail(HdfsConnectionError(
                    f"WebHDFS {op} {path}: no byte moved for {idle:g} s"), exc)
            self._transport_error(op, path, exc)
        except aiohttp.ClientError as exc:
            self._transport_error(op, path, exc)

    # -- files and directories ----------------------------------------------------

    async def mkdirs(self, path: str, permission: str | None = None) -> bool:
        data = await self._json("PUT", "MKDIRS", path, {"permission": permission},
                                idempotent=True)
        return bool(data["boolean"])

    async def create(
        self,
        path: str,
        data: Body,
        *,
        overwrite: bool = False,
        blocksize: int | None = None,
        replication: int | None = None,
        permission: str | None = None,
        buffersize: int | None = None,
    ) -> None:
        """Write a file; ``data`` is bytes or an async iterable of chunks (streamed)."""
        params = {"overwrite": overwrite, "blocksize": blocksize, "replication": replication,
                  "permission": permission, "buffersize": buffersize}
        await self._send_body("PUT", "CREATE", path, params, data, expect=201)

    async def append(self, path: str, data: Body, *, buffersize: int | None = None) -> None:
        await self._send_body("POST", "APPEND", path, {"buffersize": buffersize}, data,
                              expect=200)

    async def open(
        self, path: str, *, offset: int = 0, length: int | None = None,
        chunk_size: int | None = None,
    ) -> AsyncIterator[bytes]:
        """Stream a file's bytes in chunks. Close early with ``contextlib.aclosing``."""
        resp = await self._request("GET", "OPEN", path, {"offset": offset or None,
                                                         "length": length}, idempotent=True,
                                   stream=True)
        async with resp:
            try:
                async for chunk in resp.content.iter_chunked(chunk_size or self.chunk_size):
                    yield chunk
            except (TimeoutError, aiohttp.ClientError) as exc:
                self._transport_error("OPEN", path, exc)

    async def read(self, path: str, *, offset: int = 0, length: int | None = None) -> bytes:
        parts = []
        async with contextlib.aclosing(self.open(path, offset=offset, length=length)) as chunks:
            async for chunk in chunks:
                parts.append(chunk)
        return b"".join(parts)

    async def concat(self, target: str, sources: Iterable[str]) -> None:
        resp = await self._request("POST", "CONCAT", target, {"sources": ",".join(sources)},
                                   idempotent=False)
        resp.release()

    async def rename(self, source: str, destination: str) -> bool:
        data = await self._json("PUT", "RENAME", source, {"destination": destination},
                                idempotent=False)
        return bool(data["boolean"])

    async def delete(self, path: str, *, recursive: bool = False) -> bool:
        # Deleting twice gives the same end state, so a retry is safe.
        data = await self._json("DELETE", "DELETE", path, {"recursive": recursive},
                                idempotent=True)
        return bool(data["boolean"])

    async def status(self, path: str) -> FileStatus:
        data = await self._json("GET", "GETFILESTATUS", path, idempotent=True)
        return FileStatus.from_json(path, data["FileStatus"])

    async def exists(self, path: str) -> bool:
        try:
            await self.status(path)
        except HdfsFileNotFound:
            return False
        return True

    async def list(self, path: str) -> list[FileStatus]:
        data = await self._json("GET", "LISTSTATUS", path, idempotent=True)
        return [FileStatus.from_json(_join(path, item["pathSuffix"]), item)
                for item in data["FileStatuses"]["FileStatus"]]

    async def content_summary(self, path: str) -> dict[str, Any]:
        """``{"length", "fileCount", "directoryCount", "quota", "spaceConsumed", ...}``."""
        data = await self._json("GET", "GETCONTENTSUMMARY", path, idempotent=True)
        return dict(data["ContentSummary"])

    async def checksum(self, path: str) -> dict[str, Any]:
        """``{"algorithm": "MD5-of-...", "bytes": hex, "length": n}`` (HDFS's own checksum)."""
        # The NameNode redirects to a DataNode; _send follows.
        data = await self._json("GET", "GETFILECHECKSUM", path, idempotent=True)
        return dict(data["FileChecksum"])

    async def set_permission(self, path: str, permission: str) -> None:
        resp = await self._request("PUT", "SETPERMISSION", path, {"permission": permission},
                                   idempotent=True)
        resp.release()

    async def set_owner(self, path: str, owner: str | None = None,
                        group: str | None = None) -> None:
        resp = await self._request("PUT", "SETOWNER", path, {"owner": owner, "group": group},
                                   idempotent=True)
        resp.release()

    async def set_replication(self, path: str, replication: int) -> bool:
        data = await self._json("PUT", "SETREPLICATION", path, {"replication": replication},
                                idempotent=True)
        return bool(data["boolean"])

    async def set_times(self, path: str, *, modification_time: int | None = None,
                        access_time: int | None = None) -> None:
        resp = await self._request(
            "PUT", "SETTIMES", path,
            {"modificationtime": modification_time, "accesstime": access_time},
            idempotent=True)
        resp.release()

    # -- extended attributes ----------------------------------------------------

    async def set_xattr(self, path: str, name: str, value: bytes, *,
                        flag: str = "CREATE") -> None:
        """``flag`` is CREATE (fails if present) or REPLACE (fails if absent)."""
        encoded = "0s" + base64.b64encode(value).decode()
        resp = await self._request(
            "PUT", "SETXATTR", path,
            {"xattr.name": name, "xattr.value": encoded, "flag": flag},
            idempotent=False)
        resp.release()

    async def get_xattrs(self, path: str, names: Iterable[str] = ()) -> dict[str, bytes]:
        """All xattrs of ``path`` (or only ``names``); a missing name raises HdfsRemoteError."""
        params = [("encoding", "base64"), *(("xattr.name", n) for n in names)]
        data = await self._json("GET", "GETXATTRS", path, params, idempotent=True)
        result = {}
        for item in data.get("XAttrs", []):
            value = item.get("value")
            result[item["name"]] = _decode_xattr(value) if value is not None else b""
        return result

    async def list_xattrs(self, path: str) -> list[str]:
        data = await self._json("GET", "LISTXATTRS", path, idempotent=True)
        return list(json.loads(data["XAttrNames"]))

    async def remove_xattr(self, path: str, name: str) -> None:
        resp = await self._request("PUT", "REMOVEXATTR", path, {"xattr.name": name},
                                   idempotent=False)
        resp.release()

    # -- storage policies ---------------------------------------------------------

    async def set_storage_policy(self, path: str, policy: str) -> None:
        """Set a storage policy (a policy or tier name) by WebHDFS, else by command line."""
        policy = resolve_tier(policy)
        if self._has_setstoragepolicy is not False:
            try:
                resp = await self._request("PUT", "SETSTORAGEPOLICY", path,
                                           {"storagepolicy": policy}, idempotent=True)
                resp.release()
                self._has_setstoragepolicy = True
                return
            except HdfsUnsupportedOperation:
                self._has_setstoragepolicy = False  # Hadoop < 2.9: use the command line
        await self._storagepolicy_admin(path, policy)

    async def _storagepolicy_admin(self, path: str, policy: str) -> None:
        if not self.storagepolicy_command:
            raise HdfsUnsupportedOperation(
                "SETSTORAGEPOLICY",
                "this WebHDFS cannot set storage policies; configure the cluster's "
                "'hdfs storagepolicies' command (storagepolicy_command)", 400)
        await self.status(path)  # a missing path gives the same typed error as WebHDFS
        argv = [*self.storagepolicy_command, "-setStoragePolicy", "-path", path,
                "-policy", policy]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:  # a JVM retrying a NameNode that is down must not hold the landing forever
            out, err = await asyncio.wait_for(proc.communicate(), self._timeout.total)
        except BaseException as exc:  # the timeout or the caller's cancellation: never outlive it
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise HdfsRemoteError("StoragePolicyAdmin", f"{' '.join(argv[-6:])} did not finish "
                                      f"within {self._timeout.total:.0f} s", 504) from None
            raise
        if proc.returncode != 0:
            raise HdfsRemoteError(
                "StoragePolicyAdmin",
                f"{' '.join(argv[-6:])} exited {proc.returncode}: "
                f"{(err or out).decode(errors='replace').strip()[-1000:]}", 500)

    async def satisfy_storage_policy(self, path: str) -> None:
        """Ask the storage policy satisfier to move ``path``'s blocks (Hadoop 3.2+)."""
        resp = await self._request("PUT", "SATISFYSTORAGEPOLICY", path, idempotent=True)
        resp.release()

    # -- erasure coding (Hadoop 3) --------------------------------------------------

    async def ec_policies(self) -> dict[str, dict[str, Any]]:
        """{policy name: {"state": ENABLED|DISABLED|REMOVED, "units": data + parity}}."""
        data = await self._json("GET", "GETECPOLICIES", "/", idempotent=True)
        policies = {}
        for info in data["ErasureCodingPolicies"]["ErasureCodingPolicyInfo"]:
            policy = info["policy"]
            policies[policy["name"]] = {
                "state": info["state"],
                "units": int(policy["numDataUnits"]) + int(policy["numParityUnits"])}
        return policies

    async def set_ec_policy(self, path: str, policy: str) -> None:
        """Erasure-code the files created under directory ``path`` from now on."""
        resp = await self._request("PUT", "SETECPOLICY", path, {"ecpolicy": policy},
                                   idempotent=True)
        resp.release()

    # -- the NameNode's metrics ----------------------------------------------------

    async def jmx(self, query: str) -> dict[str, Any] | None:
        """One bean of the NameNode's /jmx servlet (same HTTP server as WebHDFS), or None
        where it is not served (a gateway that only proxies WebHDFS, say)."""
        url = self.base_url.removesuffix("/webhdfs/v1") + "/jmx"
        try:
            async with self._get_session().get(url, params={"qry": query},
                                               ssl=self._ssl) as resp:
                if resp.status != 200:
                    return None
                beans = (await resp.json(content_type=None)).get("beans") or [None]
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None
        return beans[0]

    async def get_storage_policy(self, path: str) -> str | None:
        """The policy set on ``path`` itself (None if it only inherits one)."""
        return (await self.status(path)).storage_policy


def _trusting(ca_file: str | os.PathLike[str]) -> ssl_module.SSLContext:
    try:
        return ssl_module.create_default_context(cafile=os.fspath(ca_file))
    except (OSError, ssl_module.SSLError) as exc:
        raise HdfsError(f"cannot load CA certificates from {os.fspath(ca_file)!r}: {exc}") from exc


def _decode_xattr(value: str) -> bytes:
    if value.startswith("0s"):
        return base64.b64decode(value[2:])
    if value.startswith("0x"):
        return bytes.fromhex(value[2:])
    return value.strip('"').encode()
