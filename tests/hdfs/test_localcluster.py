"""The local Hadoop 3 launcher: HDFS with three DataNodes, YARN with a GPU resource, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest
import requests

from p2pdata.hdfs.localcluster import HADOOP_VERSION, LocalHdfs

pytestmark = pytest.mark.hdfs


def _props(path: Path) -> dict[str, str]:
    root = ET.parse(path).getroot()
    return {p.findtext("name", ""): p.findtext("value", "") for p in root.iter("property")}


def test_hdfs_runs_hadoop_3_with_three_datanodes(hdfs_cluster: LocalHdfs) -> None:
    assert hdfs_cluster.version == HADOOP_VERSION
    nodes = requests.get(f"{hdfs_cluster.webhdfs_url}/jmx", timeout=30, params={
        "qry": "Hadoop:service=NameNode,name=FSNamesystemState"}).json()["beans"][0]
    assert nodes["NumLiveDataNodes"] == 3
    core = _props(hdfs_cluster.conf_dir / "core-site.xml")
    assert core["fs.defaultFS"] == hdfs_cluster.namenode_address


def test_yarn_schedules_gpus_and_writes_a_client_conf_dir(yarn_cluster: LocalHdfs) -> None:
    nodes = requests.get(f"{yarn_cluster.rm_web_url}/ws/v1/cluster/nodes",
                         timeout=30).json()["nodes"]["node"]
    assert [n["state"] for n in nodes] == ["RUNNING"]
    resources = {r["name"]: r["value"] for r in
                 nodes[0]["availableResource"]["resourceInformations"]["resourceInformation"]}
    assert resources["yarn.io/gpu"] == yarn_cluster.gpus
    # Pinned to loopback (the host name of 127.0.0.1), never the machine's name.
    assert nodes[0]["nodeHostName"] in ("127.0.0.1", "localhost")
    yarn = _props(yarn_cluster.conf_dir / "yarn-site.xml")
    assert yarn["yarn.resourcemanager.address"] == yarn_cluster.rm_address
    assert _props(yarn_cluster.conf_dir / "resource-types.xml")["yarn.resource-types"] \
        == "yarn.io/gpu"
    if yarn_cluster.services_api:
        version = requests.get(f"{yarn_cluster.rm_web_url}/app/v1/services/version", timeout=30)
        assert HADOOP_VERSION in version.json()["hadoop_version"]
    # Skein's way to the classpath: `yarn classpath --glob` from bin_dir.
    glob = subprocess.run([str(yarn_cluster.bin_dir / "yarn"), "classpath", "--glob"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert str(yarn_cluster.conf_dir) in glob.split(os.pathsep)
    assert any(p.endswith(f"hadoop-yarn-client-{HADOOP_VERSION}.jar") for p in glob.split(":"))
    nodes_cli = subprocess.run([str(yarn_cluster.bin_dir / "yarn"), "node", "-list"],
                               capture_output=True, text=True, check=True, timeout=120)
    assert "RUNNING" in nodes_cli.stdout
    # The NodeManager's own web services answer too (container logs are read there).
    node = requests.get(f"{yarn_cluster.nm_web_url}/ws/v1/node/info", timeout=30).json()
    assert node["nodeInfo"]["nodeHostName"] == nodes[0]["nodeHostName"]
    info = yarn_cluster.describe()
    assert info["rm_web_url"] == yarn_cluster.rm_web_url
    assert str(yarn_cluster.conf_dir) in info["classpath"].split(os.pathsep)


def test_run_prints_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2pdata.hdfs.localcluster", "run", "--json",
         "--dir", str(tmp_path / "hadoop")],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["hadoop_version"] == HADOOP_VERSION
        assert info["namenode"].startswith("hdfs://127.0.0.1:")
        assert "rm_web_url" not in info
        status = requests.get(f"{info['webhdfs_url']}/webhdfs/v1/", timeout=30,
                              params={"op": "GETFILESTATUS"})
        assert status.json()["FileStatus"]["type"] == "DIRECTORY"
        jvms = [psutil.Process(pid) for pid in info["pids"]]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 30
        while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in jvms):
            assert time.monotonic() < deadline, "the JVMs outlived the launcher"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
