"""The `p2pdata` command. Local set-up commands work on the home directly; the rest are thin
calls to the running daemon's control API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from p2pdata.config import Config, load_config, resolve_home, secure_home, write_default_config
from p2pdata.display import (
    Column,
    ago,
    follow_fetch,
    human_size,
    named_ref,
    parse_size,
    plain,
    print_table,
    printable,
    publisher,
)
from p2pdata.errors import NotHeld, P2pdataError

console = Console()
# catalog.FORMATS, spelt out: importing the catalog package (pyarrow) would slow every command.
FORMATS = ("parquet", "tfrecord", "csv", "files")


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _result(result: dict[str, Any], as_json: bool, line: str) -> None:
    """What a command changed: the daemon's answer with --json, else one line for a person."""
    _emit_json(result) if as_json else plain(console, line)


def _table(rows: list[dict[str, Any]], columns: list[Column], title: str | None = None) -> None:
    print_table(console, rows, columns, title)


def _listing(ctx: Context, path: str, columns: list[Column], as_json: bool) -> None:
    rows = ctx.call("GET", path)
    _emit_json(rows) if as_json else _table(rows, columns)


# Columns of the tables several commands show; `whole` ones are what a user copies.
PEER_COLUMNS = [
    Column("url", whole=True),
    Column("publisher", "cluster", whole=True),
    Column("source"),  # how we know it: static, added, zeroconf, dht
    Column("state"),
    Column("last_seen", "seen", ago),
    Column("catalog_version", "catalog"),
    Column("error", wraps=True),
]
JOB_COLUMNS = [
    Column("id", whole=True),
    Column("ref", whole=True),
    Column("state"),
    Column("progress"),
    Column("why", wraps=True),  # why it waits while it runs, why it failed once it is over
]
LANDED_COLUMNS = [Column("ref", whole=True), Column("uri", whole=True), Column("tier")]
RUN_COLUMNS = [
    Column("id", whole=True),
    Column("job"),
    Column("dataset", whole=True),
    Column("state"),
    Column("where", wraps=True),  # the engine, and its application or job id
    Column("exit_code", "exit"),
]


def _jobs_rows(jobs: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """Fetch jobs for a table: refs under the publisher's name, progress in human sizes."""
    return [
        {
            **job,
            "ref": named_ref(job["ref"], names),
            "progress": f"{human_size(job.get('done_bytes') or 0)} / {human_size(job.get('total_bytes'))}",
            "why": job.get("waiting") or job.get("error") or "",
        }
        for job in jobs
    ]


def _peer_rows(peers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**peer, "publisher": _publisher(peer.get("cluster_id"), peer.get("name"))} for peer in peers]


def _publisher(cluster_id: str | None, name: str | None) -> str:
    return publisher(cluster_id, {cluster_id: name} if cluster_id and name else {})


def complete_dataset(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of dataset names from the local search index (no daemon needed)."""
    from p2pdata.catalog import CatalogStore
    from p2pdata.db import open_db

    try:
        home = resolve_home(ctx.find_root().params.get("home"))
        conn = open_db(load_config(home).database)
    except (P2pdataError, OSError):
        return []
    try:
        pairs = CatalogStore(conn).names(incomplete.split("@")[0])
    finally:
        conn.close()
    if "@" in incomplete:
        return [f"{name}@{version}" for name, version in pairs if f"{name}@{version}".startswith(incomplete)]
    return sorted({name for name, _ in pairs})


class Context:
    def __init__(self, home: Path) -> None:
        self.home = home

    @property
    def config(self) -> Config:
        if not self.home.is_dir():
            raise P2pdataError(
                f"p2pdata home {self.home} does not exist: check --home or $P2PDATA_HOME, "
                f"or create it with `p2pdata --home {self.home} init`"
            )
        return load_config(self.home)

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None, **query: Any) -> Any:
        from p2pdata.web.client import ControlClient

        return asyncio.run(ControlClient(self.config).call(method, path, payload, **query))


pass_context = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


class _Group(click.Group):
    """Turns p2pdata's own errors into one clear line and exit code 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except P2pdataError as exc:
            click.echo(printable(f"error: {exc}"), err=True)  # may hold a peer's words
            sys.exit(1)


class SizeType(click.ParamType):
    """A size with units: 4096, 512KiB, 10MiB, 1.5GiB, 2GB."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(file_okay=False), help="State directory (default: $P2PDATA_HOME).")
@click.version_option(package_name="p2pdata")
@click.pass_context
def main(ctx: click.Context, home: str | None) -> None:
    """Share curated datasets between clusters, land them in HDFS, train on them."""
    ctx.obj = Context(resolve_home(home))


@main.command()
@click.option("--name", default="", help="A human name for this cluster.")
@click.option("--force", is_flag=True, help="Replace an existing identity (peers will no longer trust it).")
@pass_context
def init(ctx: Context, name: str, force: bool) -> None:
    """Create this cluster's identity, config and state database."""
    from p2pdata.catalog import Identity
    from p2pdata.db import open_db

    identity = Identity.generate()
    secure_home(ctx.home)
    identity.save(ctx.home, force=force)
    write_default_config(ctx.home, name or identity.cluster_id)
    open_db(ctx.config.database).close()
    click.echo(f"initialised cluster {identity.cluster_id} in {ctx.home}")


@main.command("id")
@json_option
@pass_context
def show_id(ctx: Context, as_json: bool) -> None:
    """Show this cluster's id and public key."""
    from p2pdata.catalog import Identity, encode_public_key

    identity = Identity.load(ctx.home)
    data = {"cluster_id": identity.cluster_id, "public_key": encode_public_key(identity.public_key)}
    if as_json:
        _emit_json(data)
    else:
        click.echo(f"cluster id: {data['cluster_id']}\npublic key: {data['public_key']}")


@main.command()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@pass_context
def daemon(ctx: Context, verbose: bool) -> None:
    """Run the daemon in the foreground (SIGTERM or Ctrl-C stops it cleanly)."""
    from p2pdata.daemon import run_daemon

    run_daemon(ctx.config, verbose=verbose)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--name", required=True, help="Dataset name: [a-z0-9][a-z0-9._-]*.")
@click.option("--version", "version", required=True, help="Version, e.g. 2024.03; a version's files never change.")
@click.option("--description", default="", help="What the data is, for search.")
@click.option("--tag", "tags", multiple=True, help="A tag for search (repeatable).")
@click.option("--license", "license_", default="", help="Licence, e.g. CC-BY-4.0.")
@click.option("--access", type=click.Choice(["public", "restricted"]), default="public", show_default=True,
              help="restricted: only clusters given --allow or `p2pdata grant` may fetch it.")
@click.option("--allow", multiple=True, help="Cluster ids allowed to fetch a restricted dataset.")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="The format, when the file names do not tell it alone (files: publish a mix as plain files).")
@json_option
@pass_context
def publish(
    ctx: Context,
    directory: str,
    name: str,
    version: str,
    description: str,
    tags: tuple[str, ...],
    license_: str,
    access: str,
    allow: tuple[str, ...],
    fmt: str | None,
    as_json: bool,
) -> None:
    """Publish DIRECTORY as NAME@VERSION in this cluster's catalog."""
    manifest = ctx.call(
        "POST",
        "/v1/publish",
        {
            "directory": str(Path(directory).absolute()),
            "name": name,
            "version": version,
            "description": description,
            "tags": list(tags),
            "license": license_,
            "access": access,
            "allow": list(allow),
            "format": fmt,
        },
    )
    if as_json:
        _emit_json(manifest)
    else:
        click.echo(
            f"published {manifest['name']}@{manifest['version']}: {len(manifest['files'])} files, "
            f"{human_size(manifest['total_size'])}, format {manifest['format']}"
        )


@main.command()
@click.argument("query", default="")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Only datasets of this format.")
@click.option("--publisher", help="Only this publisher: its cluster id or name.")
@click.option("--tag", help="Only datasets with this tag.")
@click.option("--min-size", type=SIZE, help="At least this big, e.g. 10MiB.")
@click.option("--max-size", type=SIZE, help="At most this big, e.g. 2GiB.")
@json_option
@pass_context
def search(
    ctx: Context,
    query: str,
    fmt: str | None,
    publisher: str | None,
    tag: str | None,
    min_size: int | None,
    max_size: int | None,
    as_json: bool,
) -> None:
    """Search the catalogs of this cluster and all its peers."""
    results = ctx.call(
        "GET",
        "/v1/search",
        q=query,
        format=fmt,
        publisher=publisher,
        tag=tag,
        min_size=min_size,
        max_size=max_size,
    )
    if as_json:
        _emit_json(results)
        return
    rows = results
    if not rows:  # a peer whose catalog we refuse may hold what was asked for
        refused = sum(peer["state"] == "rejected" for peer in ctx.call("GET", "/v1/peers"))
        if hint := NotHeld.hint(refused):
            _say(f"no dataset found{hint}", quiet=False)
            return
    columns = [
        Column("ref", "dataset", whole=True),
        Column("format"),
        Column("total_size", "size", human_size),
        Column("description"),
    ]
    _table(rows, columns, title=f"{len(rows)} datasets")


@main.command()
@click.argument("ref", shell_complete=complete_dataset)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the .torrent (default: NAME-VERSION.torrent).")
@click.option("--magnet", is_flag=True, help="Print the magnet link instead of writing a file.")
@json_option
@pass_context
def torrent(ctx: Context, ref: str, output: Path | None, magnet: bool, as_json: bool) -> None:
    """The .torrent or magnet link of public dataset NAME[@VERSION], for any BitTorrent client.

    Both carry the trackers that serve it; the magnet also the seeds' addresses.
    """
    data = ctx.call("GET", "/v1/torrent", ref=ref)
    if magnet and output is None:
        if as_json:
            _emit_json({k: v for k, v in data.items() if k != "torrent"})
        else:
            click.echo(data["magnet"])
        return
    target = output or Path(f"{data['name']}.torrent")
    target.write_bytes(base64.b64decode(data["torrent"]))
    if as_json:
        _emit_json({**{k: v for k, v in data.items() if k != "torrent"}, "file": str(target)})
    else:
        click.echo(f"wrote {target} (info hash {data['info_hash']})")
        if magnet:
            click.echo(data["magnet"])


@main.command()
@click.argument("ref", shell_complete=complete_dataset)
@json_option
@pass_context
def info(ctx: Context, ref: str, as_json: bool) -> None:
    """Show NAME[@VERSION]: publisher, files, schema, versions, and where it landed here.

    Works before any fetch, from the publisher's catalog.
    """
    data = ctx.call("GET", "/v1/datasets/info", ref=ref)
    if as_json:
        _emit_json(data)
        return
    rows = "" if data.get("rows") is None else f", {data['rows']:,} rows"
    summary = f"{len(data['files'])} files, {human_size(data['total_size'])}{rows}"
    lines = [
        f"{data['name']}@{data['version']} ({data['format']}, {summary}, {data['access']})",
        f"publisher: {data['publisher_name']} ({data['publisher']})" if data.get("publisher_name")
        else f"publisher: {data['publisher']}",
        f"description: {data['description']}" if data["description"] else "",
        f"license: {data['license']}" if data["license"] else "",
        f"tags: {', '.join(data['tags'])}" if data["tags"] else "",
        f"versions: {', '.join(data['versions'])}",
        f"published: {ago(data['created'])}",
    ]
    landed = data.get("landed")
    if landed:
        part = "" if landed["files"] == len(data["files"]) else f"{landed['files']} of {len(data['files'])} files, "
        lines.append(f"landed here: {landed['uri']} ({part}tier {landed['tier']}, {ago(landed['landed'])})")
    else:
        lines.append(f"not landed here: p2pdata fetch {data['ref']}")
    for line in filter(None, lines):
        plain(console, line)
    if data["schema"]:
        _table(data["schema"], [Column("name", "column", whole=True), Column("type", wraps=True)], "schema")


@main.command("ls")
@click.argument("ref", shell_complete=complete_dataset)
@json_option
@pass_context
def ls(ctx: Context, ref: str, as_json: bool) -> None:
    """List the files of NAME[@VERSION] with their sizes (works before any fetch)."""
    data = ctx.call("GET", "/v1/datasets/info", ref=ref)
    if as_json:
        _emit_json(data["files"])
        return
    title = f"{data['name']}@{data['version']}: {len(data['files'])} files, {human_size(data['total_size'])}"
    _table(data["files"], [Column("path", whole=True), Column("size", show=human_size)], title)


@main.command()
@click.argument("ref", shell_complete=complete_dataset)
@json_option
@pass_context
def unpublish(ctx: Context, ref: str, as_json: bool) -> None:
    """Withdraw NAME@VERSION from this cluster's catalog and stop seeding it.

    Peers see it gone at their next sync; copies they already fetched stay theirs.
    """
    result = ctx.call("POST", "/v1/unpublish", {"ref": ref})
    _emit_json(result) if as_json else click.echo(f"unpublished {result['ref']}")


@main.command()
@json_option
@pass_context
def sync(ctx: Context, as_json: bool) -> None:
    """Fetch every peer's catalog now, instead of waiting for the next round."""
    rows = ctx.call("POST", "/v1/sync", {})
    _emit_json(rows) if as_json else _table(_peer_rows(rows), PEER_COLUMNS, f"synced {len(rows)} peers")


@main.command()
@click.argument("ref", shell_complete=complete_dataset)
@click.option("--tier", help="Storage tier: ssd, one_ssd, hot, warm, cold, memory (or a policy name).")
@click.option("--to", "to", help="Store root (an absolute path) to land under, instead of the configured one.")
@click.option("--train", "train", help="A training job to start once the data has landed.")
@click.option("--files", "files", multiple=True, help="Only files matching this glob (repeatable).")
@click.option("--detach", is_flag=True, help="Return at once; follow with `p2pdata jobs watch ID`.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Stop waiting after this many seconds (the fetch goes on).")
@click.option("--peer", "peers", multiple=True, metavar="HOST:PORT",
              help="Also fetch from this seed, any BitTorrent client (repeatable).")
@click.option("--verify", type=click.Choice(["v2", "sha256"]), default="v2", show_default=True,
              help="v2: the swarm's piece hashes under the signed torrent; sha256: also re-check "
              "each file's whole-file SHA-256 while landing.")
@json_option
@pass_context
def fetch(
    ctx: Context,
    ref: str,
    tier: str | None,
    to: str | None,
    train: str | None,
    files: tuple[str, ...],
    detach: bool,
    timeout: float | None,
    peers: tuple[str, ...],
    verify: str,
    as_json: bool,
) -> None:
    """Fetch NAME[@VERSION] (or CLUSTER/NAME@VERSION) from every peer that has it and land it.

    A fetch of a dataset already being fetched attaches to that job. Ctrl-C leaves the
    fetch running in the daemon (see `p2pdata jobs watch`); a second Ctrl-C within
    3 seconds cancels it. Exits 1 when the job fails or is cancelled, with --json too.
    """
    job = ctx.call(
        "POST", "/v1/fetch",
        {"ref": ref, "tier": tier, "to": to, "train": train, "files": list(files), "verify": verify,
         "peers": list(peers)},
    )
    if job.get("attached") and not as_json:  # JSON says so in "attached"
        click.echo(f"{job['ref']} is already being fetched: attached to job {job['id']}")
    if not detach:
        job = asyncio.run(_attach(ctx, job, timeout=timeout, quiet=as_json))
    _job_outcome(job, as_json)


_CANCEL_WINDOW = 3.0  # seconds in which a second Ctrl-C cancels the fetch


def _say(message: str, quiet: bool) -> None:
    """A note for the user; on stderr when stdout is JSON for a script."""
    click.echo(message, err=quiet)


def _job_outcome(job: dict[str, Any], as_json: bool) -> None:
    """Print what became of a fetch job; exit 1 if it failed or was cancelled."""
    if as_json:
        _emit_json(job)
        if job["state"] in ("failed", "cancelled"):
            sys.exit(1)
        return
    if job["state"] == "landed":
        click.echo(f"landed {job['ref']} at {job['uri']}")
        for run in job.get("runs") or []:
            click.echo(f"started training run {run} (follow it with `p2pdata jobs logs {run} --follow`)")
    elif job["state"] in ("failed", "cancelled"):
        hint = f"; retry with `p2pdata jobs retry {job['id']}`" if job.get("retryable") else ""
        reason = f": {job['error']}" if job.get("error") else ""  # a cancel needs no reason
        raise P2pdataError(f"fetch of {job['ref']} {job['state']}{reason}{hint}")
    else:
        click.echo(printable(f"fetch job {job['id']} for {job['ref']}: {job['state']}"
                             + (f" ({job['waiting']})" if job.get("waiting") else "")))


async def _attach(ctx: Context, job: dict[str, Any], *, timeout: float | None,
                  quiet: bool) -> dict[str, Any]:
    """Follow a job until it ends, the timeout passes, or Ctrl-C (see `fetch`)."""
    from p2pdata.web.client import ControlClient

    client = ControlClient(ctx.config)
    loop = asyncio.get_running_loop()
    follow = asyncio.create_task(follow_fetch(client, job, console=console, quiet=quiet))
    choice: list[str] = []  # "asked", then "leave" or "cancel"

    def leave() -> None:
        if choice == ["asked"]:
            choice.append("leave")
            follow.cancel()

    def interrupted() -> None:
        if not choice:
            choice.append("asked")
            _say(f"\nCtrl-C: fetch job {job['id']} goes on in the daemon. "
                 f"Press Ctrl-C again within {_CANCEL_WINDOW:.0f} s to cancel it.", quiet)
            loop.call_later(_CANCEL_WINDOW, leave)
        elif choice == ["asked"]:
            choice.append("cancel")
            follow.cancel()

    handled = threading.current_thread() is threading.main_thread()  # else no signals reach us
    if handled:
        loop.add_signal_handler(signal.SIGINT, interrupted)
        _say(f"following fetch job {job['id']}: Ctrl-C leaves it running, twice cancels it", quiet)
    try:
        await asyncio.wait({follow}, timeout=timeout)
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
    if "cancel" in choice:
        return await client.call("POST", f"/v1/jobs/{job['id']}/cancel", {})
    if "leave" in choice:
        _say(f"left fetch job {job['id']} running: `p2pdata jobs watch {job['id']}` follows it, "
             f"`p2pdata jobs cancel {job['id']}` stops it", quiet)
    return await client.call("GET", f"/v1/jobs/{job['id']}")


@main.command()
@click.option("--web", is_flag=True, help="Print a one-time login link for the status page.")
@json_option
@pass_context
def status(ctx: Context, web: bool, as_json: bool) -> None:
    """Show this cluster, its peers, transfers, landed datasets and training runs."""
    if web:
        url = ctx.call("POST", "/v1/login-link", {})["url"]
        _result({"url": url}, as_json, url)
        return
    data = ctx.call("GET", "/v1/status")
    if as_json:
        _emit_json(data)
        return
    cluster = data["cluster"]
    plain(console, f"cluster {cluster['id']} ({cluster['name']}); store {cluster['store']} at {cluster['root']}")
    names = data.get("publishers") or {}
    _table(_peer_rows(data["peers"]), PEER_COLUMNS, "peers")
    if data.get("dht"):
        _dht_lines(data["dht"])
    _table(_jobs_rows(data["jobs"], names), JOB_COLUMNS, "fetch jobs")
    _table([{**d, "ref": named_ref(d["ref"], names)} for d in data["landed"]], LANDED_COLUMNS, "landed datasets")
    _table(data["runs"], RUN_COLUMNS, "training runs")
    sent = data.get("transfer") or {}
    _table(sent.get("datasets", []), [Column("dataset", whole=True), Column("sent", show=human_size)],
           "seeding: sent per dataset")
    _table(sent.get("peers", [])[:20], [Column("address", whole=True), Column("client"),
                                        Column("sent", show=human_size)], "seeding: sent per peer")


def _dht_lines(dht: dict[str, Any]) -> None:
    """The DHT under `status`: our record, and why clusters were not found (outside text)."""
    published = dht.get("published")
    ours = (f"our record: catalog version {published['catalog_version']} (its seq)"
            if published else f"our record not published ({dht.get('publish_error') or 'not yet'})")
    plain(console, f"DHT: port {dht['port']}, {dht['nodes']} nodes; {ours}")
    if published and dht.get("publish_error"):  # e.g. our catalog version went backwards
        plain(console, f"  last put: {dht['publish_error']}")
    for cluster, why in sorted(dht.get("refused", {}).items()):
        plain(console, f"  refused for {cluster}: {why}")
    if dht.get("not_found"):
        plain(console, f"  no record on the DHT for: {', '.join(dht['not_found'])}")
    if dht.get("key_unknown"):
        plain(console, f"  trusted by id only, cannot be looked up: {', '.join(dht['key_unknown'])}")


@main.group(invoke_without_command=True)
@json_option
@click.pass_context
def peers(click_ctx: click.Context, as_json: bool) -> None:
    """List peers (and add or remove static ones)."""
    if click_ctx.invoked_subcommand is None:
        rows = click_ctx.obj.call("GET", "/v1/peers")
        _emit_json(rows) if as_json else _table(_peer_rows(rows), PEER_COLUMNS)


@peers.command("add")
@click.argument("url")
@json_option
@pass_context
def peers_add(ctx: Context, url: str, as_json: bool) -> None:
    """Add a peer by the URL of its peer API (kept across restarts)."""
    result = ctx.call("POST", "/v1/peers", {"url": url})
    _result(result, as_json, f"added peer {result['url']}")


@peers.command("remove")
@click.argument("url")
@json_option
@pass_context
def peers_remove(ctx: Context, url: str, as_json: bool) -> None:
    """Forget a peer added by URL."""
    result = ctx.call("POST", "/v1/peers/remove", {"url": url})
    _result(result, as_json, f"removed peer {result['url']}" if result["removed"]
            else f"{result['url']} was not a known peer")


@main.command()
@click.argument("name")
@click.argument("cluster")
@json_option
@pass_context
def grant(ctx: Context, name: str, cluster: str, as_json: bool) -> None:
    """Let CLUSTER fetch the restricted dataset NAME (every version)."""
    result = ctx.call("POST", "/v1/grants", {"name": name, "cluster": cluster})
    _result(result, as_json, f"granted {cluster} access to {name}"
            + ("" if result.get("new", True) else " (it had it already)"))


@main.command()
@click.argument("name")
@click.argument("cluster")
@json_option
@pass_context
def revoke(ctx: Context, name: str, cluster: str, as_json: bool) -> None:
    """Stop CLUSTER's new access to NAME; copies it already fetched stay with it."""
    result = ctx.call("POST", "/v1/grants/revoke", {"name": name, "cluster": cluster})
    expire = result.get("certificates_expire_within")
    _result(result, as_json, (f"revoked {cluster}'s access to {name}"
                              + (f"; certificates it holds expire within {expire} s" if expire else ""))
            if result.get("revoked") else f"{cluster} had no grant for {name}")


@main.group()
def trust() -> None:
    """Which publishers' catalogs this cluster accepts."""


@trust.command("add")
@click.argument("cluster_or_key_file")
@click.option("--name", help="A label for this publisher.")
@json_option
@pass_context
def trust_add(ctx: Context, cluster_or_key_file: str, name: str | None, as_json: bool) -> None:
    """Trust a cluster id (pins its key fingerprint) or the key in PUBLIC_KEY_FILE."""
    path = Path(cluster_or_key_file)
    key = path.read_text().strip() if path.is_file() else cluster_or_key_file
    result = ctx.call("POST", "/v1/trust", {"key": key, "name": name})
    _result(result, as_json, f"trusting {result['cluster_id']}" + (f" as {name}" if name else ""))


@trust.command("list")
@json_option
@pass_context
def trust_list(ctx: Context, as_json: bool) -> None:
    """List the trusted publishers."""
    rows = ctx.call("GET", "/v1/trust")
    columns = [
        Column("cluster_id", "cluster", whole=True),
        Column("name"),
        Column("added", show=ago),
        Column("first_use", "how", lambda first: "first use" if first else "added"),
    ]
    _emit_json(rows) if as_json else _table(rows, columns)


@trust.command("remove")
@click.argument("cluster_id")
@json_option
@pass_context
def trust_remove(ctx: Context, cluster_id: str, as_json: bool) -> None:
    """Stop trusting CLUSTER_ID's catalogs."""
    result = ctx.call("POST", "/v1/trust/remove", {"cluster_id": cluster_id})
    _result(result, as_json, f"no longer trusting {result['cluster_id']}")


@main.group()
def catalog() -> None:
    """This cluster's signed catalog."""


@catalog.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
@click.option("--full", is_flag=True,
              help="The owner's full copy: restricted datasets with their files, allow-list and "
                   "torrent. Never hand it to a peer. Without it, export shows what peers see.")
@pass_context
def catalog_export(ctx: Context, output: str | None, full: bool) -> None:
    """Write this cluster's signed catalog, as the peer API serves it."""
    from p2pdata.catalog import Identity, LocalCatalog
    from p2pdata.db import open_db
    from p2pdata.restricted import public_view

    config = ctx.config
    show = config.restricted.show
    signed = LocalCatalog(open_db(config.database), Identity.load(ctx.home)).signed(
        now=int(time.time()), lifetime=config.cluster.catalog_lifetime,
        public=None if full else lambda manifest: public_view(manifest, show),
    )
    if output:
        Path(output).write_bytes(signed)
    else:
        sys.stdout.buffer.write(signed)


@catalog.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@pass_context
def catalog_verify(ctx: Context, file: str) -> None:
    """Check a signed catalog against the trust store and what this cluster holds."""
    from p2pdata.catalog import CatalogStore, TrustStore, verify_catalog
    from p2pdata.db import open_db

    config = ctx.config
    conn = open_db(config.database)
    trust_store = TrustStore(conn, trust_on_first_use=False)
    blob = Path(file).read_bytes()
    held = CatalogStore(conn)
    # The held version of the signer comes from the blob itself; a lying blob fails the signature.
    signer = verify_catalog(blob, trusted=trust_store.is_trusted, now=int(time.time())).catalog.cluster
    verified = verify_catalog(
        blob, trusted=trust_store.is_trusted, now=int(time.time()), held=held.held(signer)
    )
    catalog_ = verified.catalog
    click.echo(
        f"ok: catalog of cluster {catalog_.cluster}, version {catalog_.version}, "
        f"{len(catalog_.datasets)} datasets, expires in {catalog_.expires - int(time.time())} s"
    )


@main.command()
@click.argument("ref")
@click.argument("tier")
@click.option("--move", is_flag=True, help="Run the HDFS mover so existing blocks follow the new policy.")
@json_option
@pass_context
def tier(ctx: Context, ref: str, tier: str, move: bool, as_json: bool) -> None:
    """Change the storage tier of a landed dataset."""
    report = ctx.call("POST", "/v1/tier", {"ref": ref, "tier": tier, "move": move})
    _emit_json(report) if as_json else click.echo(_tier_summary(report))


def _tier_summary(report: dict[str, Any]) -> str:
    """One line: the policy, where the block replicas are, and whether that satisfies it."""
    policy = report["policy"]
    line = f"{report['name']}@{report['version']}: storage policy {policy}"
    if not report.get("enforced"):
        return f"{line} ({report.get('detail', 'not enforced')})"
    placement = report.get("placement") or {}
    where = ", ".join(f"{count} on {kind}" for kind, count in sorted(placement.items()))
    line += f"; block replicas: {where or 'none'}"
    if report.get("satisfied") is True:
        line += f"; all where {policy} wants them"
    elif report.get("satisfied") is False:
        line += f"; {report.get('misplaced', 0)} block(s) not where {policy} wants them"
        detail = (report.get("detail") or "").strip().splitlines()
        line += f" ({detail[-1]})" if report.get("moved") and detail else ""
        line += "" if report.get("moved") else " (use --move to move them)"
    return line


@main.command()
@click.argument("job")
@click.argument("ref")
@json_option
@pass_context
def train(ctx: Context, job: str, ref: str, as_json: bool) -> None:
    """Start training job JOB on the landed dataset REF."""
    run = ctx.call("POST", "/v1/train", {"job": job, "ref": ref})
    _emit_json(run) if as_json else click.echo(f"run {run['id']} of {run['job']}: {run['state']}")


@main.group(invoke_without_command=True)
@json_option
@click.pass_context
def jobs(click_ctx: click.Context, as_json: bool) -> None:
    """Fetch jobs (list, show, watch, cancel, retry), training job specs (add, specs, remove) and run logs."""
    if click_ctx.invoked_subcommand is None:
        rows = click_ctx.obj.call("GET", "/v1/jobs")
        if as_json:
            _emit_json(rows)
        else:
            names = click_ctx.obj.call("GET", "/v1/publishers")
            _table(_jobs_rows(rows, names), JOB_COLUMNS)


@jobs.command("show")
@click.argument("job_id")
@json_option
@pass_context
def jobs_show(ctx: Context, job_id: str, as_json: bool) -> None:
    """One fetch job: state, progress, why it waits, its error."""
    job = ctx.call("GET", f"/v1/jobs/{job_id}")
    if as_json:
        _emit_json(job)
        return
    rows = [("job", job["id"]), ("dataset", job["ref"]), ("state", job["state"]),
            ("progress", f"{human_size(job['done_bytes'])} of {human_size(job['total_bytes'])}"),
            ("files", ", ".join(job["files"]) or "all"), ("tier", job["tier"]),
            ("waiting", job.get("waiting")), ("error", job.get("error")), ("uri", job.get("uri")),
            ("runs", ", ".join(job.get("runs") or []))]
    for name, value in rows:
        if value:
            click.echo(printable(f"{name:>9}: {value}"))
    if job.get("retryable"):
        click.echo(f"retry with `p2pdata jobs retry {job['id']}`")


@jobs.command("watch")
@click.argument("job_id")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Stop watching after this many seconds.")
@json_option
@pass_context
def jobs_watch(ctx: Context, job_id: str, timeout: float | None, as_json: bool) -> None:
    """Attach to fetch job JOB_ID: its bar until it ends (Ctrl-C as in `fetch`)."""
    job = asyncio.run(_attach(ctx, ctx.call("GET", f"/v1/jobs/{job_id}"), timeout=timeout,
                              quiet=as_json))
    _job_outcome(job, as_json)


@jobs.command("cancel")
@click.argument("job_id")
@json_option
@pass_context
def jobs_cancel(ctx: Context, job_id: str, as_json: bool) -> None:
    """Cancel fetch job JOB_ID and delete what it staged."""
    job = ctx.call("POST", f"/v1/jobs/{job_id}/cancel", {})
    line = f"fetch job {job['id']} for {job['ref']}: {job['state']}"
    if job["state"] != "cancelled":  # it had ended: nothing to cancel
        line += " before the cancel; nothing was cancelled"
    _result(job, as_json, line)


@jobs.command("retry")
@click.argument("job_id")
@click.option("--detach", is_flag=True, help="Return at once.")
@json_option
@pass_context
def jobs_retry(ctx: Context, job_id: str, detach: bool, as_json: bool) -> None:
    """Run a failed fetch job again: what was verified is landed, not fetched again."""
    job = ctx.call("POST", f"/v1/jobs/{job_id}/retry", {})
    if not detach:
        job = asyncio.run(_attach(ctx, job, timeout=None, quiet=as_json))
    _job_outcome(job, as_json)


@jobs.command("add")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@json_option
@pass_context
def jobs_add(ctx: Context, spec: str, as_json: bool) -> None:
    """Add a training job spec (TOML); a spec with the same name is replaced."""
    import tomllib

    path = Path(spec)
    text = path.read_text()
    base_dir = path.absolute().parent
    with contextlib.suppress(tomllib.TOMLDecodeError, AttributeError, TypeError):  # the daemon says what is wrong
        data = tomllib.loads(text)
        script = data.get("entry", {}).get("script")
        if isinstance(script, str) and not (Path(data.get("base_dir") or base_dir) / script).is_file():
            raise P2pdataError(f"{spec}: entry.script {script} does not exist (relative to {base_dir})")
    payload = {"spec": text, "filename": path.name, "base_dir": str(base_dir)}
    added = ctx.call("POST", "/v1/training/jobs", payload)
    _result(added, as_json, f"added training job {added['name']}")


@jobs.command("specs")
@json_option
@pass_context
def jobs_specs(ctx: Context, as_json: bool) -> None:
    """List the training job specs and the datasets that trigger them."""
    rows = ctx.call("GET", "/v1/training/jobs")
    if as_json:
        _emit_json(rows)
        return
    for row in rows:
        trigger = row.get("trigger") or {}
        row["triggered by"] = trigger.get("dataset") or ""
        row["runs"] = (row.get("entry") or {}).get("script") or (row.get("entry") or {}).get("module")
    _table(rows, [Column("name", whole=True), Column("triggered by"), Column("runs", wraps=True),
                  Column("workers")])


@jobs.command("remove")
@click.argument("name")
@json_option
@pass_context
def jobs_remove(ctx: Context, name: str, as_json: bool) -> None:
    """Remove the training job spec NAME (its past runs stay listed)."""
    result = ctx.call("POST", "/v1/training/jobs/remove", {"name": name})
    _result(result, as_json, f"removed training job {name}")


@jobs.command("logs")
@click.argument("run_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
@pass_context
def jobs_logs(ctx: Context, run_id: str, follow: bool) -> None:
    """Print the logs of training run RUN_ID."""
    from p2pdata.training import RunState, follow_logs

    run = ctx.call("GET", f"/v1/runs/{run_id}")

    def ended() -> bool:
        return RunState(ctx.call("GET", f"/v1/runs/{run_id}")["state"]).terminal

    for line in follow_logs([Path(p) for p in run["logs"]], follow=follow, done=ended):
        click.echo(line, nl=False)


@main.group(invoke_without_command=True)
@json_option
@click.pass_context
def runs(click_ctx: click.Context, as_json: bool) -> None:
    """List training runs (and cancel one)."""
    if click_ctx.invoked_subcommand is None:
        _listing(click_ctx.obj, "/v1/runs", RUN_COLUMNS, as_json)


@runs.command("cancel")
@click.argument("run_id")
@json_option
@pass_context
def runs_cancel(ctx: Context, run_id: str, as_json: bool) -> None:
    """Cancel training run RUN_ID (its workers are stopped)."""
    run = ctx.call("POST", f"/v1/runs/{run_id}/cancel", {})
    _result(run, as_json, f"run {run['id']} of {run['job']}: {run['state']}")
