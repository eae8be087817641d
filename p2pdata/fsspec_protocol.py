"""`p2pdata://` for fsspec: landed datasets by name, wherever they landed (local store or HDFS).

    pd.read_parquet("p2pdata://taxi-trips@2024.03")
    fsspec.open("p2pdata://lab-a/taxi-trips@2024.03/date=2024-03-01/part-0.parquet")

A path is `NAME[@VERSION][/PATH]` or `PUBLISHER/NAME@VERSION[/PATH]` (with a publisher,
the version is needed to tell where the dataset part ends); the dataset part is
resolved once per filesystem instance through the local daemon (`$P2PDATA_HOME`, or
`storage_options={"home": ...}`), then every call goes to the filesystem that holds the
landed copy. Read-only. Registered with fsspec through the `fsspec.specs` entry point.
"""

from __future__ import annotations

import os
from typing import Any

from fsspec.spec import AbstractFileSystem

from p2pdata.errors import NotFound
from p2pdata.loading import landed_uri
from p2pdata.training.data import fsspec_for


class P2pdataFileSystem(AbstractFileSystem):  # type: ignore[misc]
    protocol = "p2pdata"
    root_marker = ""

    def __init__(self, home: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.home = home
        self._landed: dict[str, tuple[Any, str]] = {}  # dataset part of a path -> (fs, root)

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        path = path.removeprefix("p2pdata://").removeprefix("p2pdata:")
        return path.strip("/")

    @staticmethod
    def split(path: str) -> tuple[str, str]:
        """('lab-a/taxi-trips@1', 'date=x/part-0.parquet') from a stripped path."""
        parts = path.split("/")
        # The dataset part ends at the first component naming a version; without one,
        # `NAME/…` (the newest version) unless the second component is `NAME@VERSION`.
        if "@" in parts[0] or len(parts) == 1:
            count = 1
        elif "@" in parts[1]:
            count = 2
        else:
            count = 1
        return "/".join(parts[:count]), "/".join(parts[count:])

    def _target(self, path: str) -> tuple[Any, str, str, str]:
        """(filesystem, path there, dataset part, root there) of a p2pdata path."""
        dataset, inner = self.split(self._strip_protocol(path))
        if not dataset:
            raise NotFound("a p2pdata:// URL names a dataset: p2pdata://[PUBLISHER/]NAME[@VERSION][/PATH]")
        if dataset not in self._landed:
            uri, _ = landed_uri(dataset, home=self.home)
            self._landed[dataset] = fsspec_for(uri)
        fs, root = self._landed[dataset]
        root = root.rstrip("/")
        return fs, f"{root}/{inner}" if inner else root, dataset, root

    def _back(self, entry: dict[str, Any], dataset: str, root: str) -> dict[str, Any]:
        name = entry["name"].rstrip("/")
        inner = name[len(root):].lstrip("/") if name.startswith(root) else name
        return {**entry, "name": f"{dataset}/{inner}" if inner else dataset}

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        fs, where, dataset, root = self._target(path)
        entries = [self._back(entry, dataset, root) for entry in fs.ls(where, detail=True)]
        return entries if detail else [entry["name"] for entry in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        fs, where, dataset, root = self._target(path)
        return self._back(fs.info(where), dataset, root)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" not in mode:
            raise PermissionError(f"p2pdata://{path}: landed datasets are read-only")
        fs, where, _, _ = self._target(path)
        return fs.open(where, mode, **kwargs)

    def invalidate_cache(self, path: str | None = None) -> None:
        self._landed.clear()  # a dataset may have landed (again) since
        super().invalidate_cache(path)
