"""The `p2pdata` command. Local set-up commands work on the home directly; the rest are thin
calls to the running daemon's control API."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from p2pdata.config import Config, load_config, resolve_home, write_default_config
from p2pdata.errors import P2pdataError

console = Console()


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _size(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(column, "")) for column in columns))
    console.print(table)


def _ago(when: float | None) -> str:
    return "never" if when is None else f"{max(0, time.time() - when):.0f} s ago"


def _listing(ctx: Context, path: str, columns: list[str], as_json: bool) -> None:
    rows = ctx.call("GET", path)
    _emit_json(rows) if as_json else _table(rows, columns)


class Context:
    def __init__(self, home: Path) -> None:
        self.home = home

    @property
    def config(self) -> Config:
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
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
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
@click.option("--name", required=True)
@click.option("--version", "version", required=True)
@click.option("--description", default="")
@click.option("--tag", "tags", multiple=True)
@click.option("--license", "license_", default="")
@click.option("--access", type=click.Choice(["public", "restricted"]), default="public")
@click.option("--allow", multiple=True, help="Cluster ids allowed to fetch a restricted dataset.")
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
        },
    )
    if as_json:
        _emit_json(manifest)
    else:
        click.echo(
            f"published {manifest['name']}@{manifest['version']}: {len(manifest['files'])} files, "
            f"{_size(manifest['total_size'])}, format {manifest['format']}"
        )


@main.command()
@click.argument("query", default="")
@click.option("--format", "fmt", help="parquet, csv, tfrecord or files")
@click.option("--publisher", help="Cluster id of the publisher.")
@click.option("--tag")
@click.option("--min-size", type=int)
@click.option("--max-size", type=int)
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
    rows = [
        {**r, "size": _size(r["total_size"]), "dataset": f"{r['publisher']}/{r['name']}@{r['version']}"}
        for r in results
    ]
    _table(rows, ["dataset", "format", "size", "description"], title=f"{len(rows)} datasets")


@main.command()
@click.argument("ref")
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
@click.argument("ref")
@click.option("--tier", help="Storage tier: ssd, one_ssd, hot, warm, cold, memory (or a policy name).")
@click.option("--to", "to", help="Store root to land under, instead of the configured one.")
@click.option("--train", "train", help="A training job to start once the data has landed.")
@click.option("--files", "files", multiple=True, help="Only files matching this glob (repeatable).")
@click.option("--detach", is_flag=True, help="Return at once; follow with `p2pdata jobs show`.")
@click.option("--timeout", type=float, help="Stop waiting after this many seconds (the fetch goes on).")
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
    """Fetch NAME[@VERSION] (or CLUSTER/NAME@VERSION) from every peer that has it and land it."""
    job = ctx.call(
        "POST", "/v1/fetch",
        {"ref": ref, "tier": tier, "to": to, "train": train, "files": list(files), "verify": verify,
         "peers": list(peers)},
    )
    if not detach:
        try:
            job = asyncio.run(asyncio.wait_for(_follow_fetch(ctx, job, quiet=as_json), timeout))
        except TimeoutError:
            job = ctx.call("GET", f"/v1/jobs/{job['id']}")
    if as_json:
        _emit_json(job)
    elif job["state"] == "landed":
        click.echo(f"landed {job['ref']} at {job['uri']}")
    elif job["state"] in ("failed", "cancelled"):
        raise P2pdataError(f"fetch of {job['ref']} {job['state']}: {job.get('error') or ''}")
    else:
        click.echo(f"fetch job {job['id']} for {job['ref']}: {job['state']}")


_FINAL_STATES = ("landed", "failed", "cancelled")


async def _follow_fetch(ctx: Context, job: dict[str, Any], quiet: bool) -> dict[str, Any]:
    from p2pdata.web.client import ControlClient

    client = ControlClient(ctx.config)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task(job["ref"], total=job.get("total_bytes") or None)
        events = client.events()
        # Re-read the job after subscribing, so an event between the two cannot be missed.
        job = await client.call("GET", f"/v1/jobs/{job['id']}")
        while job["state"] not in _FINAL_STATES:
            event = await anext(events)
            if event.get("job") != job["id"]:
                continue
            if event["type"] == "fetch.progress":
                progress.update(
                    task,
                    completed=event["done_bytes"],
                    total=event["total_bytes"],
                    description=f"{job['ref']} ({event.get('peers', 0)} peers)",
                )
            elif event["type"] == "fetch.state":
                job = await client.call("GET", f"/v1/jobs/{job['id']}")
                progress.update(task, description=f"{job['ref']} [{job['state']}]")
        await events.aclose()
    return job


@main.command()
@click.option("--web", is_flag=True, help="Print a one-time login link for the status page.")
@json_option
@pass_context
def status(ctx: Context, web: bool, as_json: bool) -> None:
    """Show this cluster, its peers, transfers, landed datasets and training runs."""
    data = ctx.call("GET", "/v1/status")
    if web:
        link = ctx.call("POST", "/v1/login-link", {})
        click.echo(link["url"])
        return
    if as_json:
        _emit_json(data)
        return
    cluster = data["cluster"]
    for peer in data["peers"]:
        peer["last_seen"] = _ago(peer["last_seen"])
    click.echo(f"cluster {cluster['id']} ({cluster['name']}); store {cluster['store']} at {cluster['root']}")
    _table(data["peers"], ["url", "cluster_id", "state", "last_seen", "failures", "catalog_version", "error"],
           "peers")
    _table(data["jobs"], ["id", "ref", "state", "done_bytes", "total_bytes", "error"], "fetch jobs")
    _table(data["landed"], ["ref", "uri", "tier"], "landed datasets")
    _table(data["runs"], ["id", "job", "dataset", "state", "exit_code"], "training runs")
    sent = data.get("transfer") or {}
    _table([{**r, "sent": _size(r["sent"])} for r in sent.get("datasets", [])], ["dataset", "sent"],
           "seeding: sent per dataset")
    # A client name is whatever the remote's handshake said: never Rich markup.
    _table([{**r, "client": escape(r["client"]), "sent": _size(r["sent"])}
            for r in sent.get("peers", [])[:20]], ["address", "client", "sent"], "seeding: sent per peer")


@main.group(invoke_without_command=True)
@json_option
@click.pass_context
def peers(click_ctx: click.Context, as_json: bool) -> None:
    """List peers (and add or remove static ones)."""
    if click_ctx.invoked_subcommand is None:
        _listing(
            click_ctx.obj,
            "/v1/peers",
            ["url", "cluster_id", "source", "state", "last_seen", "error"],
            as_json,
        )


@peers.command("add")
@click.argument("url")
@pass_context
def peers_add(ctx: Context, url: str) -> None:
    click.echo(json.dumps(ctx.call("POST", "/v1/peers", {"url": url})))


@peers.command("remove")
@click.argument("url")
@pass_context
def peers_remove(ctx: Context, url: str) -> None:
    click.echo(json.dumps(ctx.call("POST", "/v1/peers/remove", {"url": url})))


@main.command()
@click.argument("name")
@click.argument("cluster")
@pass_context
def grant(ctx: Context, name: str, cluster: str) -> None:
    """Let CLUSTER fetch the restricted dataset NAME (every version)."""
    click.echo(json.dumps(ctx.call("POST", "/v1/grants", {"name": name, "cluster": cluster})))


@main.command()
@click.argument("name")
@click.argument("cluster")
@pass_context
def revoke(ctx: Context, name: str, cluster: str) -> None:
    """Stop CLUSTER's new access to NAME; copies it already fetched stay with it."""
    click.echo(json.dumps(ctx.call("POST", "/v1/grants/revoke", {"name": name, "cluster": cluster})))


@main.group()
def trust() -> None:
    """Which publishers' catalogs this cluster accepts."""


@trust.command("add")
@click.argument("cluster_or_key_file")
@click.option("--name", help="A label for this publisher.")
@pass_context
def trust_add(ctx: Context, cluster_or_key_file: str, name: str | None) -> None:
    """Trust a cluster id (pins its key fingerprint) or the key in PUBLIC_KEY_FILE."""
    path = Path(cluster_or_key_file)
    key = path.read_text().strip() if path.is_file() else cluster_or_key_file
    click.echo(json.dumps(ctx.call("POST", "/v1/trust", {"key": key, "name": name})))


@trust.command("list")
@json_option
@pass_context
def trust_list(ctx: Context, as_json: bool) -> None:
    rows = ctx.call("GET", "/v1/trust")
    _emit_json(rows) if as_json else _table(rows, ["cluster_id", "name", "added", "source"])


@trust.command("remove")
@click.argument("cluster_id")
@pass_context
def trust_remove(ctx: Context, cluster_id: str) -> None:
    click.echo(json.dumps(ctx.call("POST", "/v1/trust/remove", {"cluster_id": cluster_id})))


@main.group()
def catalog() -> None:
    """This cluster's signed catalog."""


@catalog.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
@pass_context
def catalog_export(ctx: Context, output: str | None) -> None:
    """Write this cluster's signed catalog."""
    from p2pdata.catalog import Identity, LocalCatalog
    from p2pdata.db import open_db

    config = ctx.config
    signed = LocalCatalog(open_db(config.database), Identity.load(ctx.home)).signed(
        now=int(time.time()), lifetime=config.cluster.catalog_lifetime
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
    """Fetch jobs (list, show, cancel) and training job specs (add) and run logs."""
    if click_ctx.invoked_subcommand is None:
        _listing(
            click_ctx.obj, "/v1/jobs", ["id", "ref", "state", "done_bytes", "total_bytes", "error"], as_json
        )


@jobs.command("show")
@click.argument("job_id")
@pass_context
def jobs_show(ctx: Context, job_id: str) -> None:
    _emit_json(ctx.call("GET", f"/v1/jobs/{job_id}"))


@jobs.command("cancel")
@click.argument("job_id")
@pass_context
def jobs_cancel(ctx: Context, job_id: str) -> None:
    _emit_json(ctx.call("POST", f"/v1/jobs/{job_id}/cancel", {}))


@jobs.command("add")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@pass_context
def jobs_add(ctx: Context, spec: str) -> None:
    """Add a training job spec (TOML)."""
    path = Path(spec)
    payload = {"spec": path.read_text(), "filename": path.name, "base_dir": str(path.absolute().parent)}
    _emit_json(ctx.call("POST", "/v1/training/jobs", payload))


@jobs.command("logs")
@click.argument("run_id")
@click.option("--follow", is_flag=True)
@pass_context
def jobs_logs(ctx: Context, run_id: str, follow: bool) -> None:
    """Print the logs of training run RUN_ID."""
    from p2pdata.training import follow_logs

    run = ctx.call("GET", f"/v1/runs/{run_id}")
    for line in follow_logs([Path(p) for p in run["logs"]], follow=follow):
        click.echo(line, nl=False)


@main.group(invoke_without_command=True)
@json_option
@click.pass_context
def runs(click_ctx: click.Context, as_json: bool) -> None:
    """Training runs."""
    if click_ctx.invoked_subcommand is None:
        _listing(click_ctx.obj, "/v1/runs", ["id", "job", "dataset", "state", "exit_code"], as_json)


@runs.command("cancel")
@click.argument("run_id")
@pass_context
def runs_cancel(ctx: Context, run_id: str) -> None:
    _emit_json(ctx.call("POST", f"/v1/runs/{run_id}/cancel", {}))
