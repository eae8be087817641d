"""Fixtures for the training room: a launcher on a temporary database, specs, manifests."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
import pytest

from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.db import open_db
from p2pdata.training import JobSpec, Launcher, RunRecord

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def make_manifest(name: str = "toy", version: str = "1", *, owner: str = "cluster-a",
                  tags: tuple[str, ...] = (), fmt: str = "parquet") -> Manifest:
    return Manifest(name=name, version=version, owner=owner, created=1_700_000_000,
                    format=fmt, files=(FileEntry("part-00000.parquet", 10, b"\x01" * 32),),
                    tags=tags)


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toy_on_hdfs(webhdfs_url: str, directory: Path, remote: str) -> Any:
    """The example's toy dataset (2,000 rows) made in ``directory`` and put under ``remote``
    in HDFS as the user running the JVM (the superuser: permissions are on). Answers the
    fsspec filesystem, to clean up with."""
    import getpass
    from urllib.parse import urlsplit

    import fsspec

    address = urlsplit(webhdfs_url)
    fs = fsspec.filesystem("webhdfs", host=address.hostname, port=address.port,
                           user=getpass.getuser())
    paths = load_example("make_dataset").make_classification(directory, rows=2000)
    fs.makedirs(remote, exist_ok=True)
    for path in paths:
        fs.put_file(str(path), f"{remote}/{path.name}")
    return fs


def write_script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return path


def make_spec(script: Path, **fields: object) -> JobSpec:
    data: dict[str, object] = {"name": "job", "entry": {"script": str(script)},
                               "env": {"PYTHONPATH": str(REPO)}}
    data.update(fields)
    return JobSpec.from_dict(data)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


async def async_wait_until(condition: Callable[[], bool], timeout: float = 10.0,
                           what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)


@pytest.fixture
def events() -> list[RunRecord]:
    return []


@contextlib.asynccontextmanager
async def started_launcher(tmp_path: Path, **options: Any) -> AsyncIterator[Launcher]:
    """A launcher on a fresh state database under `tmp_path`, started; closed after."""
    db = open_db(tmp_path / "state.db")
    launcher = Launcher(db, tmp_path / "runs", **options)
    await launcher.start()
    try:
        yield launcher
    finally:
        await launcher.close()
        db.close()


@pytest.fixture
async def launcher(tmp_path: Path, events: list[RunRecord]) -> AsyncIterator[Launcher]:
    async with started_launcher(tmp_path, max_concurrent=2, poll_interval=0.05, kill_grace=2.0,
                                on_state_change=lambda run: events.append(replace(run))) as launcher:
        yield launcher
