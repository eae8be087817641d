"""The home directory and config.toml: where state lives, and every setting, validated at load."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from p2pdata.errors import ConfigError

CONFIG_FILE = "config.toml"
DATABASE_FILE = "state.db"
TOKEN_FILE = "control.token"


_PRIVATE_FILES = (DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm", TOKEN_FILE, CONFIG_FILE)


def secure_home(home: Path) -> None:
    """Make the home 0700 and its state files 0600, creating the home and an empty database.

    Also run on every start, so homes made by older versions (0755 and 0644, readable by any
    local user: held restricted manifests, grants) are fixed. The database is created 0600
    here, before SQLite opens it, so it is never briefly readable; SQLite gives its -wal
    and -shm files the database's mode.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    os.close(os.open(home / DATABASE_FILE, os.O_WRONLY | os.O_CREAT, 0o600))
    for name in _PRIVATE_FILES:
        path = home / name
        if path.exists() and path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)


def resolve_home(option: str | os.PathLike[str] | None = None) -> Path:
    """--home beats P2PDATA_HOME beats the platform's data directory."""
    chosen = option or os.environ.get("P2PDATA_HOME") or platformdirs.user_data_dir("p2pdata")
    return Path(chosen).expanduser().absolute()


@dataclass
class ClusterSection:
    name: str = ""
    catalog_lifetime: int = 7 * 24 * 3600  # seconds a signed catalog stays valid
    trust_on_first_use: bool = False


@dataclass
class PeerApiSection:
    host: str = "127.0.0.1"
    port: int = 7420
    public_url: str = ""  # what peers should call, when it differs from host:port
    tls_cert: str = ""
    tls_key: str = ""
    requests_per_minute: int = 600
    header_timeout: int = 10  # seconds a client has to send a request head (both APIs)
    connections_per_ip: int = 32  # open connections from one address (both APIs)


@dataclass
class ControlSection:
    host: str = "127.0.0.1"
    port: int = 7421
    socket: str = ""  # a unix socket path; when set, no TCP port is opened
    # TLS for the control API (PEM files, relative to home): required to bind off loopback,
    # where the token would otherwise cross the network in clear.
    tls_cert: str = ""
    tls_key: str = ""


@dataclass
class DiscoverySection:
    zeroconf: bool = True
    interfaces: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    static_peers: list[str] = field(default_factory=list)
    sync_interval: int = 60
    peer_ca_file: str = ""  # PEM CAs to trust for https peers (default: the system's)
    peer_client_cert: str = ""  # PEM client certificate for https peers that ask for one
    peer_client_key: str = ""  # its private key, when not in peer_client_cert
    dht: bool = False  # find trusted clusters through the BitTorrent DHT, and be found
    dht_listen: str = "0.0.0.0:6882"  # the DHT node's UDP address
    dht_bootstrap: list[str] = field(default_factory=list)  # "host:port" nodes; no default routers
    dht_interval: int = 300  # seconds between lookups of trusted clusters not reached otherwise
    dht_republish: int = 1800  # seconds between puts of our record when nothing changed


@dataclass
class TransferSection:
    listen: list[str] = field(default_factory=lambda: ["0.0.0.0:6881"])
    staging_dir: str = ""  # default: <home>/staging
    staging_budget: int = 100 * 1024**3
    download_limit: int = 0  # bytes/s, 0 = unlimited
    upload_limit: int = 0
    # Seconds a fetch may go without receiving a byte before it fails, naming why.
    stall_timeout: int = 300
    torrent_format: str = "v2"  # v2 | hybrid (v1+v2, for clients that read only v1)


@dataclass
class StoreSection:
    kind: str = "local"  # local | hdfs
    root: str = ""  # local: a directory (default <home>/datasets); hdfs: a path such as /p2pdata
    webhdfs_url: str = ""  # http(s)://namenode:9870
    namenode: str = ""  # hdfs://namenode:8020: land and read over HDFS's own protocol
    user: str = ""
    ca_file: str = ""  # PEM CA certificates to trust for https WebHDFS (default: the system's)
    storagepolicy_command: list[str] = field(default_factory=lambda: ["hdfs", "storagepolicies"])
    mover_command: list[str] = field(default_factory=lambda: ["hdfs", "mover"])  # tier --move
    fsck_command: list[str] = field(default_factory=lambda: ["hdfs", "fsck"])  # where blocks are
    cacheadmin_command: list[str] = field(default_factory=lambda: ["hdfs", "cacheadmin"])
    cache_pool: str = "p2pdata"  # HDFS centralized cache pool for datasets being trained on
    default_tier: str = "hot"


@dataclass
class TrainingSection:
    jobs_dir: str = ""  # default: <home>/jobs
    runs_dir: str = ""  # default: <home>/runs
    max_concurrent_runs: int = 2
    default_engine: str = "local"  # the engine of job specs that name none: local | yarn | ray
    ray_address: str = ""  # the ray engine's cluster: "auto", "HOST:PORT" or "ray://HOST:10001"
    ray_storage_path: str = ""  # Ray Train's run state; every Ray node must reach it (default: the run dir)


@dataclass
class YarnSection:
    """How the `yarn` training engine reaches the cluster (through Skein)."""

    resourcemanager: str = ""  # host:port of the ResourceManager's client RPC (yarn.resourcemanager.address)
    queue: str = "default"
    user: str = ""  # submit as this user (simple auth); default: the daemon's user
    hadoop_conf_dir: str = ""  # the cluster's client config (HADOOP_CONF_DIR); default: $HADOOP_CONF_DIR
    classpath: str = ""  # Hadoop client jars (`yarn classpath --glob`); default: ask the `yarn` command
    python: str = ""  # the Python on the cluster's nodes that runs workers; default: the daemon's
    master_memory: int = 256  # MiB for the application master
    worker_memory: int = 1024  # MiB per worker when the job spec gives none
    worker_vcores: int = 1


@dataclass
class RestrictedSection:
    show: str = "stub"  # how the public catalog shows restricted datasets: stub | hidden
    # Seconds a swarm certificate for a granted cluster lives: the longest a revoked
    # cluster can still open new swarm connections with the certificate it holds.
    certificate_lifetime: int = 3600


_SECTIONS: dict[str, type] = {
    "cluster": ClusterSection,
    "peer_api": PeerApiSection,
    "control": ControlSection,
    "discovery": DiscoverySection,
    "transfer": TransferSection,
    "store": StoreSection,
    "training": TrainingSection,
    "yarn": YarnSection,
    "restricted": RestrictedSection,
}


@dataclass
class Config:
    home: Path
    cluster: ClusterSection = field(default_factory=ClusterSection)
    peer_api: PeerApiSection = field(default_factory=PeerApiSection)
    control: ControlSection = field(default_factory=ControlSection)
    discovery: DiscoverySection = field(default_factory=DiscoverySection)
    transfer: TransferSection = field(default_factory=TransferSection)
    store: StoreSection = field(default_factory=StoreSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    yarn: YarnSection = field(default_factory=YarnSection)
    restricted: RestrictedSection = field(default_factory=RestrictedSection)

    @property
    def database(self) -> Path:
        return self.home / DATABASE_FILE

    @property
    def token_file(self) -> Path:
        return self.home / TOKEN_FILE

    def path(self, value: str, default: str) -> Path:
        """A configured directory, relative to home, or home/default when unset."""
        return self.home / (value or default)

    @property
    def control_tls(self) -> tuple[Path, Path] | None:
        """The control API's certificate and key, relative to home; None for plain HTTP."""
        control = self.control
        return (self.home / control.tls_cert, self.home / control.tls_key) if control.tls_cert else None

    @property
    def staging_dir(self) -> Path:
        return self.path(self.transfer.staging_dir, "staging")

    @property
    def jobs_dir(self) -> Path:
        return self.path(self.training.jobs_dir, "jobs")

    @property
    def runs_dir(self) -> Path:
        return self.path(self.training.runs_dir, "runs")

    @property
    def store_ca_file(self) -> Path | None:
        """``store.ca_file``, relative to home; None when unset (trust the system's CAs)."""
        return self.home / self.store.ca_file if self.store.ca_file else None

    @property
    def peer_tls(self) -> dict[str, Path | None]:
        """The ``discovery.peer_*`` TLS files, relative to home, as `peers.tls_context` takes them."""
        chosen = self.discovery
        files = {"ca_file": chosen.peer_ca_file, "cert_file": chosen.peer_client_cert,
                 "key_file": chosen.peer_client_key}
        return {name: self.home / value if value else None for name, value in files.items()}

    @property
    def store_root(self) -> str:
        if self.store.kind == "local":
            return str(self.path(self.store.root, "datasets"))
        return self.store.root or "/p2pdata"


def _expect(value: Any, expected: Any, where: str) -> Any:
    """Check one value against its default's type; lists check every item."""
    if isinstance(expected, bool):
        ok = isinstance(value, bool)
        kind = "true or false"
    elif isinstance(expected, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        kind = "a whole number >= 0"
    elif isinstance(expected, str):
        ok = isinstance(value, str)
        kind = "a string"
    else:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        kind = "a list of strings"
    if not ok:
        raise ConfigError(f"{where}: expected {kind}, got {value!r}")
    return value


def load_config(home: Path) -> Config:
    """Read <home>/config.toml (absent means all defaults); errors name file, key and expectation."""
    config = Config(home=home)
    path = home / CONFIG_FILE
    if not path.exists():
        return config
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    for section_name, values in data.items():
        if section_name not in _SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{section_name}]; expected one of {sorted(_SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {section_name} must be a [section]")
        section = getattr(config, section_name)
        known = {f.name for f in fields(section)}
        for key, value in values.items():
            where = f"{path}: {section_name}.{key}"
            if key not in known:
                raise ConfigError(f"{where}: unknown key; expected one of {sorted(known)}")
            setattr(section, key, _expect(value, getattr(section, key), where))
    _check_choices(config, path)
    return config


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1); names are not resolved."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_choices(config: Config, path: Path) -> None:
    if config.store.kind not in ("local", "hdfs"):
        raise ConfigError(f"{path}: store.kind: expected 'local' or 'hdfs', got {config.store.kind!r}")
    if config.store.kind == "hdfs" and not config.store.webhdfs_url:
        raise ConfigError(f"{path}: store.webhdfs_url: expected a URL when store.kind is 'hdfs'")
    if config.transfer.torrent_format not in ("v2", "hybrid"):
        raise ConfigError(f"{path}: transfer.torrent_format: expected 'v2' or 'hybrid', "
                          f"got {config.transfer.torrent_format!r}")
    if config.restricted.show not in ("stub", "hidden"):
        raise ConfigError(f"{path}: restricted.show: expected 'stub' or 'hidden', got {config.restricted.show!r}")
    if config.transfer.stall_timeout < 1:
        raise ConfigError(f"{path}: transfer.stall_timeout: expected at least 1 second")
    if config.restricted.certificate_lifetime < 5:
        raise ConfigError(f"{path}: restricted.certificate_lifetime: expected at least 5 seconds")
    nodes = [("dht_listen", config.discovery.dht_listen),
             *(("dht_bootstrap", node) for node in config.discovery.dht_bootstrap)]
    for key, node in nodes:
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"{path}: discovery.{key}: expected HOST:PORT, got {node!r}")
    if config.discovery.dht_interval < 1:
        raise ConfigError(f"{path}: discovery.dht_interval: expected at least 1 second")
    control = config.control
    if not control.socket and not is_loopback(control.host) and not control.tls_cert:
        raise ConfigError(
            f"{path}: control.host: {control.host!r} is not a loopback address; the control API "
            "would carry its token in clear to the network. Keep it on 127.0.0.1 (reach it with "
            "`ssh -L`) or set control.tls_cert and control.tls_key"
        )
    if bool(control.tls_cert) != bool(control.tls_key):
        raise ConfigError(f"{path}: control.tls_cert and control.tls_key: set both or neither")
    for section, key in (("peer_api", "port"), ("control", "port")):
        if getattr(getattr(config, section), key) > 65535:
            raise ConfigError(f"{path}: {section}.{key}: expected a port number 0-65535")


DEFAULT_CONFIG = """\
# p2pdata configuration. Every key is optional; these are the defaults.
[cluster]
name = "{name}"
catalog_lifetime = 604800        # seconds a signed catalog stays valid
trust_on_first_use = false       # true only on a trusted LAN

[peer_api]                       # what other clusters call (read-only)
host = "127.0.0.1"
port = 7420

[control]                        # the local control API and status page
host = "127.0.0.1"
port = 7421

[discovery]
zeroconf = true
interfaces = ["127.0.0.1"]
static_peers = []
sync_interval = 60
# peer_ca_file = "peers-ca.pem"  # CAs to trust for https peers, relative to this directory
dht = false                      # find and be found through the BitTorrent DHT (see README)
# dht_bootstrap = ["router.example.org:6881"]  # DHT nodes to join through; none by default

[transfer]
listen = ["0.0.0.0:6881"]
staging_budget = 107374182400    # bytes
download_limit = 0               # bytes/s, 0 = unlimited
upload_limit = 0
stall_timeout = 300              # seconds without a byte before a fetch fails, saying why
torrent_format = "v2"            # or "hybrid": v1+v2 for clients that read only v1

[store]
kind = "local"                   # or "hdfs" with webhdfs_url
default_tier = "hot"

[training]
max_concurrent_runs = 2
default_engine = "local"         # where jobs without `engine` run: local | yarn
# ray_address = "auto"           # jobs with engine = "ray" run on this Ray cluster

# [yarn]                         # the yarn engine (jobs with engine = "yarn")
# resourcemanager = "rm.example:8032"
# queue = "default"
# hadoop_conf_dir = "/etc/hadoop/conf"

[restricted]                     # datasets published with --access restricted
show = "stub"                    # public catalog shows name, publisher, size; or "hidden"
certificate_lifetime = 3600      # seconds; bounds how long a revoked cluster keeps joining swarms
"""


def write_default_config(home: Path, name: str) -> Path:
    path = home / CONFIG_FILE
    if not path.exists():
        path.write_text(DEFAULT_CONFIG.format(name=name))
    return path
