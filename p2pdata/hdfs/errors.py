"""Typed errors of the HDFS room. All are StoreErrors, so callers can catch one type."""

from __future__ import annotations

from p2pdata.errors import StoreError


class HdfsError(StoreError):
    """Talking to HDFS failed."""


class HdfsConnectionError(HdfsError):
    """WebHDFS could not be reached (after retries, where the operation allows them)."""


class HdfsTlsError(HdfsConnectionError):
    """No TLS session with WebHDFS, e.g. its certificate is not trusted. Never retried."""


class HdfsRemoteError(HdfsError):
    """WebHDFS answered with a RemoteException; carries the server's class name and message."""

    def __init__(self, exception: str, message: str, status: int, java_class: str = "") -> None:
        super().__init__(f"{exception}: {message}" if message else exception)
        self.exception = exception
        self.remote_message = message
        self.status = status
        self.java_class = java_class


class HdfsFileNotFound(HdfsRemoteError):
    pass


class HdfsPermissionDenied(HdfsRemoteError):
    pass


class HdfsAlreadyExists(HdfsRemoteError):
    pass


class HdfsUnsupportedOperation(HdfsRemoteError):
    """This WebHDFS has no such operation (e.g. SETSTORAGEPOLICY before Hadoop 2.9)."""


class HdfsClusterError(HdfsError):
    """The local test HDFS could not be fetched or started."""


class TierError(StoreError):
    """An unknown tier or storage policy name."""
