"""WebHdfsClient against the real local HDFS."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from p2pdata.errors import StoreError
from p2pdata.hdfs import (
    HdfsAlreadyExists,
    HdfsConnectionError,
    HdfsFileNotFound,
    HdfsPermissionDenied,
    HdfsRemoteError,
    WebHdfsClient,
)
from p2pdata.hdfs.localcluster import LocalHdfs

pytestmark = pytest.mark.hdfs


@pytest.fixture
async def client(hdfs_cluster: LocalHdfs) -> AsyncIterator[WebHdfsClient]:
    async with WebHdfsClient(hdfs_cluster.webhdfs_url, user=getpass.getuser(),
                             storagepolicy_command=hdfs_cluster.storagepolicy_command) as c:
        yield c


async def test_files_and_directories(client: WebHdfsClient, unique: str) -> None:
    base = f"/{unique}"
    assert await client.mkdirs(f"{base}/dir", permission="750")
    await client.create(f"{base}/dir/f", b"hello", replication=1, blocksize=1 << 20,
                        permission="640")
    await client.append(f"{base}/dir/f", b" world")
    assert await client.read(f"{base}/dir/f") == b"hello world"
    assert await client.read(f"{base}/dir/f", offset=6, length=3) == b"wor"

    status = await client.status(f"{base}/dir/f")
    assert (status.type, status.length, status.permission, status.block_size) == \
        ("FILE", 11, "640", 1 << 20)
    assert (await client.status(f"{base}/dir")).is_dir
    listing = await client.list(f"{base}/dir")
    assert [s.path for s in listing] == [f"{base}/dir/f"]

    await client.create(f"{base}/dir/f", b"new", overwrite=True)
    assert await client.read(f"{base}/dir/f") == b"new"

    # concat needs the target's last block full: use 512-byte blocks.
    await client.create(f"{base}/dir/a", b"a" * 512, blocksize=512)
    await client.create(f"{base}/dir/b", b"b" * 100, blocksize=512)
    await client.concat(f"{base}/dir/a", [f"{base}/dir/b"])
    assert await client.read(f"{base}/dir/a") == b"a" * 512 + b"b" * 100
    assert not await client.exists(f"{base}/dir/b")

    summary = await client.content_summary(base)
    assert (summary["fileCount"], summary["directoryCount"], summary["length"]) == (2, 2, 615)
    checksum = await client.checksum(f"{base}/dir/a")
    assert checksum["algorithm"].startswith("MD5-of-") and checksum["length"] == 28

    await client.set_permission(f"{base}/dir/a", "600")
    await client.set_owner(f"{base}/dir/a", group="staff")
    assert await client.set_replication(f"{base}/dir/a", 1)
    await client.set_times(f"{base}/dir/a", modification_time=1_000_000)
    status = await client.status(f"{base}/dir/a")
    assert (status.permission, status.group, status.modification_time) == \
        ("600", "staff", 1_000_000)

    assert await client.rename(f"{base}/dir/a", f"{base}/moved")
    assert not await client.rename(f"{base}/nothing", f"{base}/x")
    assert await client.delete(f"{base}/dir", recursive=True)
    assert not await client.delete(f"{base}/dir")
    assert [s.path for s in await client.list(base)] == [f"{base}/moved"]


async def test_xattrs(client: WebHdfsClient, unique: str) -> None:
    path = f"/{unique}/x"
    await client.create(path, b"")
    await client.set_xattr(path, "user.a", b"\x00binary\xff")
    await client.set_xattr(path, "user.b", b"text")
    assert await client.get_xattrs(path) == {"user.a": b"\x00binary\xff", "user.b": b"text"}
    assert await client.get_xattrs(path, ["user.b"]) == {"user.b": b"text"}
    assert sorted(await client.list_xattrs(path)) == ["user.a", "user.b"]
    with pytest.raises(HdfsRemoteError):
        await client.set_xattr(path, "user.a", b"again", flag="CREATE")
    await client.set_xattr(path, "user.a", b"replaced", flag="REPLACE")
    await client.remove_xattr(path, "user.a")
    assert await client.get_xattrs(path) == {"user.b": b"text"}


async def test_streaming_create_and_open_keep_memory_bounded(
        client: WebHdfsClient, unique: str) -> None:
    chunk = bytes(range(256)) * 4096  # 1 MiB, reused so only the client's buffers count
    total = 100 * len(chunk)
    expected = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(100):
            expected.update(chunk)
            yield chunk

    path = f"/{unique}/big"
    tracemalloc.start()
    try:
        await client.create(path, body())
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        got = hashlib.sha256()
        size = 0
        async with contextlib.aclosing(client.open(path, chunk_size=1 << 20)) as chunks:
            async for part in chunks:
                got.update(part)
                size += len(part)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == total and got.digest() == expected.digest()
    assert write_peak < 16 << 20, f"write peaked at {write_peak / 2**20:.1f} MiB"
    assert read_peak < 16 << 20, f"read peaked at {read_peak / 2**20:.1f} MiB"


async def test_typed_errors(hdfs_cluster: LocalHdfs, client: WebHdfsClient,
                            unique: str) -> None:
    with pytest.raises(HdfsFileNotFound, match="File does not exist") as missing:
        await client.status(f"/{unique}/missing")
    assert isinstance(missing.value, StoreError)
    assert missing.value.exception == "FileNotFoundException" and missing.value.status == 404
    with pytest.raises(HdfsFileNotFound):
        await client.read(f"/{unique}/missing")

    await client.create(f"/{unique}/exists", b"1")
    with pytest.raises(HdfsAlreadyExists):
        await client.create(f"/{unique}/exists", b"2")

    await client.mkdirs(f"/{unique}/private", permission="700")
    async with WebHdfsClient(hdfs_cluster.webhdfs_url, user="mallory") as other:
        with pytest.raises(HdfsPermissionDenied, match="Permission denied"):
            await other.create(f"/{unique}/private/f", b"x")
        with pytest.raises(HdfsPermissionDenied):
            await other.list(f"/{unique}/private")
        # Hadoop 3's WebHDFS sets storage policies itself, with the same permission checks.
        with pytest.raises(HdfsPermissionDenied):
            await other.set_storage_policy(f"/{unique}", "ssd")


async def test_connection_errors_are_retried_then_typed() -> None:
    async with WebHdfsClient("http://127.0.0.1:9", retries=2, backoff=0.01) as dead:
        started = time.monotonic()
        with pytest.raises(HdfsConnectionError):
            await dead.status("/")
        assert time.monotonic() - started >= 0.03  # two backoffs: 0.01 + 0.02
        with pytest.raises(HdfsConnectionError):
            await dead.rename("/a", "/b")  # not idempotent: one attempt only


async def test_a_hung_storagepolicies_command_is_killed_at_the_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = f"{tmp_path}/pid"
    hang = ["sh", "-c", f'echo $$ > {pid_file}; exec sleep 60', "sh"]
    async with WebHdfsClient("http://127.0.0.1:9", storagepolicy_command=hang, timeout=0.5) as c:
        async def exists(path: str) -> dict[str, str]:
            return {}
        monkeypatch.setattr(c, "status", exists)
        started = time.monotonic()
        with pytest.raises(HdfsRemoteError, match="did not finish within"):
            await c._storagepolicy_admin("/data", "COLD")
        assert time.monotonic() - started < 30
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped, not left behind


async def test_a_file_takes_as_long_as_its_bytes_keep_moving(
        hdfs_cluster: LocalHdfs, unique: str) -> None:
    # `timeout` bounds a request, not a file: one written and read slowly, in 1.2 s against
    # a 0.6 s timeout, but never 0.6 s without a byte moving, goes through both ways.
    gap = 0.2  # a slow producer's pace, each gap well inside the timeout
    async with WebHdfsClient(hdfs_cluster.webhdfs_url, user=getpass.getuser(), timeout=0.6) as c:

        async def slowly() -> AsyncIterator[bytes]:
            for index in range(6):
                await asyncio.sleep(gap)
                yield bytes([index]) * 1000

        started = time.monotonic()
        await c.create(f"/{unique}/slow", slowly())
        assert time.monotonic() - started > 1.0  # longer than the timeout: the case at hand
        read = b""
        async with contextlib.aclosing(c.open(f"/{unique}/slow", chunk_size=1000)) as chunks:
            async for chunk in chunks:
                await asyncio.sleep(gap)
                read += chunk
        assert read == b"".join(bytes([index]) * 1000 for index in range(6))


async def test_a_write_whose_bytes_stop_fails_naming_the_stall(
        hdfs_cluster: LocalHdfs, unique: str) -> None:
    never = asyncio.Event()

    async def stops() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await never.wait()  # the source hangs: nothing waits forever on it
        yield b"y"

    async with WebHdfsClient(hdfs_cluster.webhdfs_url, user=getpass.getuser(), timeout=0.5) as c:
        with pytest.raises(HdfsConnectionError, match=r"CREATE .*no byte moved for 0.5 s"):
            await asyncio.wait_for(c.create(f"/{unique}/stuck", stops()), 30)
