"""The daemon: composes config → stores → catalog → peers → transfer → landing → training → web.

Everything that decides lives in the rooms below; this module wires them
together, runs the background loops and turns their results into events.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import sqlite3
import time
from collections.abc import Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any

import libtorrent as lt
from aiohttp import web

from p2pdata import __version__, discovering, restricted
from p2pdata.catalog import (
    Access,
    Identity,
    LocalCatalog,
    Manifest,
    PublisherNames,
    TrustStore,
    encode_public_key,
    parse_ref,
    scan_for_publish,
    version_key,
)
from p2pdata.catalog.access import prove_info
from p2pdata.config import Config, secure_home
from p2pdata.db import open_db
from p2pdata.errors import ConfigError, NotFound, P2pdataError, PeerError, TrainingError, TransferError
from p2pdata.events import EventHub
from p2pdata.fetching import Fetcher, FetchJobTable, Landed
from p2pdata.hdfs import HdfsStore, Store, open_store
from p2pdata.peers import (
    HealthStore,
    PeerClient,
    PeerDirectory,
    PeerHealth,
    PeerSource,
    PeerState,
    Source,
    SyncResult,
    SyncScheduler,
    catalog_verifier,
    normalize_peer_url,
    sync_peer,
    tls_context,
)
from p2pdata.training import (
    DatasetCache,
    EngineRegistry,
    JobRegistry,
    JobSpec,
    Launcher,
    matching_jobs,
)
from p2pdata.transfer import (
    Tracker,
    TransferSession,
    TransferSettings,
    choose_piece_size,
    magnet_link,
    make_torrent,
    with_trackers,
)
from p2pdata.web import (
    ConnectionGate,
    ConnectionLimits,
    GuardedSite,
    SignedCallers,
    control_app,
    guarded_runner,
    peer_app,
    status_routes,
)

log = logging.getLogger("p2pdata.daemon")

RUNTIME_FILE = "daemon.json"  # where a running daemon says which addresses it really bound
LOCK_FILE = "daemon.lock"


class HomeLock:
    """An exclusive lock on the home: two daemons never share one state directory."""

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise P2pdataError(
                f"another p2pdata daemon (pid {holder}) is already running on {self.path.parent}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def ensure_token(path: Path) -> str:
    """The control token: created once, 0600, read back on every start."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    os.chmod(path, 0o600)
    return path.read_text().strip()


class _Table:
    """Small key → JSON record tables of the daemon's own (published sources, landed, peers)."""

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self.conn, self.name = conn, name
        conn.execute(f"CREATE TABLE IF NOT EXISTS {name} (key TEXT PRIMARY KEY, data TEXT NOT NULL)")

    def put(self, key: str, data: dict[str, Any]) -> None:
        self.conn.execute(f"INSERT OR REPLACE INTO {self.name} VALUES (?, ?)", (key, json.dumps(data)))

    def delete(self, key: str) -> None:
        self.conn.execute(f"DELETE FROM {self.name} WHERE key = ?", (key,))

    def items(self) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute(f"SELECT key, data FROM {self.name}").fetchall()
        return {row["key"]: json.loads(row["data"]) for row in rows}


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.events = EventHub()
        self._lock = HomeLock(config.home)
        self._runners: list[web.AppRunner] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sync_wakeup = asyncio.Event()
        self.directory = PeerDirectory()
        self.sources: list[PeerSource] = []  # zeroconf, static, DHT...: as [discovery] says
        self.dht: discovering.DhtNode | None = None
        self.dht_seeds: discovering.DhtSeeds | None = None
        self.peer_url = ""
        self.control_url = ""

    # ---- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        peer_tls = tls_context(**config.peer_tls)  # a bad file fails the start, before anything runs
        secure_home(config.home)  # before the lock file and the database are created in it
        self._lock.acquire()
        self.identity = Identity.load(config.home)
        self.conn = open_db(config.database)
        self.local_catalog = LocalCatalog(self.conn, self.identity)
        self.restricted = restricted.Restricted(
            self.conn, self.identity, self.local_catalog, config.home,
            show=config.restricted.show, certificate_lifetime=config.restricted.certificate_lifetime,
            own_urls=self.own_urls,
        )
        self.catalogs = self.local_catalog.index  # every verified catalog held, ours included
        self.trust = TrustStore(self.conn, trust_on_first_use=config.cluster.trust_on_first_use)
        self.published = _Table(self.conn, "published_sources")
        self.landed = _Table(self.conn, "landed_datasets")
        self.added_peers = _Table(self.conn, "added_peers")
        self.token = ensure_token(config.token_file)
        self.store = self._open_store(config.store_root)
        self.transfer = TransferSession(
            TransferSettings(
                staging_dir=config.staging_dir,
                staging_budget=config.transfer.staging_budget,
                listen_interfaces=restricted.with_ssl_listen(config.transfer.listen),
                download_limit=config.transfer.download_limit,
                upload_limit=config.transfer.upload_limit,
            )
        )
        await self.transfer.start()
        self.tracker = Tracker()  # public datasets only, for any BitTorrent client
        self.dht = await discovering.start_dht(config)
        if self.dht is not None:
            self.dht_seeds = discovering.DhtSeeds(
                self.dht, self.transfer, interval=min(15.0, config.discovery.dht_interval))
            await self.dht_seeds.start()
        self.registry = JobRegistry(config.jobs_dir)
        self.launcher = Launcher(
            self.conn,
            config.runs_dir,
            max_concurrent=config.training.max_concurrent_runs,
            engines=EngineRegistry(
                {"yarn": {**asdict(config.yarn), "state_dir": str(config.home / "yarn")},
                 "ray": {"address": config.training.ray_address,
                         "storage_path": config.training.ray_storage_path}},
                default=config.training.default_engine,
            ),
            on_state_change=lambda run: self.events.emit(
                "run.state", run=run.id, job=run.job, state=str(run.state)
            ),
            hooks=DatasetCache(
                self.store if isinstance(self.store, HdfsStore) else None,
                unavailable=f"the {self.store.kind} store has no cache: read uncached"),
        )
        await self.launcher.start()
        self.client = PeerClient(tls=peer_tls, identity=self.identity)
        self.restricted_peers = restricted.RestrictedPeers(
            self.restricted, self.directory, self.client, self.trust, self.catalogs, self.transfer
        )
        self.fetcher = Fetcher(
            jobs=FetchJobTable(self.conn),
            catalogs=self.catalogs,
            restricted=self.restricted_peers,
            peers=self.directory,
            transfer=self.transfer,
            open_store=lambda root: self._open_store(root) if root else self.store,
            events=self.events,
            held=self._held_folders,
            on_landed=self._on_landed,
            own_cluster=self.identity.cluster_id,
            store_root=config.store_root,
            default_tier=config.store.default_tier,
            stall_timeout=config.transfer.stall_timeout,
            source_label=self._source_label,
        )
        await self._start_web()
        await self._reseed()
        health_store = HealthStore(self.conn)
        saved_health = health_store.load()  # before adding peers saves their fresh state over it
        self.health = PeerHealth(sync_interval=config.discovery.sync_interval,
                                 on_change=health_store.save)
        self._verify = catalog_verifier(self.trust.is_trusted, self.catalogs.held, time.time)
        self.sources = discovering.peer_sources(self, self.added_peers.items(), self._peer_port)
        for source in self.sources:
            await source.start()
        now = time.time()
        for status in saved_health:  # failures, last seen, backoff survive a restart
            self.health.restore(status, now)
        self._spawn(self._sync_loop())
        self._spawn(self.restricted_peers.renew_loop())
        self.fetcher.resume_all()
        self._write_runtime_file()
        log.info(
            "cluster %s ready: peer API %s, control %s",
            self.identity.cluster_id,
            self.peer_url,
            self.control_url,
        )

    async def stop(self) -> None:
        # Background work first: fetches stay active in SQLite, landings stay parked in .incoming.
        await self.fetcher.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for source in reversed(self.sources):
            await source.close()
        for dht in (self.dht_seeds, self.dht):
            if dht is not None:
                await dht.close()
        await self.client.close()
        self.events.close()
        for runner in self._runners:
            await runner.cleanup()
        await self.launcher.close()
        await self.launcher.engines.close()  # after the runs: YARN ones are detached by then
        await self.transfer.close()  # saves resume data
        await self.store.close()
        (self.config.home / RUNTIME_FILE).unlink(missing_ok=True)
        self.conn.close()
        self._lock.release()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _open_store(self, root: str) -> Store:
        store = self.config.store
        if store.kind == "local":
            return open_store("local", root)
        return open_store(
            "hdfs",
            root,
            webhdfs_url=store.webhdfs_url,
            user=store.user or None,
            storagepolicy_command=store.storagepolicy_command,
            mover_command=store.mover_command,
            fsck_command=store.fsck_command,
            ca_file=self.config.store_ca_file,
            namenode=store.namenode or None,
            cacheadmin_command=store.cacheadmin_command,
            cache_pool=store.cache_pool,
        )

    async def _start_web(self) -> None:
        config = self.config
        limits = ConnectionLimits(per_ip=config.peer_api.connections_per_ip,
                                  header_timeout=config.peer_api.header_timeout)
        callers = SignedCallers(self.own_urls, self.identity.cluster_id, self.known_cluster)
        peer_runner = guarded_runner(peer_app(
            self, requests_per_minute=config.peer_api.requests_per_minute, restricted=self.restricted,
            callers=callers, prove=lambda nonce: prove_info(self.identity, nonce, self.peer_url),
        ), limits)
        await peer_runner.setup()
        self._runners.append(peer_runner)
        await self._listen(GuardedSite(peer_runner, config.peer_api.host, config.peer_api.port,
                                       ConnectionGate(limits, "peer API"), ssl_context=self._peer_tls()),
                           "peer_api", f"{config.peer_api.host}:{config.peer_api.port}")
        self._peer_port = _bound_port(peer_runner)
        scheme = "https" if config.peer_api.tls_cert else "http"
        self.peer_url = (
            config.peer_api.public_url
            or f"{scheme}://{_advertised_host(config.peer_api.host)}:{self._peer_port}"
        )

        app = control_app(self, self.token, open_paths=("/login", "/static/"), host=config.control.host)
        status_routes(app, self, token=self.token)
        control_runner = guarded_runner(app, limits)
        await control_runner.setup()
        self._runners.append(control_runner)
        if config.control.socket:
            await web.UnixSite(control_runner, config.control.socket).start()
            os.chmod(config.control.socket, 0o600)
            self.control_url = f"unix:{config.control.socket}"
        else:
            control_tls = _server_tls(*config.control_tls) if config.control_tls else None
            await self._listen(GuardedSite(control_runner, config.control.host, config.control.port,
                                           ConnectionGate(limits, "control API"), ssl_context=control_tls),
                               "control", f"{config.control.host}:{config.control.port}")
            scheme = "https" if control_tls else "http"
            self.control_url = f"{scheme}://{config.control.host}:{_bound_port(control_runner)}"

    async def _listen(self, site: GuardedSite, section: str, where: str) -> None:
        """Start listening; a taken port or bad host is one line naming the key to change."""
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {where} ({exc.strerror or exc}): another program (or p2pdata daemon) "
                f"may hold it; set {section}.port (0 picks a free port) or {section}.host in "
                f"{self.config.home / 'config.toml'}"
            ) from None

    def _peer_tls(self) -> Any:
        if not self.config.peer_api.tls_cert:
            return None
        home, tls = self.config.home, self.config.peer_api
        return _server_tls(home / tls.tls_cert, home / tls.tls_key)  # relative to home

    def _write_runtime_file(self) -> None:
        """Where this daemon really listens (ports may be 0 in config): for the CLI and tests."""
        data = {
            "pid": os.getpid(),
            "cluster_id": self.identity.cluster_id,
            "peer_url": self.peer_url,
            "control_url": self.control_url,
            "torrent_port": self.transfer.listen_port,
            "dht_port": self.dht.port if self.dht is not None else None,
        }
        path = self.config.home / RUNTIME_FILE
        path.with_suffix(".tmp").write_text(json.dumps(data))
        os.replace(path.with_suffix(".tmp"), path)  # readers wait for it: never a torn file

    async def _reseed(self) -> None:
        """Seed every published and landed dataset we still have the bytes of."""
        for table, folder in ((self.published, "directory"), (self.landed, "staging")):
            for record in table.items().values():
                manifest = self._manifest(record)
                if manifest is not None and Path(record[folder]).is_dir():
                    await self._seed(manifest, Path(record[folder]))

    async def _seed(self, manifest: Manifest, folder: Path) -> None:
        try:
            await self.transfer.seed(
                manifest, folder, certificate=self.restricted.seed_certificate(manifest)
            )
        except TransferError as exc:  # the same files published and fetched: one swarm serves both
            log.info("not seeding %s from %s: %s", manifest.ref, folder, exc)
        self._track(manifest)

    def _track(self, manifest: Manifest) -> None:
        """List a public dataset we seed at our tracker (restricted ones never are)."""
        if manifest.torrent and not restricted.is_restricted(manifest):
            hashes = lt.torrent_info(manifest.torrent.data).info_hashes()
            self.tracker.track(manifest.torrent.info_hash, self._own_seed_addresses(),
                               info_hash_v1=hashes.v1.to_bytes() if hashes.has_v1() else None)

    def _own_seed_addresses(self) -> list[tuple[str, int]]:
        """Where other BitTorrent clients reach our public seeds (an IP, as trackers list)."""
        host = _advertised_host(self.config.peer_api.host)
        try:
            address = socket.gethostbyname(host)
        except OSError:
            return []
        return [(address, self.transfer.listen_port)]

    def _manifest(self, record: dict[str, Any]) -> Manifest | None:
        try:
            # A restricted stub becomes the full manifest once we hold it.
            return self.restricted.full(
                self.catalogs.get(record["cluster"], record["name"], record["version"])
            )
        except NotFound:
            return None

    # ---- peer API view ----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {
            "cluster_id": self.identity.cluster_id,
            "public_key": encode_public_key(self.identity.public_key),
            "name": self.config.cluster.name,
            "software_version": __version__,
            "peer_api": self.peer_url,
            "torrent_endpoints": [[_advertised_host(self.config.peer_api.host), self.transfer.listen_port]],
            "ssl_torrent_endpoints": [
                [_advertised_host(self.config.peer_api.host), self.transfer.ssl_listen_port]
            ],
        }

    def own_urls(self) -> tuple[str, ...]:
        """The URL peers must sign their requests for: our peer API as we announce it."""
        return (normalize_peer_url(self.peer_url),)

    def known_cluster(self, cluster_id: str, key: bytes) -> bool:
        """A cluster we trust, granted, or sync with: its signed requests get their own budget."""
        encoded = encode_public_key(key)
        return (self.directory.knows_key(key)
                or any(e.cluster_id == cluster_id and e.public_key in (None, encoded) for e in self.trust.list())
                or self.restricted.grants.any_to(cluster_id))

    def catalog(self, renew: bool = False) -> tuple[bytes, str]:
        signed = self.local_catalog.signed(
            now=int(time.time()),
            lifetime=self.config.cluster.catalog_lifetime,
            public=self.restricted.public_view,
            renew=renew,  # a new version for the DHT (see peers.dht.next_put)
        )
        return signed, hashlib.sha256(signed).hexdigest()

    def torrent(self, manifest_id: str) -> bytes | None:
        record = self.published.items().get(manifest_id) or self.landed.items().get(manifest_id)
        manifest = self._manifest(record) if record else None
        if manifest is None or restricted.is_restricted(manifest):  # only via its signed door
            return None
        return manifest.torrent.data if manifest.torrent else None

    def announce(self, query: str, remote: str) -> bytes:
        return self.tracker.announce(query, remote, time.time())

    def have(self, ask: frozenset[str] | None = None) -> list[str]:
        """Manifest ids this cluster can seed, including every other publisher's manifest of the same files,
        so a peer that trusts only one of several publishers still finds us. Restricted ones only
        when `ask`ed by id (a granted cluster knows them): the plain listing is public."""
        seeded = [r for t in (self.published, self.landed) for r in t.items().values()]
        hashes = {m.torrent.info_hash for r in seeded if (m := self._manifest(r)) and m.torrent}
        names = {r["name"] for r in seeded}
        seedable = [m for name in names for m in self.catalogs.manifests(name=name)
                    if m.torrent and m.torrent.info_hash in hashes]
        if ask is None:
            return sorted({m.id for m in seedable if not restricted.is_restricted(m)})
        # catalogs hold only the stub of a restricted dataset we fetched
        seedable += [m for m in self.restricted.held() if m.torrent and m.torrent.info_hash in hashes]
        return sorted({m.id for m in seedable} & ask)

    # ---- discovery and catalog sync ---------------------------------------------------------

    def peer_callbacks(self, source: Source) -> tuple[discovering.OnFound, discovering.OnLost]:
        """What a peer source calls when it finds a peer, or one goes away."""

        def found(url: str, cluster_id: str | None) -> None:
            self.health.add(url, source, time.time(), cluster_id=cluster_id)
            self.events.emit("peer.found", url=url, cluster_id=cluster_id, source=str(source))
            self._sync_wakeup.set()

        def lost(url: str) -> None:
            status = self.health.withdraw(url, source, time.time())
            if status is not None and not status.active:
                self.directory.drop(status.url)
            self.events.emit("peer.lost", url=url, source=str(source))

        return found, lost

    async def _sync_loop(self) -> None:
        # One task per peer under a deadline: a slow peer delays only itself.
        await SyncScheduler(self.health, self.sync_peer).run(self._sync_wakeup)

    async def sync_peer(self, url: str) -> None:
        """One round with one peer: info, catalog (a 304 when unchanged), the restricted datasets
        it grants us (likewise), what it seeds."""
        outcome = await sync_peer(
            self.client, self.health, url, self._verify, etag=self.directory.etag(url), clock=time.time
        )
        if outcome.result is SyncResult.REMOVED:
            return
        if outcome.info is not None and outcome.info.cluster_id == self.identity.cluster_id:
            self.health.forget(url)  # our own advertisement, seen at another address
            return
        if outcome.result is SyncResult.UNREACHABLE or outcome.info is None:
            self.directory.drop(url, unreachable=True)
            self.events.emit("peer.failed", url=url, message=outcome.error)
            return
        if outcome.result is SyncResult.REJECTED:
            self.directory.catalog_dropped(url)
            reason = (outcome.error or "").partition("(")[2].partition(")")[0] or "unknown"
            self.events.emit("peer.rejected", url=url, reason=reason, message=outcome.error)
            log.warning("rejected catalog from %s: %s", url, outcome.error)
        elif outcome.result is SyncResult.UPDATED and outcome.verified is not None:
            self.catalogs.store(outcome.verified, source=url)
            catalog = outcome.verified.catalog
            self.events.emit("catalog.updated", url=url, cluster_id=catalog.cluster, version=catalog.version)
        self.directory.answered(url, outcome.info)
        if outcome.result is not SyncResult.REJECTED:  # its catalog holds: index what it grants us
            if outcome.etag:
                self.directory.catalog_held(url, outcome.etag)
            await self.restricted_peers.sync_granted(url, outcome.info)
        try:
            have = set(await self.client.have(url, ask=self.restricted.held_ids()))
        except PeerError as exc:
            if self.health.get(url) is not None:
                self.health.failed(url, time.time(), str(exc))
            self.directory.drop(url, unreachable=True)
            return
        if self.health.get(url) is None:  # removed while we asked: keep nothing it said
            self.directory.drop(url)
            return
        self.directory.seeds(url, have)
        self.fetcher.peers_changed()

    # ---- control API: publish, search, fetch ------------------------------------------------

    async def publish(
        self,
        *,
        directory: str,
        name: str,
        version: str,
        description: str = "",
        tags: list[str] | None = None,
        license: str = "",
        access: str = "public",
        allow: list[str] | None = None,
        format: str | None = None,
    ) -> dict[str, Any]:
        root = Path(directory)
        hybrid = self.config.transfer.torrent_format == "hybrid"
        # One read of the data: SHA-256 and the torrent's hashes together.
        scan = await asyncio.to_thread(
            scan_for_publish,
            root,
            name=name,
            version=version,
            owner=self.identity.cluster_id,
            now=int(time.time()),
            description=description,
            tags=tags or [],
            license=license,
            access=Access(access, tuple(allow or ())),
            format=format,
            piece_size_for=choose_piece_size,
            hybrid=hybrid,
        )
        manifest = scan.manifest
        # Root folder NAME-VERSION, so datasets added to one BitTorrent client never collide.
        options = {"name": f"{manifest.name}-{manifest.version}",
                   **self.restricted.torrent_options(manifest)}
        torrent = await asyncio.to_thread(make_torrent, manifest.files, root, v2=scan.v2,
                                          hybrid=hybrid, **options)
        manifest = self.local_catalog.add(manifest.with_torrent(torrent))
        self.restricted.on_publish(manifest)
        self.published.put(manifest.id, {**_record_key(manifest), "directory": str(root)})
        await self._seed(manifest, root)
        discovering.wake(self.sources)  # a new catalog version to publish on the DHT
        self.events.emit("dataset.published", ref=manifest.ref, manifest=manifest.id)
        return {**manifest_summary(manifest), "torrent_url": self._torrent_url(manifest, self._own())}

    async def search(self, query: str = "", *, format: str | None = None, publisher: str | None = None,
                     tag: str | None = None, min_size: str | int | None = None,
                     max_size: str | int | None = None) -> list[dict[str, Any]]:
        """Sizes may come as text (a query string's values)."""
        try:
            sizes = {k: int(v) for k, v in (("min_size", min_size), ("max_size", max_size)) if v is not None}
        except ValueError as exc:
            raise P2pdataError(f"size filters take a number of bytes: {exc}") from None
        names = self.publisher_names()
        if publisher:
            publisher = names.cluster(publisher)
        hits = self.catalogs.search(query, format=format, publisher=publisher, tags=[tag] if tag else [],
                                    **sizes, now=int(time.time()))
        own = self._own()
        return [
            {
                **manifest_summary(hit.manifest),
                "torrent_url": self._torrent_url(hit.manifest, own),
                "publisher_name": names.of(hit.manifest.owner),
                "ref": f"{names.label(hit.manifest.owner)}/{hit.manifest.ref}",  # what a user copies
                "score": hit.score,
            }
            for hit in hits
        ]


    def _own(self) -> set[str]:
        """Ids of the manifests we seed: published here or landed here."""
        return set(self.published.items()) | set(self.landed.items())

    def _torrent_url(self, manifest: Manifest, own: set[str]) -> str | None:
        """Where a BitTorrent client gets this public dataset's .torrent: our peer API or a peer's."""
        if manifest.torrent is None or restricted.is_restricted(manifest) or restricted.is_stub(manifest):
            return None
        path = f"/v1/datasets/{manifest.id}/torrent"
        if manifest.id in own:
            return self.peer_url + path
        return next((url + path for url in self.directory.seeding({manifest.id})), None)

    def torrent_export(self, ref: str) -> dict[str, Any]:
        """A public dataset as standard BitTorrent clients take it: .torrent and magnet link.

        Both name the trackers that serve it (ours when we seed it, and those of the peers
        that have it) and the magnet names the seeds' addresses (x.pe).
        """
        manifest = self.catalogs.resolve(self.publisher_names().ref(ref), now=int(time.time()))
        if restricted.is_restricted(manifest) or restricted.is_stub(manifest):
            raise P2pdataError(f"{manifest.ref} is restricted: it has no public torrent")
        if manifest.torrent is None:
            raise P2pdataError(f"{manifest.ref} from {manifest.owner} has no torrent")
        same = {m.id for m in self.catalogs.manifests(name=manifest.name)
                if m.torrent and m.torrent.info_hash == manifest.torrent.info_hash}
        trackers, seeds = [], self.directory.seeders(same)
        if self.tracker.tracked(manifest.torrent.info_hash):
            trackers.append(f"{self.peer_url}/announce")
            seeds = self._own_seed_addresses() + seeds
        trackers += [f"{url}/announce" for url in self.directory.seeding(same)]
        name = f"{manifest.name}-{manifest.version}"
        return {
            "ref": f"{manifest.owner}/{manifest.ref}",
            "name": name,
            "info_hash": manifest.torrent.info_hash.hex(),
            "torrent_url": self._torrent_url(manifest, self._own()),
            "trackers": trackers,
            "seeds": [f"{host}:{port}" for host, port in seeds],
            "magnet": magnet_link(manifest.torrent.info_hash, name, trackers, seeds),
            "torrent": base64.b64encode(with_trackers(manifest.torrent.data, trackers)).decode(),
        }

    async def fetch(self, ref: str, *, train: str | None = None, **options: Any) -> dict[str, Any]:
        if train:
            self.registry.get(train)  # an unknown job fails now, not after the download
        return await self.fetcher.fetch(self.publisher_names().ref(ref), train=train, **options)

    def jobs(self) -> list[dict[str, Any]]:
        return self.fetcher.listing()

    def job(self, job_id: str) -> dict[str, Any]:
        return self.fetcher.get(job_id)

    async def cancel_job(self, job_id: str) -> dict[str, Any]:
        return await self.fetcher.cancel(job_id)

    async def retry_job(self, job_id: str) -> dict[str, Any]:
        return await self.fetcher.retry(job_id)

    def _source_label(self, endpoint: tuple[str, int]) -> str:
        """A torrent endpoint as the user knows it: the publisher name (or id) listening there."""
        names = self.publisher_names()
        for info in self.directory.infos():
            if endpoint in (*info.torrent_endpoints, *info.ssl_torrent_endpoints):
                return names.of(info.cluster_id) or info.cluster_id
        return f"{endpoint[0]}:{endpoint[1]}"

    def _held_folders(self) -> list[tuple[Manifest, Path]]:
        """Datasets whose files this cluster holds, and where: a fetch reuses them."""
        held = []
        for table, folder in ((self.published, "directory"), (self.landed, "staging")):
            for record in table.items().values():
                manifest = self._manifest(record)
                if manifest is not None and not restricted.is_stub(manifest):
                    held.append((manifest, Path(record[folder])))
        return held

    async def _on_landed(self, landed: Landed) -> list[str]:
        """Record a landing (to seed it and train on it); start its training runs, once."""
        manifest, job = landed.manifest, landed.job
        specs: list[JobSpec] = []
        if landed.staging is not None:  # else landed before: recorded and triggered then
            self.landed.put(manifest.id, {
                **_record_key(manifest), "ref": job.ref, "uri": landed.uri, "tier": job.tier,
                "staging": str(landed.staging), "landed": int(time.time()),
                "files": len(landed.landing.files),  # fewer than the manifest's after `--files`
            })
            self._track(manifest)  # the finished swarm seeds it from staging
            specs = matching_jobs(self.registry.specs(), landed.landing)
        try:
            if job.train and all(spec.name != job.train for spec in specs):
                specs.append(self.registry.get(job.train))
            return [(await self.launcher.submit(spec, landed.landing, landed.uri)).id for spec in specs]
        except TrainingError as exc:  # the data landed all the same
            log.warning("fetch job %s landed, but training did not start: %s", job.id, exc)
            self.events.emit("run.failed", job=job.id, message=str(exc))
            return []

    # ---- control API: peers, trust, status ---------------------------------------------------

    def refused_peers(self) -> int:
        """Peers that answered with a catalog we refuse (untrusted, unproven, forged)."""
        return sum(status.state is PeerState.REJECTED for status in self.health.peers())

    def peers(self) -> list[dict[str, Any]]:
        rows = []
        names = self.publisher_names()
        for status in self.health.peers():
            held = self.catalogs.held(status.cluster_id) if status.cluster_id else None
            rows.append(
                {
                    "url": status.url,
                    "cluster_id": status.cluster_id,
                    "name": names.of(status.cluster_id),
                    "state": str(status.state),
                    "source": ",".join(sorted(str(source) for source in status.sources)),
                    "last_seen": status.last_seen,
                    "failures": status.failures,
                    "error": status.last_error,
                    "catalog_version": held.version if held else None,
                    # Signed our nonce naming this very URL: not an impostor or a relay.
                    "proven": bool((info := self.directory.info(status.url)) and info.proven),
                }
            )
        return rows

    async def add_peer(self, url: str) -> dict[str, Any]:
        url = normalize_peer_url(url)
        self.added_peers.put(url, {})
        self.health.add(url, Source.ADDED, time.time())
        self._sync_wakeup.set()
        return {"url": url, "added": True}

    async def remove_peer(self, url: str) -> dict[str, Any]:
        url = normalize_peer_url(url)
        self.added_peers.delete(url)
        self.directory.forget(url)  # never again a source or an owner to ask
        return {"url": url, "removed": self.health.forget(url)}

    def grant(self, name: str, cluster: str) -> dict[str, Any]:
        return self.restricted.grant(name, cluster)

    def revoke(self, name: str, cluster: str) -> dict[str, Any]:
        return self.restricted.revoke(name, cluster)

    def trust_list(self) -> list[dict[str, Any]]:
        return [asdict(entry) for entry in self.trust.list()]

    def trust_add(self, key_or_id: str, name: str | None) -> dict[str, Any]:
        cluster_id = self.trust.add(key_or_id, name=name)
        # Peers whose catalog was refused as untrusted are worth asking again at once.
        for status in self.health.peers():
            if status.cluster_id == cluster_id and status.sources:
                self.health.add(status.url, next(iter(status.sources)), time.time())
        self._sync_wakeup.set()
        discovering.wake(self.sources)  # look it up on the DHT now
        return {"cluster_id": cluster_id, "trusted": True}

    def trust_remove(self, cluster_id: str) -> dict[str, Any]:
        self.trust.remove(cluster_id)
        if cluster_id != self.identity.cluster_id:
            # Its datasets go at once, not when its catalog expires; trusting it again
            # fetches the catalog afresh (no ETag held).
            self.catalogs.forget(cluster_id)
            for status in self.health.peers():
                if status.cluster_id == cluster_id:
                    self.directory.catalog_dropped(status.url)
            discovering.wake(self.sources)  # what the DHT found of it goes now
        return {"cluster_id": cluster_id, "removed": True}

    def status(self) -> dict[str, Any]:
        return {
            "cluster": {
                "id": self.identity.cluster_id,
                "name": self.config.cluster.name,
                "store": self.config.store.kind,
                "root": self.config.store_root,
                "peer_url": self.peer_url,
                "tiers_enforced": self.config.store.kind == "hdfs",
                "staging": {
                    "used": self.transfer.staging.ledger.used,
                    "budget": self.config.transfer.staging_budget,
                    "path": str(self.config.staging_dir),
                },
            },
            "peers": self.peers(),
            "dht": discovering.dht_status(self, self.sources),
            # Seeding: bytes sent per dataset and per remote peer, p2pdata or any client.
            "transfer": self.transfer.upload_stats(),
            "jobs": self.jobs(),
            "landed": [{"manifest_id": key, **record} for key, record in self.landed.items().items()],
            "runs": self.runs(),
            "published": [manifest_summary(m) for m in self.local_catalog.datasets()],
            "publishers": self.publishers(),
        }

    # ---- control API: tiers and training ------------------------------------------------------

    async def set_tier(self, ref: str, tier: str, move: bool) -> dict[str, Any]:
        manifest = self._landed_manifest(ref)
        return asdict(await self.store.set_tier(manifest.name, manifest.version, tier, move=move))

    def _landed_manifest(self, ref: str) -> Manifest:
        manifest = self.catalogs.resolve(self.publisher_names().ref(ref))
        if manifest.id not in self.landed.items():
            raise NotFound(f"{manifest.ref} has not landed on this cluster")
        return manifest

    async def train(self, job_name: str, ref: str) -> dict[str, Any]:
        manifest = self._landed_manifest(ref)
        uri = self.landed.items()[manifest.id]["uri"]
        return (await self.launcher.submit(self.registry.get(job_name), manifest, uri)).to_dict()

    def runs(self) -> list[dict[str, Any]]:
        return [run.to_dict() for run in self.launcher.runs()]

    def run(self, run_id: str) -> dict[str, Any]:
        return self.launcher.run(run_id).to_dict()

    async def cancel_run(self, run_id: str) -> dict[str, Any]:
        return (await self.launcher.cancel(run_id)).to_dict()

    def add_training_job(self, spec_toml: str, filename: str, base_dir: str | None = None) -> dict[str, Any]:
        return self.registry.add_text(
            spec_toml, filename, base_dir=Path(base_dir) if base_dir else None, replace=True
        ).to_dict()

    def remove_training_job(self, name: str) -> dict[str, Any]:
        self.registry.remove(name)
        return {"name": name, "removed": True}

    def training_jobs(self) -> list[dict[str, Any]]:
        return [spec.to_dict() for spec in self.registry.specs()]

    # ---- control API: datasets (info, ls), publisher names, unpublish, sync now --------------

    def publisher_names(self) -> PublisherNames:
        return PublisherNames(
            own=(self.identity.cluster_id, self.config.cluster.name),
            labels={entry.cluster_id: entry.name for entry in self.trust.list()},
            claimed={info.cluster_id: info.name for info in self.directory.infos()},
        )

    def publishers(self) -> dict[str, str]:
        """Cluster id → the name shown for it (for tables that show refs)."""
        return self.publisher_names().as_dict()

    def dataset_info(self, ref: str) -> dict[str, Any]:
        """What `info`, `ls` and `p2pdata.load` show: the manifest, its publisher's name, the
        other versions, and where it has landed here (None before any fetch)."""
        names = self.publisher_names()
        manifest = self.restricted.full(self.catalogs.resolve(names.ref(ref)))
        same_name = self.catalogs.manifests(cluster=manifest.owner, name=manifest.name)
        versions = {m.version for m in same_name}
        landed = self.landed.items()
        record = landed.get(manifest.id)
        return {
            **manifest_summary(manifest),
            "publisher_name": names.of(manifest.owner),
            "ref": f"{names.label(manifest.owner)}/{manifest.ref}",  # what a user copies
            "rows": manifest.extra.get("rows"),
            "versions": sorted(versions, key=version_key),
            # Those here: a notebook that loads NAME learns which it can open without a fetch.
            "landed_versions": sorted({m.version for m in same_name if m.id in landed}, key=version_key),
            "landed": None if record is None else {
                "uri": record["uri"], "tier": record.get("tier"), "landed": record.get("landed"),
                "files": record.get("files", len(manifest.files)),
            },
        }

    async def unpublish(self, ref: str) -> dict[str, Any]:
        """Withdraw one of our versions: a new signed catalog without it; its seed stops."""
        _, name, version = parse_ref(ref)
        if version is None:
            raise P2pdataError(f"unpublish takes NAME@VERSION (which version of {name}?)")
        manifest = self.local_catalog.get(name, version)
        self.local_catalog.remove(name, version)
        self.published.delete(manifest.id)
        for swarm in self.transfer.swarms():
            if swarm.manifest.id == manifest.id and manifest.id not in self.landed.items():
                await swarm.stop()
        self.events.emit("dataset.unpublished", ref=manifest.ref, manifest=manifest.id)
        return {"ref": manifest.ref, "unpublished": True}

    async def sync_now(self) -> list[dict[str, Any]]:
        """Ask every known peer for its catalog now, not at its next turn; the peers afterwards."""
        urls = [status.url for status in self.health.peers() if status.sources]
        results = await asyncio.gather(*(self.sync_peer(url) for url in urls), return_exceptions=True)
        for url, result in zip(urls, results, strict=True):
            if isinstance(result, Exception):
                log.error("sync with %s failed", url, exc_info=result)
        return self.peers()


def manifest_summary(manifest: Manifest) -> dict[str, Any]:
    """The JSON face of a manifest for the control API (hashes in hex, no torrent bytes)."""
    return {
        "id": manifest.id,
        "name": manifest.name,
        "version": manifest.version,
        "publisher": manifest.owner,
        "description": manifest.description,
        "tags": list(manifest.tags),
        "license": manifest.license,
        "format": manifest.format,
        "created": manifest.created,
        "total_size": manifest.total_size,
        "access": manifest.access.mode,
        # BitTorrent v2 info hash (hex): what a magnet link or another client names it by.
        "info_hash": manifest.torrent.info_hash.hex() if manifest.torrent else None,
        "schema": [{"name": c.name, "type": c.type} for c in manifest.schema],
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256.hex()} for f in manifest.files],
    }


def _record_key(manifest: Manifest) -> dict[str, str]:
    return {"cluster": manifest.owner, "name": manifest.name, "version": manifest.version}


def _server_tls(cert: Path, key: Path) -> Any:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def _bound_port(runner: web.AppRunner) -> int:
    return int(runner.addresses[0][1])


def _advertised_host(host: str) -> str:
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host


def setup_logging(verbose: bool) -> None:
    """Structured logs: one key=value line per event, easy to grep and to ship."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="time=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)r",
    )
    # One line per HTTP request drowns what matters; errors still come through.
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if verbose else logging.WARNING)


def run_daemon(config: Config, *, verbose: bool = False) -> None:
    setup_logging(verbose)

    async def main() -> None:
        daemon = Daemon(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await daemon.start()
        print(f"p2pdata daemon {daemon.identity.cluster_id} ready; control {daemon.control_url}", flush=True)
        await stop.wait()
        log.info("stopping: saving resume data, parking landings")
        await daemon.stop()

    asyncio.run(main())
