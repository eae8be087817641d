"""HDFS over its own protocol (NameNode RPC, DataNode transfer) with ``hdfs-native``.

No JVM on the client: the data path of an ``hdfs://`` store. hdfs-native has no
extended attributes, storage or erasure coding policies, cache directives or fsck;
the store asks WebHDFS or the cluster's command-line tools for those.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from p2pdata.hdfs.errors import (
    HdfsAlreadyExists,
    HdfsConnectionError,
    HdfsError,
    HdfsFileNotFound,
    HdfsPermissionDenied,
)

T = TypeVar("T")

# One hdfs-native client per NameNode, user and settings, kept for the life of the process.
# Dropping a client deadlocks when one of its runtime threads is waking a coroutine at that
# moment: the drop holds the GIL while it waits for the runtime's threads, and that thread
# waits for the GIL (seen: bench_fetch hung there, after a store's last write).
_CLIENTS: dict[tuple[str, str | None, tuple[tuple[str, str], ...]], Any] = {}


def parse_namenode(url: str) -> str:
    """``hdfs://host:port`` (a path after it is ignored) or an error naming the URL."""
    parts = urlsplit(url)
    if parts.scheme != "hdfs" or not parts.hostname:
        raise HdfsError(f"NameNode URL {url!r} must look like hdfs://namenode:8020")
    return f"hdfs://{parts.netloc}"


def _typed(op: str, path: str, exc: BaseException, namenode: str = "") -> HdfsError:
    # hdfs-native raises OSError subclasses with the NameNode's message (and Java stack)
    # as the text; a lost connection can surface as a Rust panic (a BaseException).
    message = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else repr(exc)
    text = f"{op} {path}: {message}"
    if isinstance(exc, FileNotFoundError):
        return HdfsFileNotFound("FileNotFoundException", text, 404)
    if isinstance(exc, PermissionError) or "AccessControlException" in str(exc):
        return HdfsPermissionDenied("AccessControlException", text, 403)
    if isinstance(exc, FileExistsError):
        return HdfsAlreadyExists("FileAlreadyExistsException", text, 409)
    if type(exc).__name__ == "PanicException":
        # What hdfs-native does when the NameNode connection fails, refused or not let in.
        return HdfsConnectionError(
            f"native HDFS {op} {path}: the connection to the NameNode {namenode} failed: it "
            "is down, or it refused this client (a cluster with Kerberos security needs a "
            "ticket or a delegation token the client does not have)")
    if isinstance(exc, ConnectionError | TimeoutError):
        return HdfsConnectionError(f"native HDFS {text}")
    if "could only be written to 0" in str(exc):
        return HdfsError(f"native HDFS {text} (no DataNode has room for a block: full, "
                         "or all excluded)")
    return HdfsError(f"native HDFS {text}")


class NativeHdfs:
    """The subset of an async HDFS client the stores use, with typed errors and deadlines.

    ``user`` is who the NameNode sees (simple authentication); ``timeout`` bounds every
    call and every chunk written, so a dead NameNode or DataNode never hangs a landing.
    """

    def __init__(self, namenode: str, *, user: str | None = None,
                 config: dict[str, str] | None = None, timeout: float = 120.0) -> None:
        import hdfs_native  # an optional dependency: only hdfs:// stores need it

        self.namenode = parse_namenode(namenode)
        self.timeout = timeout
        self._module = hdfs_native
        key = (self.namenode, user, tuple(sorted((config or {}).items())))
        if key not in _CLIENTS:
            # hdfs-native reads the simple-auth user from the environment only, when the
            # client is made: set it for that moment.
            saved = os.environ.get("HADOOP_USER_NAME")
            if user:
                os.environ["HADOOP_USER_NAME"] = user
            try:
                _CLIENTS[key] = hdfs_native.AsyncClient(self.namenode, dict(config or {}))
            finally:
                if saved is None:
                    os.environ.pop("HADOOP_USER_NAME", None)
                else:
                    os.environ["HADOOP_USER_NAME"] = saved
        self._client = _CLIENTS[key]

    async def _call(self, op: str, path: str, call: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(call, self.timeout)
        except TimeoutError as exc:
            raise HdfsConnectionError(
                f"native HDFS {op} {path}: no answer from {self.namenode} within "
                f"{self.timeout:.0f} s") from exc
        except (OSError, RuntimeError, ValueError) as exc:
            raise _typed(op, path, exc, self.namenode) from exc
        except BaseException as exc:
            if type(exc).__name__ == "PanicException":
                raise _typed(op, path, exc, self.namenode) from None
            raise

    async def exists(self, path: str) -> bool:
        try:
            await self._call("GETFILEINFO", path, self._client.get_file_info(path))
        except HdfsFileNotFound:
            return False
        return True

    async def length(self, path: str) -> int:
        return int((await self._call("GETFILEINFO", path,
                                     self._client.get_file_info(path))).length)

    async def mkdirs(self, path: str) -> None:
        await self._call("MKDIRS", path, self._client.mkdirs(path, 0o755, True))

    async def list_dirs(self, path: str) -> list[str]:
        async def names() -> list[str]:
            return [os.path.basename(s.path.rstrip("/"))
                    async for s in self._client.list_status(path) if s.isdir]
        return await self._call("LISTSTATUS", path, names())

    async def read(self, path: str) -> bytes:
        async def whole() -> bytes:
            reader = await self._client.read(path)
            try:
                return await reader.readall()
            finally:
                await reader.close()
        return await self._call("OPEN", path, whole())

    async def write(self, path: str, chunks: AsyncIterator[bytes] | bytes, *,
                    overwrite: bool = False) -> int:
        """Create ``path`` from the chunks; the file is complete only once this returns."""
        options = self._module.WriteOptions(overwrite=overwrite)
        writer = await self._call("CREATE", path, self._client.create(path, options))
        written = 0
        # On failure the file is abandoned unclosed: the store deletes it before a retry.
        if isinstance(chunks, bytes):
            written += await self._call("WRITE", path, writer.write(chunks))
        else:
            async for chunk in chunks:
                written += await self._call("WRITE", path, writer.write(chunk))
        await self._call("CLOSE", path, writer.close())
        return written

    async def delete(self, path: str, recursive: bool = False) -> bool:
        return bool(await self._call("DELETE", path, self._client.delete(path, recursive)))

    async def rename(self, source: str, destination: str) -> None:
        await self._call("RENAME", f"{source} -> {destination}",
                         self._client.rename(source, destination, False))
