"""The data scientist's entry point: `p2pdata.load("taxi-trips@2024.03")` in a notebook.

It asks the local daemon (over its control API, like the CLI) where the dataset landed,
optionally fetches it first, and opens it with `p2pdata.training.open_dataset`. It works
inside a running event loop too (Jupyter), by calling the daemon from a thread of its own.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pyarrow.dataset as pads

from p2pdata.config import Config, load_config, resolve_home
from p2pdata.errors import NotFound, P2pdataError
from p2pdata.training.data import filesystem_for, list_files, open_dataset

T = TypeVar("T")
TABULAR = ("parquet", "csv")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion, whether or not this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coro).result()


class DaemonLink:
    """Calls to the local daemon's control API, synchronously."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        home_path = resolve_home(home)
        if not home_path.is_dir():
            raise NotFound(f"p2pdata home {home_path} does not exist (set P2PDATA_HOME or pass home=)")
        self.config: Config = load_config(home_path)

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None, **query: Any) -> Any:
        from p2pdata.web.client import ControlClient

        return _run(ControlClient(self.config).call(method, path, payload, **query))

    def info(self, ref: str) -> dict[str, Any]:
        return self.call("GET", "/v1/datasets/info", ref=ref)

    def fetch(self, ref: str, *, progress: bool = True, timeout: float | None = None) -> dict[str, Any]:
        """Fetch `ref` and wait until it has landed (or `timeout` seconds), with a progress bar
        on stderr. After a timeout the fetch goes on in the daemon (`p2pdata jobs`)."""
        job = self.call("POST", "/v1/fetch", {"ref": ref})
        try:
            job = _run(asyncio.wait_for(self._follow(job, progress), timeout))
        except TimeoutError:
            raise P2pdataError(
                f"{job['ref']} has not landed after {timeout:.0f} s; the fetch goes on: p2pdata jobs show {job['id']}"
            ) from None
        if job["state"] != "landed":
            raise P2pdataError(f"fetch of {job['ref']} {job['state']}: {job.get('error') or ''}")
        return job

    async def _follow(self, job: dict[str, Any], progress: bool) -> dict[str, Any]:
        from rich.console import Console

        from p2pdata.display import follow_fetch
        from p2pdata.web.client import ControlClient

        return await follow_fetch(ControlClient(self.config), job, console=Console(file=sys.stderr),
                                  quiet=not progress)

def landed_uri(ref: str, *, fetch: bool = False, home: str | os.PathLike[str] | None = None,
               progress: bool = True, timeout: float | None = None) -> tuple[str, dict[str, Any]]:
    """(URI of the landed copy, the dataset's info), fetching it first when `fetch`."""
    link = DaemonLink(home)
    info = link.info(ref)
    if not info["landed"]:
        exact = info["ref"]
        if not fetch:
            here = [f"{exact.rpartition('@')[0]}@{version}" for version in info.get("landed_versions", [])]
            also = f"; landed here: {', '.join(here)}" if here else ""
            raise NotFound(
                f"{exact} has not landed on this cluster: `p2pdata fetch {exact}`, or load(..., fetch=True)"
                f"{also}"
            )
        link.fetch(exact, progress=progress, timeout=timeout)
        info = link.info(exact)
    return info["landed"]["uri"], info


def load(ref: str, *, fetch: bool = False, home: str | os.PathLike[str] | None = None,
         format: str | None = None, progress: bool = True, timeout: float | None = None,
         ) -> pads.Dataset | list[str]:
    """Open a dataset that landed on this cluster: `NAME`, `NAME@VERSION` or `PUBLISHER/NAME@VERSION`.

    Parquet and CSV datasets come back as a `pyarrow.dataset.Dataset` (see `to_pandas`,
    `to_torch`, `to_tf_dataset`); `files` and `tfrecord` datasets as the list of their
    files' URIs. With `fetch=True` a dataset that has not landed is fetched first, with a
    progress bar, for at most `timeout` seconds. `home` is the daemon's home (default:
    $P2PDATA_HOME).
    """
    uri, info = landed_uri(ref, fetch=fetch, home=home, progress=progress, timeout=timeout)
    if format or info["format"] in TABULAR:
        return open_dataset(uri, format=format or info["format"])
    _, root = filesystem_for(uri)
    base = uri.rstrip("/")
    return [base + path[len(root.rstrip("/")):] for path in list_files(uri)]
