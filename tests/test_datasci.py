"""The data scientist's side against real daemons: info and ls before a fetch, publisher
names in references, p2pdata.load, the p2pdata:// fsspec protocol, unpublish and sync."""

from __future__ import annotations

import asyncio
import configparser
import getpass
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

import p2pdata
from p2pdata.devcluster import wait_for
from p2pdata.errors import NotFound
from p2pdata.fsspec_protocol import P2pdataFileSystem
from tests.test_cli import run

REPO = Path(__file__).resolve().parent.parent

READER = """
import os, pathlib, time
import p2pdata
print("rows", p2pdata.open_dataset(os.environ["P2PDATA_DATASET_URI"]).count_rows(), flush=True)
release = pathlib.Path(os.environ["RELEASE"])
while not release.exists():
    time.sleep(0.05)
print("done", flush=True)
"""
SPEC = """
name = "{name}"
[trigger]
dataset = "taxi-*"
[entry]
script = "{script}"
[env]
RELEASE = "{release}"
"""


def _taxi_trips(root: Path) -> pd.DataFrame:
    """Hive-partitioned Parquet (`date=…/` folders), as Spark writes it."""
    table = pa.table({
        "fare": [5.5, 12.0, 7.25, 30.0],
        "tip": [1.0, 2.5, 0.0, 6.0],
        "vendor": ["VTS", "CMT", "VTS", "CMT"],
        "date": ["2024-03-01", "2024-03-01", "2024-03-02", "2024-03-02"],
    })
    pq.write_to_dataset(table, root, partition_cols=["date"])
    (root / "_SUCCESS").write_text("")
    return pd.read_parquet(root)


@pytest.fixture
def fsspec_p2pdata() -> Any:
    # The `fsspec.specs` entry point registers the protocol once p2pdata is pip-installed
    # from this tree; test_fsspec_entry_point checks the declaration itself.
    fsspec.register_implementation("p2pdata", P2pdataFileSystem, clobber=True)
    yield
    P2pdataFileSystem.clear_instance_cache()


def _declared_fsspec_spec() -> str:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return config["options.entry_points"]["fsspec.specs"].strip()


def test_fsspec_entry_point_declares_the_filesystem() -> None:
    name, _, target = (part.strip() for part in _declared_fsspec_spec().partition("="))
    module, _, attribute = target.partition(":")
    assert name == "p2pdata"
    assert getattr(importlib.import_module(module), attribute) is P2pdataFileSystem


def _installed_entry_point(where: Path) -> dict[str, str]:
    """An environment whose Python sees setup.cfg's `fsspec.specs` entry point as pip would
    install it (a dist-info on the path), so fsspec registers `p2pdata://` by itself."""
    dist = where / "p2pdata_fsspec_check-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: p2pdata-fsspec-check\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[fsspec.specs]\n{_declared_fsspec_spec()}\n")
    path = os.pathsep.join(filter(None, [str(where), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def test_a_landed_dataset_from_name_to_dataframe(make_daemon: Any, tmp_path: Path, fsspec_p2pdata: Any) -> None:
    expected = _taxi_trips(tmp_path / "trips")
    lab = make_daemon("lab-a")
    lab.cli("publish", str(tmp_path / "trips"), "--name", "taxi-trips", "--version", "2024.03",
            "--license", "CC-BY-4.0", "--tag", "nyc")
    me = make_daemon("me", discovery={"static_peers": [lab.peer_url]})
    me.cli("trust", "add", lab.cluster_id)
    wait_for(lambda: me.cli_json("search", "taxi"), what="the publisher's catalog")
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "reader.py").write_text(READER)
    release = tmp_path / "release"
    (jobs / "reader.toml").write_text(SPEC.format(name="reader", script="reader.py", release=release))
    (jobs / "typo.toml").write_text(SPEC.format(name="typo", script="raeder.py", release=release))
    me.cli("jobs", "add", str(jobs / "reader.toml"))
    assert "raeder.py does not exist" in me.cli("jobs", "add", str(jobs / "typo.toml"), ok=False)
    assert [spec["name"] for spec in me.cli_json("jobs", "specs")] == ["reader"]

    # Before any fetch: info and ls from the catalog, the publisher's name accepted in refs.
    info = me.cli_json("info", "lab-a/taxi-trips@2024.03")
    assert info["publisher"] == lab.cluster_id and info["publisher_name"] == "lab-a"
    assert info["landed"] is None and info["versions"] == ["2024.03"] and info["rows"] == 4
    assert info["license"] == "CC-BY-4.0" and {"fare", "tip", "vendor"} <= {c["name"] for c in info["schema"]}
    shown = me.cli("info", "taxi-trips")
    assert "lab-a" in shown and "not landed here" in shown and "fare" in shown and "4 rows" in shown
    files = me.cli_json("ls", "taxi-trips@2024.03")
    assert len(files) == 3 and "_SUCCESS" in {f["path"] for f in files}
    part = next(f["path"] for f in files if f["path"].startswith("date=2024-03-02/"))
    assert part in me.cli("ls", "taxi-trips@2024.03").replace("\n│", "")
    assert [r["name"] for r in me.cli_json("search", "--publisher", "lab-a")] == ["taxi-trips"]
    assert "no publisher named" in me.cli("search", "--publisher", "lab-b", ok=False)
    assert "lab-a" in " ".join(me.cli("search", "taxi").split())
    with pytest.raises(NotFound, match="p2pdata fetch"):
        p2pdata.load("taxi-trips@2024.03", home=me.home)

    trips = p2pdata.load("lab-a/taxi-trips@2024.03", fetch=True, home=me.home, progress=False, timeout=120)
    frame = p2pdata.to_pandas(trips)
    assert sorted(frame.columns) == sorted(expected.columns)  # the date= partition column too
    assert sorted(frame["fare"]) == sorted(expected["fare"]) and len(frame) == 4
    assert me.cli_json("info", "taxi-trips")["landed"]["uri"].startswith("file://")
    for command in ("status", "jobs"):  # refs under the publisher's name, in jobs and landed
        assert "lab-a/taxi-trips@2024.03" in me.cli(command).replace("│\n│", "")

    # The landing started the reader; `jobs logs --follow` ends when the run does.
    run = wait_for(lambda: next(iter(me.cli_json("runs")), None), what="the triggered run")
    log = Path(run["logs"][0])
    wait_for(lambda: log.exists() and "rows 4" in log.read_text(), what="the reader to read")
    follower = subprocess.Popen(
        [sys.executable, "-m", "p2pdata", "--home", str(me.home), "jobs", "logs", run["id"], "--follow"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        release.touch()
        out, _ = follower.communicate(timeout=60)
    finally:
        follower.kill()
    assert "rows 4" in out and "done" in out and follower.returncode == 0
    me.cli("jobs", "remove", "reader")
    assert me.cli_json("jobs", "specs") == []

    # A partial fetch counts only the files it selects; `jobs show` counts what landed.
    full = me.cli_json("jobs")[0]
    assert full["landed_files"] == 3 and full["total_bytes"] == full["done_bytes"] == info["total_size"]
    other = make_daemon("other", discovery={"static_peers": [lab.peer_url]})
    other.cli("trust", "add", lab.cluster_id)
    wait_for(lambda: other.cli_json("search", "taxi"), what="the publisher's catalog")
    job = other.cli_json("fetch", "taxi-trips@2024.03", "--files", "date=2024-03-01/*", "--detach")
    selected = [f for f in files if f["path"].startswith("date=2024-03-01/")]
    assert job["total_bytes"] == sum(f["size"] for f in selected) < info["total_size"]
    job = wait_for(lambda: (j := json.loads(other.cli("jobs", "show", job["id"], "--json")))["state"] == "landed" and j,
                   what="the partial fetch")
    assert job["landed_files"] == len(selected) == 1 and job["done_bytes"] == job["total_bytes"]
    assert other.cli_json("info", "taxi-trips@2024.03")["landed"]["files"] == 1
    assert "1 of 3 files" in other.cli("info", "taxi-trips@2024.03")

    options = {"home": str(me.home)}
    via_url = pd.read_parquet("p2pdata://taxi-trips@2024.03", storage_options=options)
    assert sorted(via_url.columns) == sorted(expected.columns) and len(via_url) == 4
    fs = fsspec.filesystem("p2pdata", **options)
    assert "lab-a/taxi-trips@2024.03/date=2024-03-01" in fs.ls("lab-a/taxi-trips@2024.03", detail=False)
    with fsspec.open(f"p2pdata://lab-a/taxi-trips@2024.03/{part}", "rb", **options) as handle:
        assert sorted(pq.read_table(handle)["fare"].to_pylist()) == [7.25, 30.0]

    # The notebook-style example reads it with pandas (and torch where installed).
    example = subprocess.run(
        [sys.executable, str(REPO / "examples" / "read_landed.py"), "lab-a/taxi-trips@2024.03",
         "--label", "tip", "--features", "fare"],
        capture_output=True, text=True, timeout=120,
        # Faulthandler names the threads if it aborts at exit, as it once did in CI (pyarrow's
        # threads in Python 3.11's finalization: apache/arrow#34314).
        env={**_installed_entry_point(tmp_path / "site"), "P2PDATA_HOME": str(me.home),
             "PYTHONFAULTHANDLER": "1"},
    )
    assert example.returncode == 0, example.stderr
    assert "4 rows in 2 files" in example.stdout and "fare" in example.stdout

    # An image folder: a mix of formats is refused unless published as files; load lists them.
    pics = tmp_path / "pics"
    (pics / "train").mkdir(parents=True)
    for i in range(3):
        (pics / "train" / f"{i}.jpg").write_bytes(bytes([i]) * 100)
    (pics / "labels.csv").write_text("file,label\n0.jpg,1\n1.jpg,0\n2.jpg,1\n")
    assert "--format files" in lab.cli("publish", str(pics), "--name", "pics", "--version", "1", ok=False)
    lab.cli("publish", str(pics), "--name", "pics", "--version", "1", "--format", "files")
    me.cli("sync")
    uris = p2pdata.load("pics@1", fetch=True, home=me.home, progress=False, timeout=120)
    assert sorted(uri.rsplit("/", 2)[-2] + "/" + uri.rsplit("/", 1)[-1] for uri in uris) == [
        "1/labels.csv", "train/0.jpg", "train/1.jpg", "train/2.jpg"]
    assert all(Path(uri.removeprefix("file://")).is_file() for uri in uris)
    assert p2pdata.load("pics@1", home=me.home, format="csv").count_rows() == 3

    # A newer version appears: loading the bare name says which version is here.
    lab.cli("publish", str(tmp_path / "trips"), "--name", "taxi-trips", "--version", "2024.04")
    me.cli("sync")
    with pytest.raises(NotFound, match=r"taxi-trips@2024\.04 has not landed on this cluster.*"
                                       r"; landed here: lab-a/taxi-trips@2024\.03$"):
        p2pdata.load("taxi-trips", home=me.home)
    lab.cli("unpublish", "taxi-trips@2024.04")

    # Unpublished at the source: a new signed catalog; `sync` brings it here at once.
    def seeded() -> list[str]:
        return requests.get(f"{lab.peer_url}/v1/have", timeout=10).json()["datasets"]

    assert info["id"] in seeded()
    lab.cli("unpublish", "taxi-trips@2024.03")
    assert lab.cli_json("search", "taxi") == [] and info["id"] not in seeded()
    me.cli("sync")
    assert me.cli_json("search", "taxi") == []
    assert "NAME@VERSION" in lab.cli("unpublish", "taxi-trips", ok=False)


def test_load_says_what_to_do_without_a_home(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        p2pdata.load("x@1", home=tmp_path / "nowhere")
    code, output = run(tmp_path / "nowhere", "info", "x")
    assert code == 1 and "does not exist" in output


@pytest.mark.parametrize(("path", "dataset", "inner"), [
    ("taxi-trips@2024.03", "taxi-trips@2024.03", ""),
    ("taxi-trips@2024.03/date=2024-03-01/part-0.parquet", "taxi-trips@2024.03", "date=2024-03-01/part-0.parquet"),
    ("lab-a/taxi-trips@2024.03/date=2024-03-01", "lab-a/taxi-trips@2024.03", "date=2024-03-01"),
    ("taxi-trips", "taxi-trips", ""),
    ("taxi-trips/part-0.parquet", "taxi-trips", "part-0.parquet"),
])
def test_a_p2pdata_path_splits_into_dataset_and_path(path: str, dataset: str, inner: str) -> None:
    assert P2pdataFileSystem.split(P2pdataFileSystem._strip_protocol(f"p2pdata://{path}/")) == (dataset, inner)


async def test_load_works_from_a_notebook_whose_event_loop_is_running() -> None:
    from p2pdata.loading import _run

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert asyncio.get_running_loop() and _run(answer()) == 42  # asyncio.run here would refuse


@pytest.mark.hdfs
def test_a_dataset_landed_in_hdfs_reads_through_load_and_the_url(
    make_daemon: Any, hdfs_cluster: Any, tmp_path: Path, fsspec_p2pdata: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _taxi_trips(tmp_path / "trips")
    lab = make_daemon("lab-h")
    lab.cli("publish", str(tmp_path / "trips"), "--name", "taxi-trips", "--version", "2024.03")
    user = getpass.getuser()
    me = make_daemon("me-h", discovery={"static_peers": [lab.peer_url]},
                     store={"kind": "hdfs", "webhdfs_url": hdfs_cluster.webhdfs_url,
                            "root": f"/p2pdata-{tmp_path.name}", "user": user,
                            "storagepolicy_command": hdfs_cluster.storagepolicy_command})
    me.cli("trust", "add", lab.cluster_id)
    wait_for(lambda: me.cli_json("search", "taxi"), what="the publisher's catalog")
    monkeypatch.setenv("P2PDATA_HDFS_USER", user)

    trips = p2pdata.load("lab-h/taxi-trips@2024.03", fetch=True, home=me.home, progress=False, timeout=120)
    assert not me.cli_json("info", "taxi-trips")["landed"]["uri"].startswith("file:")
    assert sorted(p2pdata.to_pandas(trips)["fare"]) == sorted(expected["fare"])
    frame = pd.read_parquet("p2pdata://taxi-trips@2024.03", storage_options={"home": str(me.home)})
    assert sorted(frame.columns) == sorted(expected.columns) and len(frame) == 4
