"""fsspec filesystems for dataset URIs that name HDFS, for readers such as training.

``hdfs://NAMENODE:RPC_PORT/path`` reads over HDFS's own protocol (hdfs-native, no JVM);
``webhdfs://HOST:HTTP_PORT/path`` and ``swebhdfs://`` (TLS) over WebHDFS, for clusters
reachable only over HTTP(S).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

from p2pdata.hdfs.errors import HdfsError

SCHEMES = ("hdfs", "webhdfs", "swebhdfs")


def fsspec_for(uri: str, user: str | None = None) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for an HDFS URI; ``user`` for simple auth."""
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES:
        raise HdfsError(f"{uri}: not an HDFS URI (use one of {', '.join(SCHEMES)})")
    if not parts.hostname or not parts.port:
        raise HdfsError(f"{uri}: an HDFS URI needs HOST:PORT (the NameNode's RPC address "
                        "for hdfs://, its HTTP address for webhdfs://)")
    user = parts.username or user
    path = unquote(parts.path) or "/"
    if parts.scheme == "hdfs":
        from hdfs_native.fsspec import HdfsFileSystem

        # hdfs-native takes the simple-auth user from the environment when it connects.
        saved = os.environ.get("HADOOP_USER_NAME")
        if user:
            os.environ["HADOOP_USER_NAME"] = user
        try:
            return HdfsFileSystem(host=parts.hostname, port=parts.port, skip_instance_cache=True), path
        finally:
            if saved is None:
                os.environ.pop("HADOOP_USER_NAME", None)
            else:
                os.environ["HADOOP_USER_NAME"] = saved
    import fsspec

    return fsspec.filesystem("webhdfs", host=parts.hostname, port=parts.port, user=user,
                             use_https=parts.scheme == "swebhdfs"), path
