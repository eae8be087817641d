"""A real Hadoop 3 (HDFS, and YARN when asked) for tests, demos and trying p2pdata.

The jars come from Maven Central: a small pom's ``mvn dependency:copy-dependencies``
fetches the closure of the NameNode, DataNode, ResourceManager, NodeManager and YARN
services artifacts of one Hadoop release into ``~/.cache/p2pdata/hadoop-VERSION`` (or
``$P2PDATA_HADOOP_CACHE``), once. ``java/P2pdataHadoop.java`` runs a NameNode and three
DataNodes (storage types DISK, SSD, ARCHIVE and RAM_DISK each) in one small JVM, and the
ResourceManager and a NodeManager in a JVM each; every port is 0. ``conf_dir`` is a
``HADOOP_CONF_DIR`` for clients (core-site, hdfs-site, yarn-site, resource-types).

    python -m p2pdata.hdfs.localcluster fetch          # download and cache only
    python -m p2pdata.hdfs.localcluster run [--yarn] [--json]   # start; Ctrl-C stops
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from p2pdata.hdfs.errors import HdfsClusterError

# The newest Hadoop 3 release whose whole closure Maven Central serves (3.4.3 lacks the
# YARN services artifacts) and that runs on Java 17.
HADOOP_VERSION = "3.4.2"
ARTIFACTS = (
    "hadoop-common",
    "hadoop-hdfs",
    "hadoop-hdfs-client",
    "hadoop-yarn-server-resourcemanager",
    "hadoop-yarn-server-nodemanager",
    "hadoop-yarn-server-timelineservice",  # the ResourceManager's REST API links to it
    "hadoop-yarn-services-core",  # the YARN services application master
    "hadoop-yarn-services-api",  # the ResourceManager's /app/v1/services REST API
)
TIERS = ("disk", "ssd", "archive", "ram_disk")
DATANODES = 3  # enough for the XOR-2-1 erasure coding policy (RS-3-2 would need 5)
EC_POLICY = "XOR-2-1-1024k"
CACHE_POOL = "p2pdata"
LAUNCHER = "P2pdataHadoop"
# Hadoop 3.4 on Java 17 (what its own scripts add); YARN's Guice needs java.lang.
_OPENS = tuple(f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in (
    "java.lang", "java.lang.reflect", "java.util", "java.util.concurrent", "java.net",
    "java.io", "java.nio", "sun.nio.ch"))
_SMALL = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k")
HDFS_JVM_FLAGS = ("-Xmx320m", *_SMALL, *_OPENS)
RM_JVM_FLAGS = ("-Xmx256m", *_SMALL, *_OPENS)
NM_JVM_FLAGS = ("-Xmx192m", *_SMALL, *_OPENS)
TOOL_JVM_FLAGS = ("-Xmx160m", *_SMALL, *_OPENS)
_JAVA_SOURCE = Path(__file__).parent / "java" / f"{LAUNCHER}.java"
_READY = re.compile(r"P2PDATA_READY (.*)")
_LOG4J = """\
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=%d{HH:mm:ss} %p %c{1}: %m%n
"""


def _pom(version: str) -> str:
    deps = "".join(
        "    <dependency><groupId>org.apache.hadoop</groupId>"
        f"<artifactId>{a}</artifactId><version>{version}</version></dependency>\n"
        for a in ARTIFACTS)
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>p2pdata</groupId><artifactId>local-hadoop</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}  </dependencies>
</project>
"""


def cache_dir() -> Path:
    env = os.environ.get("P2PDATA_HADOOP_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "p2pdata" / f"hadoop-{HADOOP_VERSION}"


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise HdfsClusterError(
            "java was not found on PATH: the local Hadoop needs a Java 17 runtime "
            "(e.g. apt-get install openjdk-17-jdk-headless)"
        )
    return java


def java_home() -> str:
    """The JDK the ``java`` on PATH belongs to (YARN containers get it as JAVA_HOME)."""
    return os.environ.get("JAVA_HOME") or str(Path(os.path.realpath(java_binary())).parents[1])


def _run(cmd: Sequence[str], **kwargs: Any) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-3000:]
        raise HdfsClusterError(f"{' '.join(cmd)} failed ({result.returncode}): {output}")


def fetch(cache: Path | None = None) -> Path:
    """Download the jars, write the resources and compile the launcher, once."""
    cache = cache or cache_dir()
    ready = cache / "READY"
    if ready.exists() and ready.read_text().strip() == HADOOP_VERSION:
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise HdfsClusterError("mvn was not found on PATH: fetching Hadoop needs Maven "
                               "(apt-get install maven; scripts/setup.sh does it)")
    (cache / "pom.xml").write_text(_pom(HADOOP_VERSION))
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        # Into a fresh folder, then one rename: an interrupted fetch leaves no half set.
        _run([mvn, "-q", "-B", "-f", str(cache / "pom.xml"), "dependency:copy-dependencies",
              f"-DoutputDirectory={tmp}/jars", "-DincludeScope=runtime"])
        shutil.rmtree(cache / "jars", ignore_errors=True)
        os.rename(f"{tmp}/jars", cache / "jars")
    # The NameNode's and DataNode's HTTP servers only need these resource folders to exist.
    for app in ("hdfs", "datanode", "secondary", "journal"):
        (cache / "resources" / "webapps" / app).mkdir(parents=True, exist_ok=True)
    (cache / "resources" / "log4j.properties").write_text(_LOG4J)
    _compile_launcher(cache)
    ready.write_text(f"{HADOOP_VERSION}\n")
    return cache


def _source_digest() -> str:
    return hashlib.sha256(_JAVA_SOURCE.read_bytes()).hexdigest()


def _compile_launcher(cache: Path) -> None:
    classes = cache / "classes"
    classes.mkdir(exist_ok=True)
    javac = shutil.which("javac")
    if javac is None:
        raise HdfsClusterError("javac was not found on PATH: install a Java 17 JDK "
                               "(apt-get install openjdk-17-jdk-headless)")
    _run([javac, "-nowarn", "-cp", str(cache / "jars" / "*"), "-d", str(classes),
          str(_JAVA_SOURCE)])
    (classes / "SOURCE").write_text(_source_digest())


def classpath(cache: Path | None = None) -> str:
    """The launcher's and the tools' classpath (without a configuration folder)."""
    cache = fetch(cache)
    # The launcher is recompiled when its source changes (e.g. after an upgrade).
    stamp = cache / "classes" / "SOURCE"
    if not stamp.exists() or stamp.read_text() != _source_digest():
        _compile_launcher(cache)
    return os.pathsep.join(
        [str(cache / "resources"), str(cache / "classes"), str(cache / "jars" / "*")])


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
    """A NameNode and ``datanodes`` DataNodes in one JVM, and with ``yarn=True`` a
    ResourceManager and a NodeManager; HDFS restarts on the same dirs and ports.

    ``ec_policies`` are enabled at start (erasure coding); ``cache_pool`` is created for
    centralized caching ("" for none); ``sps`` runs the storage policy satisfier;
    ``tiers`` are the storage types each DataNode offers.
    """

    def __init__(self, base_dir: Path | str, *, permissions: bool = False,
                 https: bool = False, yarn: bool = False, datanodes: int = DATANODES,
                 ec_policies: Sequence[str] = (EC_POLICY,), cache_pool: str = CACHE_POOL,
                 sps: bool = True, gpus: int = 2, tiers: Sequence[str] = TIERS,
                 start_timeout: float = 120.0) -> None:
        self.base_dir = Path(base_dir).absolute()
        # With permissions on, the user running the JVM is HDFS's superuser.
        self.permissions = permissions
        # WebHDFS over TLS as well as plain HTTP (fsck and the other tools use HTTP).
        self.https = https
        self.yarn = yarn
        self.datanodes = datanodes
        self.ec_policies = tuple(ec_policies)
        self.cache_pool = cache_pool
        self.sps = sps
        self.gpus = gpus
        unknown = set(tiers) - set(TIERS)
        if unknown:
            raise ValueError(f"tiers must be some of {TIERS}, got {sorted(unknown)}")
        self.tiers = tuple(tiers)
        self.start_timeout = start_timeout
        self._classpath = classpath()
        self._java = java_binary()
        self._proc: subprocess.Popen[str] | None = None
        self._yarn_procs: list[subprocess.Popen[str]] = []
        self._ports: dict[str, int] = {}
        self._yarn_ports: dict[str, int] = {}
        self._lock = threading.Lock()
        self.version = ""
        self.services_api = False
        self._log_path = self.base_dir / "hdfs.log"

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> LocalHdfs:
        if not self.running:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            self.conf_dir.mkdir(exist_ok=True)
            cp = self._classpath
            if self.https:
                if not (self._tls_dir / "ssl-server.xml").exists():
                    _write_tls_files(self._tls_dir)
                cp = f"{self._tls_dir}{os.pathsep}{cp}"
            opts = {"base": str(self.base_dir), "datanodes": str(self.datanodes),
                    "permissions": str(self.permissions).lower(),
                    "https": str(self.https).lower(), "ec": ",".join(self.ec_policies),
                    "cachepool": self.cache_pool, "sps": str(self.sps).lower(),
                    "tiers": ",".join(self.tiers),
                    **{k: str(v) for k, v in self._ports.items()}}
            self._proc = self._launch("hdfs", opts, HDFS_JVM_FLAGS, cp, self._log_path)
            try:
                ready = self._wait_ready(self._proc, self._log_path)
            except BaseException:
                self.stop()
                raise
            self.version = ready.pop("version")
            self._ports = {k: int(v) for k, v in ready.items()}
            self._write_client_conf()
        if self.yarn and not self.yarn_running:
            self.start_yarn()
        return self

    def start_yarn(self) -> LocalHdfs:
        """Start the ResourceManager and a NodeManager (HDFS must be running), each in a
        JVM of its own (Hadoop's web apps cannot share one), and wait for the node."""
        self.yarn = True
        opts = {"base": str(self.base_dir / "yarn"), "conf": str(self.conf_dir),
                "fs": self.namenode_address, "gpus": str(self.gpus),
                "app_classpath": ",".join([str(self.conf_dir), *self._classpath.split(os.pathsep)])}
        env = {**os.environ, "HADOOP_CONF_DIR": str(self.conf_dir), "JAVA_HOME": java_home()}
        try:
            for mode, flags in (("yarn", RM_JVM_FLAGS), ("nodemanager", NM_JVM_FLAGS)):
                log = self.base_dir / f"{mode}.log"
                proc = self._launch(mode, opts, flags, self._classpath, log, env)
                self._yarn_procs.append(proc)
                ready = self._wait_ready(proc, log)
                self.version = ready.pop("version")
                if "services" in ready:
                    self.services_api = ready.pop("services") == "true"
                self._yarn_ports.update({k: int(v) for k, v in ready.items()})
            self._wait_for_node()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_node(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        url = f"{self.rm_web_url}/ws/v1/cluster/metrics"
        while True:
            with contextlib.suppress(OSError, ValueError, KeyError), \
                    urllib.request.urlopen(url, timeout=10) as resp:
                if json.load(resp)["clusterMetrics"]["activeNodes"] >= 1:
                    return
            if time.monotonic() > deadline:
                raise HdfsClusterError(f"the NodeManager did not register with the "
                                       f"ResourceManager within {self.start_timeout:.0f} s")
            time.sleep(0.1)

    def _launch(self, mode: str, opts: dict[str, str], flags: Sequence[str], cp: str,
                log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        with open(log_path, "a") as log:
            return subprocess.Popen(
                [self._java, *flags, "-cp", cp, LAUNCHER, mode,
                 *(f"{k}={v}" for k, v in opts.items())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                env=env,
                start_new_session=True,  # own process group, so stop() can kill all of it
            )

    def _write_client_conf(self) -> None:
        core = {"fs.defaultFS": self.namenode_address,
                "hadoop.security.authentication": "simple"}
        hdfs = {
            "dfs.namenode.rpc-address": f"127.0.0.1:{self._port('nn_rpc')}",
            # fsck and the Mover ask the NameNode over HTTP.
            "dfs.namenode.http-address": f"127.0.0.1:{self._port('nn_http')}",
            "dfs.replication": "1",
            # The Mover waits 2 heartbeats + 1 redundancy interval between rounds.
            "dfs.heartbeat.interval": "1",
            "dfs.namenode.redundancy.interval.seconds": "1",
            # A move between two tiers of one DataNode takes two of its slots (default 5).
            "dfs.datanode.balance.max.concurrent.moves": "50",
            "dfs.client.block.write.replace-datanode-on-failure.enable": "false",
        }
        # hdfs-default.xml is loaded after core-site.xml, so HDFS keys go in hdfs-site.xml.
        _write_atomic(self.conf_dir / "core-site.xml", _xml_properties(core))
        _write_atomic(self.conf_dir / "hdfs-site.xml", _xml_properties(hdfs))
        _write_atomic(self.conf_dir / "log4j.properties", _LOG4J)
        self._write_bin()

    def _write_bin(self) -> None:
        """``hadoop``, ``hdfs`` and ``yarn`` stand-ins for clients that shell out to them
        (Skein runs ``yarn classpath --glob``): classpath, dfs/fs, and YARN's CLIs."""
        jars = sorted(str(p) for p in (cache_dir() / "jars").glob("*.jar"))
        glob = os.pathsep.join([*self.client_classpath.split(os.pathsep)[:-1], *jars])
        java = " ".join(shlex.quote(a) for a in [self._java, *TOOL_JVM_FLAGS, "-cp",
                                                  self.client_classpath])
        script = f"""#!/bin/sh
# Written by p2pdata's local Hadoop launcher: enough of Hadoop's scripts for its clients.
case "$1" in
  classpath) [ "$2" = --glob ] && echo {shlex.quote(glob)} || echo {shlex.quote(self.client_classpath)} ;;
  dfs|fs) shift; exec {java} org.apache.hadoop.fs.FsShell "$@" ;;
  application|app) shift; exec {java} org.apache.hadoop.yarn.client.cli.ApplicationCLI "$@" ;;
  logs) shift; exec {java} org.apache.hadoop.yarn.client.cli.LogsCLI "$@" ;;
  node) shift; exec {java} org.apache.hadoop.yarn.client.cli.NodeCLI "$@" ;;
  *) echo "$(basename "$0") $1: not available in p2pdata's local Hadoop" >&2; exit 1 ;;
esac
"""
        self.bin_dir.mkdir(exist_ok=True)
        for name in ("hadoop", "hdfs", "yarn"):
            _write_atomic(self.bin_dir / name, script)
            (self.bin_dir / name).chmod(0o755)

    def _wait_ready(self, proc: subprocess.Popen[str], log_path: Path) -> dict[str, str]:
        # readline() blocks, so a timer kills the JVM if it never reports ready.
        timer = threading.Timer(self.start_timeout, lambda: _killpg(proc))
        timer.start()
        try:
            assert proc.stdout is not None
            for line in iter(proc.stdout.readline, ""):
                match = _READY.search(line)
                if match:
                    return dict(p.split("=", 1) for p in match[1].split())
        finally:
            timer.cancel()
        tail = log_path.read_text(errors="replace")[-3000:]
        raise HdfsClusterError(f"local Hadoop did not start (exit {proc.wait()}):\n{tail}")

    def _command(self, line: str, timeout: float = 90.0) -> str:
        """Send the HDFS JVM one command; its answer (``P2PDATA_OK ...``) or an error."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None or proc.stdout is None:
                raise HdfsClusterError("the local HDFS is not running")
            timer = threading.Timer(timeout, lambda: _killpg(proc))
            timer.start()
            try:
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
                answer = proc.stdout.readline().strip()
            finally:
                timer.cancel()
        if not answer.startswith("P2PDATA_OK"):
            raise HdfsClusterError(f"{line}: {answer or 'the local HDFS exited'}")
        return answer.removeprefix("P2PDATA_OK").strip()

    def stop_datanode(self, index: int) -> None:
        """Shut one DataNode down at once (its clients see their connections drop)."""
        self._command(f"stop-datanode {index}")

    def start_datanode(self, index: int, settings: dict[str, str] | None = None) -> None:
        """Start a stopped DataNode again, on the same directories and ports; ``settings``
        (hdfs-site keys) apply to this start only."""
        extra = "".join(f" {k}={v}" for k, v in (settings or {}).items())
        self._command(f"start-datanode {index}{extra}")

    def stop(self, yarn: bool = True) -> None:
        """Kill the JVMs' process groups (like a crash: Hadoop's files stay on disk).

        ``yarn=False`` stops HDFS only; ``start()`` brings it back on the same ports.
        """
        procs = [self._proc] if not yarn else [*self._yarn_procs, self._proc]
        self._proc = None
        if yarn:
            self._yarn_procs, self._yarn_ports = [], {}
        for proc in procs:
            if proc is None:
                continue
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

    @property
    def yarn_running(self) -> bool:
        return bool(self._yarn_procs) and all(p.poll() is None for p in self._yarn_procs)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in (self._proc, *self._yarn_procs) if p is not None]

    def __enter__(self) -> LocalHdfs:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

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
    def rm_address(self) -> str:
        """The ResourceManager's client RPC address (``yarn=True`` only)."""
        return f"127.0.0.1:{self._yarn_port('rm_rpc')}"

    @property
    def rm_web_url(self) -> str:
        """The ResourceManager's web UI and REST API (``yarn=True`` only)."""
        return f"http://127.0.0.1:{self._yarn_port('rm_web')}"

    @property
    def nm_web_url(self) -> str:
        """The NodeManager's web services (container logs), ``yarn=True`` only."""
        return f"http://127.0.0.1:{self._yarn_port('nm_web')}"

    @property
    def conf_dir(self) -> Path:
        """A ``HADOOP_CONF_DIR`` for clients: core-site, hdfs-site (and with YARN,
        yarn-site and resource-types) naming this cluster's real addresses."""
        return self.base_dir / "conf"

    @property
    def bin_dir(self) -> Path:
        """``hadoop``/``hdfs``/``yarn`` stand-ins (``classpath``, ``dfs``, ``application``,
        ``logs``, ``node``): put it on PATH for Skein."""
        return self.base_dir / "bin"

    @property
    def client_classpath(self) -> str:
        """``conf_dir`` and every Hadoop jar: what ``hadoop classpath`` prints."""
        return f"{self.conf_dir}{os.pathsep}{self._classpath}"

    @property
    def _tls_dir(self) -> Path:
        return self.base_dir / "tls"

    @property
    def ports(self) -> dict[str, int]:
        return {**self._ports, **self._yarn_ports}

    def data_dir(self, tier: str, datanode: int = 0) -> Path:
        """A DataNode's directory for a tier: disk, ssd, archive or ram_disk."""
        if tier not in TIERS:
            raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
        return self.base_dir / f"dn{datanode}" / tier

    def _port(self, key: str) -> int:
        if key not in self._ports:
            raise HdfsClusterError("the local HDFS has not been started")
        return self._ports[key]

    def _yarn_port(self, key: str) -> int:
        if key not in self._yarn_ports:
            raise HdfsClusterError("the local YARN has not been started (yarn=True)")
        return self._yarn_ports[key]

    def describe(self) -> dict[str, Any]:
        """What ``run --json`` prints: addresses, version, conf dir and classpath."""
        info: dict[str, Any] = {
            "hadoop_version": self.version,
            "namenode": self.namenode_address,
            "webhdfs_url": self.webhdfs_url,
            "conf_dir": str(self.conf_dir),
            "hadoop_conf_dir": str(self.conf_dir),  # the same, by Hadoop's own name
            "fs": self.namenode_address,  # fs.defaultFS
            "bin_dir": str(self.bin_dir),
            "classpath": self.client_classpath,
            "java_home": java_home(),
            "datanodes": self.datanodes,
            "ec_policies": list(self.ec_policies),
            "cache_pool": self.cache_pool or None,
            "storage_policy_satisfier": self.sps,
            "data_dir": str(self.base_dir),
            "pids": self.pids,
        }
        if self.https:
            info["webhdfs_https_url"] = self.webhdfs_https_url
            info["ca_file"] = str(self.ca_file)
        if self.yarn_running:
            info.update(rm_address=self.rm_address, rm_web_url=self.rm_web_url,
                        nm_web_url=self.nm_web_url,
                        yarn_services_api=self.services_api, gpus=self.gpus)
        return info

    # -- command-line tools ---------------------------------------------------

    def tool_command(self, main_class: str) -> list[str]:
        """``java -cp conf:... CLASS``: a Hadoop tool pointed at this cluster.

        Not every tool takes ``-fs``, so the cluster's addresses reach them the way
        Hadoop's own scripts do: a configuration folder on the classpath.
        """
        return [self._java, *TOOL_JVM_FLAGS, "-cp", self.client_classpath, main_class]

    @property
    def storagepolicy_command(self) -> list[str]:
        """What ``hdfs storagepolicies`` runs; the client appends ``-setStoragePolicy ...``."""
        return self.tool_command("org.apache.hadoop.hdfs.tools.StoragePolicyAdmin")

    @property
    def fsck_command(self) -> list[str]:
        return self.tool_command("org.apache.hadoop.hdfs.tools.DFSck")

    @property
    def mover_command(self) -> list[str]:
        """``hdfs mover``."""
        return self.tool_command("org.apache.hadoop.hdfs.server.mover.Mover")

    @property
    def cacheadmin_command(self) -> list[str]:
        """``hdfs cacheadmin``."""
        return self.tool_command("org.apache.hadoop.hdfs.tools.CacheAdmin")

    @property
    def fsshell_command(self) -> list[str]:
        """``hdfs dfs``."""
        return self.tool_command("org.apache.hadoop.fs.FsShell")

    def fsck(self, path: str) -> str:
        """``fsck PATH -files -blocks -locations`` output (parse with tiers.parse_fsck)."""
        return _check_output([*self.fsck_command, path, "-files", "-blocks", "-locations"])

    def mover(self, path: str) -> str:
        return _check_output([*self.mover_command, "-p", path])

    def block_files(self, tier: str) -> list[Path]:
        """Block files (not .meta) the DataNodes hold on a tier's directories."""
        return sorted(
            p for i in range(self.datanodes) for p in self.data_dir(tier, i).rglob("blk_*")
            if p.is_file() and not p.name.endswith(".meta")
        )


class KerberosNameNode:
    """A NameNode RPC endpoint that accepts Kerberos only, as a secure cluster's does, with
    no KDC anywhere: clients without a ticket must fail clearly (``namenode_address``)."""

    def __init__(self, log_path: Path, start_timeout: float = 60.0) -> None:
        self.log_path = log_path
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> KerberosNameNode:
        realm = ("-Djava.security.krb5.realm=P2PDATA.TEST",
                 "-Djava.security.krb5.kdc=127.0.0.1:1")  # never asked: nobody has a ticket
        with open(self.log_path, "a") as log:
            self._proc = subprocess.Popen(
                [java_binary(), *TOOL_JVM_FLAGS, *realm, "-cp", classpath(), LAUNCHER,
                 "kerberos-namenode"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                start_new_session=True)
        timer = threading.Timer(self.start_timeout, lambda: _killpg(self._proc))  # type: ignore[arg-type]
        timer.start()
        try:
            assert self._proc.stdout is not None
            line = self._proc.stdout.readline()
        finally:
            timer.cancel()
        match = _READY.search(line)
        if not match:
            self.__exit__()
            raise HdfsClusterError(f"the Kerberos-only NameNode did not start: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
        self.port = int(dict(p.split("=", 1) for p in match[1].split())["nn_rpc"])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            _killpg(self._proc)
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    stream.close()
            self._proc = None

    @property
    def namenode_address(self) -> str:
        return f"hdfs://127.0.0.1:{self.port}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    sub.add_parser("fetch", help=f"download and cache the Hadoop {HADOOP_VERSION} jars")
    run = sub.add_parser("run", help="start a local Hadoop and keep it running until Ctrl-C")
    run.add_argument("--dir", "--base", type=Path,
                     help="data directory (default: a temporary one)")
    run.add_argument("--yarn", action="store_true", help="start YARN (ResourceManager and "
                     "NodeManager) as well")
    run.add_argument("--https", action="store_true", help="serve WebHDFS over TLS as well")
    run.add_argument("--permissions", action="store_true", help="check HDFS permissions")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch())
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with tempfile.TemporaryDirectory(prefix="p2pdata-hadoop-") as tmp, \
                LocalHdfs(args.dir or tmp, https=args.https, yarn=args.yarn,
                          permissions=args.permissions) as cluster:
            info = cluster.describe()
            if args.json:
                print(json.dumps(info), flush=True)
            else:
                for key, value in info.items():
                    if key != "classpath":
                        print(f"{key:26} {value}")
                print("Ctrl-C stops it.", flush=True)
            try:
                while cluster.running and (not args.yarn or cluster.yarn_running):
                    if stop.wait(1):
                        break
            except KeyboardInterrupt:
                pass
            return 0
    except HdfsClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
