"""A real single-node HDFS (Hadoop 2.7.3) for tests and demos.

The Hadoop jars come from PyPI's pyspark 2.4.8 sdist and WebHDFS's Jersey 1 from
Debian (see notes/real-components.md); both are cached under
``~/.cache/p2pdata/hadoop`` (or ``$P2PDATA_HADOOP_CACHE``). NameNode and DataNode
run in one small JVM started by ``java/P2pdataHdfs.java``, with four storage tiers
and every port 0; ``https=True`` also serves WebHDFS over TLS with a certificate from
a certificate authority made for the cluster (``ca_file``).

    python -m p2pdata.hdfs.localcluster fetch   # download and cache only
    python -m p2pdata.hdfs.localcluster run     # start, print addresses, Ctrl-C stops
    python -m p2pdata.hdfs.localcluster run --https   # the same, with WebHDFS over TLS too
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from p2pdata.hdfs.errors import HdfsClusterError

PYSPARK = "pyspark==2.4.8"
HADOOP_JARS = (
    "activation-1.1.1.jar",
    "commons-cli-1.2.jar",
    "commons-codec-1.10.jar",
    "commons-collections-3.2.2.jar",
    "commons-configuration-1.6.jar",
    "commons-io-2.4.jar",
    "commons-lang-2.6.jar",
    "commons-logging-1.1.3.jar",
    "guava-14.0.1.jar",
    "hadoop-annotations-2.7.3.jar",
    "hadoop-auth-2.7.3.jar",
    "hadoop-common-2.7.3.jar",
    "hadoop-hdfs-2.7.3.jar",
    "htrace-core-3.1.0-incubating.jar",
    "httpclient-4.5.6.jar",
    "httpcore-4.4.10.jar",
    "jackson-core-asl-1.9.13.jar",
    "jackson-mapper-asl-1.9.13.jar",
    "javax.servlet-api-3.1.0.jar",
    "jaxb-api-2.2.2.jar",
    "jetty-6.1.26.jar",
    "jetty-util-6.1.26.jar",
    "log4j-1.2.17.jar",
    "netty-all-4.1.47.Final.jar",
    "protobuf-java-2.5.0.jar",
    "slf4j-api-1.7.16.jar",
    "slf4j-log4j12-1.7.16.jar",
)
JERSEY_DEBS = (
    "libjersey1-core-java",
    "libjersey1-server-java",
    "libjersey1-servlet-java",
    "libjsr311-api-java",
)
TIERS = ("disk", "ssd", "archive", "ram_disk")
LAUNCHER = "P2pdataHdfs"
JVM_FLAGS = ("-Xmx192m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
TOOL_JVM_FLAGS = ("-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
_JAVA_SOURCE = Path(__file__).parent / "java" / f"{LAUNCHER}.java"
_READY = re.compile(r"P2PDATA_HDFS_READY (.*)")
_LOG4J = """\
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=%d{HH:mm:ss} %p %c{1}: %m%n
"""


def cache_dir() -> Path:
    env = os.environ.get("P2PDATA_HADOOP_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "p2pdata" / "hadoop"


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise HdfsClusterError(
            "java was not found on PATH: the local HDFS needs a Java 17 runtime "
            "(e.g. apt-get install openjdk-17-jre-headless)"
        )
    return java


def _run(cmd: Sequence[str], **kwargs: object) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise HdfsClusterError(
            f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )


def _fetch_hadoop_jars(jars: Path, work: Path) -> None:
    # Newer pip reads build constraints only from PIP_BUILD_CONSTRAINT; older pip from
    # PIP_CONSTRAINT. pyspark's setup.py calls pypandoc.convert, gone in pypandoc 1.8.
    constraint = work / "constraints.txt"
    constraint.write_text("pypandoc<1.8\n")
    env = dict(os.environ, PIP_CONSTRAINT=str(constraint), PIP_BUILD_CONSTRAINT=str(constraint))
    _run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         "--disable-pip-version-check", "-d", str(work), PYSPARK],
        env=env,
    )
    sdist = next(work.glob("pyspark-*.tar.gz"))
    wanted = set(HADOOP_JARS)
    with tarfile.open(sdist) as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if "/deps/jars/" in member.name and name in wanted and member.isfile():
                source = tar.extractfile(member)
                assert source is not None
                with source, open(jars / name, "wb") as out:
                    shutil.copyfileobj(source, out)
                wanted.discard(name)
    if wanted:
        raise HdfsClusterError(f"{sdist.name} lacks {sorted(wanted)}")


def _fetch_jersey_jars(jars: Path, work: Path) -> None:
    _run(["apt-get", "download", *JERSEY_DEBS], cwd=work)
    tree = work / "tree"
    for deb in work.glob("*.deb"):
        _run(["dpkg-deb", "-x", str(deb), str(tree)])
    found = [p for p in (tree / "usr/share/java").glob("*.jar") if not p.is_symlink()]
    if len(found) != len(JERSEY_DEBS):
        raise HdfsClusterError(f"expected {len(JERSEY_DEBS)} Jersey jars, found {found}")
    for jar in found:
        shutil.copyfile(jar, jars / jar.name)


def fetch(cache: Path | None = None) -> Path:
    """Download, extract and compile everything once; later calls return at once."""
    cache = cache or cache_dir()
    ready = cache / "READY"
    if ready.exists():
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    jars = cache / "jars"
    jars.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        if not all((jars / name).exists() for name in HADOOP_JARS):
            (Path(tmp) / "pip").mkdir()
            _fetch_hadoop_jars(jars, Path(tmp) / "pip")
        if len(list(jars.glob("*jersey1*"))) < 3 or not list(jars.glob("jsr311*")):
            (Path(tmp) / "deb").mkdir()
            _fetch_jersey_jars(jars, Path(tmp) / "deb")
    # WebHDFS's HTTP server only needs these resource folders to exist.
    for app in ("hdfs", "datanode", "secondary"):
        (cache / "resources" / "webapps" / app).mkdir(parents=True, exist_ok=True)
    (cache / "resources" / "log4j.properties").write_text(_LOG4J)
    _compile_launcher(cache)
    ready.write_text("ok\n")
    return cache


def _compile_launcher(cache: Path) -> None:
    classes = cache / "classes"
    classes.mkdir(exist_ok=True)
    javac = shutil.which("javac")
    if javac is None:
        raise HdfsClusterError("javac was not found on PATH: install a Java 17 JDK")
    _run([javac, "-nowarn", "-cp", _jar_classpath(cache), "-d", str(classes), str(_JAVA_SOURCE)])


def _jar_classpath(cache: Path) -> str:
    return os.pathsep.join(str(p) for p in sorted((cache / "jars").glob("*.jar")))


def classpath(cache: Path | None = None) -> str:
    cache = fetch(cache)
    # The launcher is recompiled when its source changes (e.g. after an upgrade).
    compiled = cache / "classes" / f"{LAUNCHER}.class"
    if not compiled.exists() or compiled.stat().st_mtime < _JAVA_SOURCE.stat().st_mtime:
        _compile_launcher(cache)
    return os.pathsep.join(
        [str(cache / "resources"), str(cache / "classes"), _jar_classpath(cache)]
    )


def _xml_properties(props: dict[str, str]) -> str:
    body = "".join(
        f"<property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n"
        for k, v in props.items()
    )
    return f"<configuration>\n{body}</configuration>\n"


def _write_tls_files(directory: Path) -> None:
    """A CA (``ca.pem``) and a server keystore it signed for 127.0.0.1 and localhost.

    ``ssl-server.xml`` names the keystore; the NameNode and DataNode find it on the
    JVM's classpath. The CA's key is thrown away: nothing else is ever signed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p2pdata local HDFS CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        # WebHDFS redirects name the DataNode as 127.0.0.1 or localhost.
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    password = secrets.token_hex(16)
    keystore = directory / "keystore.p12"
    keystore.write_bytes(pkcs12.serialize_key_and_certificates(
        b"server", key, cert, [ca_cert],
        serialization.BestAvailableEncryption(password.encode())))
    keystore.chmod(0o600)
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_xml = directory / "ssl-server.xml"
    server_xml.write_text(_xml_properties({
        "ssl.server.keystore.location": str(keystore),
        "ssl.server.keystore.type": "pkcs12",
        "ssl.server.keystore.password": password,
        "ssl.server.keystore.keypassword": password,
    }))
    server_xml.chmod(0o600)


class LocalHdfs:
    """One NameNode and one DataNode in a JVM; restartable on the same dirs and ports."""

    def __init__(self, base_dir: Path | str, *, permissions: bool = False,
                 https: bool = False, start_timeout: float = 90.0) -> None:
        self.base_dir = Path(base_dir).absolute()
        # With permissions on, the user running the JVM is HDFS's superuser.
        self.permissions = permissions
        # WebHDFS over TLS as well as plain HTTP (fsck and the other tools use HTTP).
        self.https = https
        self.start_timeout = start_timeout
        self._classpath = classpath()
        self._java = java_binary()
        self._proc: subprocess.Popen[str] | None = None
        self._ports: dict[str, int] = {}
        self._log_path = self.base_dir / "hdfs.log"

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> LocalHdfs:
        if self.running:
            return self
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for tier in TIERS:
            (self.base_dir / "data" / tier).mkdir(parents=True, exist_ok=True)
        keys = ["nn_rpc", "nn_http", "dn_xfer", "dn_ipc", "dn_http"]
        cp = self._classpath
        if self.https:
            keys += ["nn_https", "dn_https"]
            if not (self._tls_dir / "ssl-server.xml").exists():
                _write_tls_files(self._tls_dir)
            cp = f"{self._tls_dir}{os.pathsep}{cp}"
        ports = [self._ports.get(k, 0) for k in keys]
        log = open(self._log_path, "a")  # noqa: SIM115 - the JVM owns it until stop()
        self._proc = subprocess.Popen(
            [self._java, *JVM_FLAGS, f"-Dp2pdata.permissions={str(self.permissions).lower()}",
             f"-Dp2pdata.https={str(self.https).lower()}",
             "-cp", cp, LAUNCHER, str(self.base_dir),
             *map(str, ports)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,  # own process group, so stop() can kill all of it
        )
        log.close()
        try:
            self._ports = self._wait_ready(self._proc)
        except BaseException:
            self.stop()
            raise
        self._write_client_conf()
        return self

    def _write_client_conf(self) -> None:
        conf = self.base_dir / "conf"
        conf.mkdir(exist_ok=True)
        props = {
            "fs.defaultFS": self.namenode_address,
            # fsck asks the NameNode over HTTP.
            "dfs.namenode.http-address": f"127.0.0.1:{self._port('nn_http')}",
            # The mover waits 2 heartbeats + 1 replication interval between rounds.
            "dfs.heartbeat.interval": "1",
            "dfs.namenode.replication.interval": "1",
            # The 2.7.3 mover silently skips blocks it cannot queue, and a move between
            # two tiers of one DataNode takes two of the node's slots (default 5).
            "dfs.datanode.balance.max.concurrent.moves": "50",
        }
        # hdfs-default.xml is loaded after core-site.xml, so HDFS keys go in hdfs-site.xml.
        for name in ("core-site.xml", "hdfs-site.xml"):
            (conf / name).write_text(_xml_properties(props))

    def _wait_ready(self, proc: subprocess.Popen[str]) -> dict[str, int]:
        # readline() blocks, so a timer kills the JVM if it never reports ready.
        timer = threading.Timer(self.start_timeout, lambda: _killpg(proc))
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                match = _READY.search(line)
                if match:
                    return {k: int(v) for k, v in (p.split("=") for p in match[1].split())}
        finally:
            timer.cancel()
        tail = self._log_path.read_text(errors="replace")[-3000:]
        raise HdfsClusterError(f"local HDFS did not start (exit {proc.wait()}):\n{tail}")

    def stop(self) -> None:
        """Kill the JVM's whole process group (like a crash: HDFS's files stay on disk)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _killpg(proc)
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def restart(self) -> LocalHdfs:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> LocalHdfs:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------

    @property
    def namenode_address(self) -> str:
        """The NameNode RPC address, e.g. ``hdfs://127.0.0.1:35261``."""
        return f"hdfs://127.0.0.1:{self._port('nn_rpc')}"

    @property
    def webhdfs_url(self) -> str:
        return f"http://127.0.0.1:{self._port('nn_http')}"

    @property
    def webhdfs_https_url(self) -> str:
        """WebHDFS over TLS (``https=True`` only); trust ``ca_file`` to reach it."""
        if not self.https:
            raise HdfsClusterError("this local HDFS was started without https=True")
        return f"https://127.0.0.1:{self._port('nn_https')}"

    @property
    def ca_file(self) -> Path:
        """The PEM certificate of the CA that signed the cluster's TLS certificate."""
        if not self.https:
            raise HdfsClusterError("this local HDFS was started without https=True")
        return self._tls_dir / "ca.pem"

    @property
    def _tls_dir(self) -> Path:
        return self.base_dir / "tls"

    @property
    def ports(self) -> dict[str, int]:
        return dict(self._ports)

    def data_dir(self, tier: str) -> Path:
        """The DataNode's directory for a tier: disk, ssd, archive or ram_disk."""
        if tier not in TIERS:
            raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
        return self.base_dir / "data" / tier

    def _port(self, key: str) -> int:
        if key not in self._ports:
            raise HdfsClusterError("the local HDFS has not been started")
        return self._ports[key]

    # -- command-line tools ---------------------------------------------------

    def tool_command(self, main_class: str) -> list[str]:
        """``java -cp conf:... CLASS``: a Hadoop tool pointed at this cluster.

        Not every tool takes ``-fs`` (StoragePolicyAdmin does not), so the cluster's
        addresses reach them the way Hadoop's own scripts do: a core-site.xml on the
        classpath.
        """
        conf = self.base_dir / "conf"
        return [self._java, *TOOL_JVM_FLAGS, "-cp", f"{conf}{os.pathsep}{self._classpath}",
                main_class]

    @property
    def storagepolicy_command(self) -> list[str]:
        """What ``hdfs storagepolicies`` runs; the client appends ``-setStoragePolicy ...``."""
        return self.tool_command("org.apache.hadoop.hdfs.tools.StoragePolicyAdmin")

    @property
    def fsck_command(self) -> list[str]:
        return self.tool_command("org.apache.hadoop.hdfs.tools.DFSck")

    @property
    def mover_command(self) -> list[str]:
        """``hdfs mover``, through the launcher: it skips the Mover's idle 30 s wait."""
        return [*self.tool_command(LAUNCHER), "mover"]

    def fsck(self, path: str) -> str:
        """``fsck PATH -files -blocks -locations`` output (parse with tiers.parse_fsck)."""
        return _check_output([*self.fsck_command, path, "-files", "-blocks", "-locations"])

    def mover(self, path: str) -> str:
        return _check_output([*self.mover_command, "-p", path])

    def block_files(self, tier: str) -> list[Path]:
        """Block files (not .meta) the DataNode holds on a tier's directory."""
        return sorted(
            p for p in self.data_dir(tier).rglob("blk_*")
            if p.is_file() and not p.name.endswith(".meta")
        )


def _check_output(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=180)
    if result.returncode != 0:
        raise HdfsClusterError(f"{cmd[-3:]} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def _killpg(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pdata.hdfs.localcluster")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download and cache the Hadoop and Jersey jars")
    run = sub.add_parser("run", help="start a local HDFS and keep it running until Ctrl-C")
    run.add_argument("--dir", type=Path, help="data directory (default: a temporary one)")
    run.add_argument("--https", action="store_true", help="serve WebHDFS over TLS as well")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch())
            return 0
        with tempfile.TemporaryDirectory(prefix="p2pdata-hdfs-") as tmp, \
                LocalHdfs(args.dir or tmp, https=args.https) as hdfs:
            print(f"namenode   {hdfs.namenode_address}")
            print(f"webhdfs    {hdfs.webhdfs_url}")
            if args.https:
                print(f"swebhdfs   {hdfs.webhdfs_https_url} (CA: {hdfs.ca_file})")
            print(f"data       {hdfs.base_dir / 'data'}")
            print("storagepolicies  " + " ".join(hdfs.storagepolicy_command))
            print("Ctrl-C stops it.", flush=True)
            try:
                while hdfs.running:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
            return 0
    except HdfsClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
