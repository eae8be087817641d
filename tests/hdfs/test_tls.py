"""swebhdfs: WebHDFS over TLS against a real cluster, trusting its CA by ca_file."""

from __future__ import annotations

import datetime
import getpass
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from p2pdata.hdfs import HdfsError, HdfsStore, HdfsTlsError, WebHdfsClient, open_store
from p2pdata.hdfs.localcluster import LocalHdfs
from tests.hdfs.conftest import make_dataset, source_of

pytestmark = pytest.mark.hdfs


def swebhdfs_url(cluster: LocalHdfs) -> str:
    return cluster.webhdfs_https_url.replace("https://", "swebhdfs://")


async def test_client_over_tls(hdfs_tls_cluster: LocalHdfs, unique: str) -> None:
    async with WebHdfsClient(swebhdfs_url(hdfs_tls_cluster), user=getpass.getuser(),
                             ca_file=hdfs_tls_cluster.ca_file) as client:
        assert client.base_url.startswith("https://127.0.0.1:")
        assert await client.mkdirs(f"/{unique}/d")
        # CREATE, APPEND and OPEN are redirected to the DataNode's TLS port.
        await client.create(f"/{unique}/d/f", b"over tls")
        await client.append(f"/{unique}/d/f", b"!")
        assert await client.read(f"/{unique}/d/f") == b"over tls!"
        assert [s.path for s in await client.list(f"/{unique}/d")] == [f"/{unique}/d/f"]
        assert (await client.status(f"/{unique}/d/f")).length == 9
        assert (await client.checksum(f"/{unique}/d/f"))["length"] == 28


async def test_store_lands_over_tls(hdfs_tls_cluster: LocalHdfs, tmp_path: Path,
                                    unique: str) -> None:
    manifest, files = make_dataset(tmp_path, "ds", [3000, 50_000])
    store = open_store("hdfs", f"/{unique}", webhdfs_url=hdfs_tls_cluster.webhdfs_https_url,
                       user=getpass.getuser(), ca_file=str(hdfs_tls_cluster.ca_file),
                       storagepolicy_command=hdfs_tls_cluster.storagepolicy_command)
    assert isinstance(store, HdfsStore)
    async with store:
        result = await store.land(manifest, source_of(manifest, files), "hot")
        assert result.status == "landed" and result.uri.startswith("swebhdfs://127.0.0.1:")
        for entry in manifest.files:
            assert await store.client.read(f"{result.path}/{entry.path}") == \
                files[entry.path].read_bytes()


def other_ca(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone else's CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


async def test_untrusted_certificate_is_refused(hdfs_tls_cluster: LocalHdfs,
                                                tmp_path: Path) -> None:
    url = swebhdfs_url(hdfs_tls_cluster)
    for ca_file in (None, other_ca(tmp_path / "other.pem")):
        async with WebHdfsClient(url, ca_file=ca_file, backoff=1.0) as client:
            started = time.monotonic()
            # The server sends its CA along: "self-signed certificate in certificate chain".
            with pytest.raises(HdfsTlsError, match=r"GETFILESTATUS /: TLS with 127\.0\.0\.1:\d+ "
                               r"failed: .*certificate.*trust it with ca_file"):
                await client.status("/")
            assert time.monotonic() - started < 1.0  # refused at once, not retried
            with pytest.raises(HdfsTlsError):
                await client.create("/never", b"x")


async def test_tls_to_a_plain_http_port_is_a_tls_error(hdfs_tls_cluster: LocalHdfs) -> None:
    url = hdfs_tls_cluster.webhdfs_url.replace("http://", "https://")
    async with WebHdfsClient(url, ca_file=hdfs_tls_cluster.ca_file) as client:
        with pytest.raises(HdfsTlsError, match=r"TLS with 127\.0\.0\.1"):
            await client.status("/")


def test_bad_ca_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(HdfsError, match=r"cannot load CA certificates from .*missing\.pem"):
        WebHdfsClient("swebhdfs://127.0.0.1:1", ca_file=tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(HdfsError, match="cannot load CA certificates"):
        WebHdfsClient("https://127.0.0.1:1", ca_file=tmp_path / "junk.pem")
    with pytest.raises(HdfsError, match="ca_file is for https:// or swebhdfs:// URLs"):
        WebHdfsClient("http://127.0.0.1:1", ca_file=tmp_path / "junk.pem")
    with pytest.raises(HdfsError, match="either ssl or ca_file"):
        WebHdfsClient("https://127.0.0.1:1", ssl=False, ca_file=other_ca(tmp_path / "ca.pem"))
