"""The real local Hadoop 3 (HDFS; YARN on request) for tests marked ``@pytest.mark.hdfs``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from p2pdata.hdfs.localcluster import LocalHdfs


@pytest.fixture(scope="session")
def hdfs_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHdfs]:
    """One running cluster per session: a NameNode and three DataNodes with four storage
    tiers each, XOR-2-1 erasure coding enabled, a cache pool and the storage policy
    satisfier (permissions on; the test user is superuser).

    Restartable in place (same directories and ports); always killed at the end.
    """
    cluster = LocalHdfs(tmp_path_factory.mktemp("hdfs"), permissions=True)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def hdfs_tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHdfs]:
    """A second, small cluster serving WebHDFS over TLS too (``ca_file`` trusts it).

    Its own, so that only the tests that need it pay for it. One DataNode with DISK and
    ARCHIVE only, no cache pool and no satisfier: the cluster tiers cannot be had on.
    """
    cluster = LocalHdfs(tmp_path_factory.mktemp("hdfs-tls"), https=True, datanodes=1,
                        sps=False, cache_pool="", tiers=("disk", "archive"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def yarn_cluster(hdfs_cluster: LocalHdfs) -> LocalHdfs:
    """The session's cluster with YARN started too (ResourceManager and NodeManager with
    two ``yarn.io/gpu``); ``conf_dir`` is a HADOOP_CONF_DIR for clients such as Skein."""
    if not hdfs_cluster.yarn_running:
        hdfs_cluster.start_yarn()
    return hdfs_cluster
