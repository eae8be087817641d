"""The real local HDFS (Hadoop 2.7.3 in one JVM) for tests marked ``@pytest.mark.hdfs``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from p2pdata.hdfs.localcluster import LocalHdfs


@pytest.fixture(scope="session")
def hdfs_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHdfs]:
    """One running cluster per session (permissions on; the test user is superuser).

    Restartable in place (same directories and ports); always killed at the end.
    """
    cluster = LocalHdfs(tmp_path_factory.mktemp("hdfs"), permissions=True)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def hdfs_tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHdfs]:
    """A second cluster serving WebHDFS over TLS too (``ca_file`` trusts it).

    Its own, so that only the tests that need TLS pay for it.
    """
    cluster = LocalHdfs(tmp_path_factory.mktemp("hdfs-tls"), https=True)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
