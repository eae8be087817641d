"""Reading a landed dataset from inside a training script.

The daemon imports this module too, so TensorFlow is only imported inside `to_tf_dataset`.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pyarrow.dataset as pads
import pyarrow.fs as pafs

from p2pdata.errors import TrainingError

if TYPE_CHECKING:
    import tensorflow as tf

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
HDFS_USER = "P2PDATA_HDFS_USER"


def filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it for a `file://` or `hdfs://` URI.

    `hdfs://HOST:PORT/path` names the NameNode's RPC address, read over HDFS's own
    protocol (hdfs-native); `webhdfs://` and `swebhdfs://` (TLS) its HTTP address.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme or "file"
    path = unquote(parts.path)
    if scheme == "file":
        return pafs.LocalFileSystem(), path
    if scheme in ("hdfs", "webhdfs", "swebhdfs"):
        from p2pdata.hdfs.errors import HdfsError
        from p2pdata.hdfs.fs import fsspec_for  # only workers reading HDFS pay for it

        try:
            fs, path = fsspec_for(uri, os.environ.get(HDFS_USER))
        except HdfsError as exc:
            raise TrainingError(str(exc)) from exc
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
    raise TrainingError(f"{uri}: unsupported scheme {scheme!r} (use file:// or hdfs://)")


def open_dataset(uri: str, format: str | None = None) -> pads.Dataset:
    """A pyarrow dataset over the Parquet or CSV files of a landed dataset (file or directory).

    Without `format`, it is taken from the file suffixes. Hidden files and names starting
    with `_` (`_SUCCESS`, `.incoming`) are skipped, as are files of other formats.
    """
    fs, path = filesystem_for(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise TrainingError(f"{uri}: no such file or directory")
    if info.type == pafs.FileType.File:
        files = [path]
    else:
        selector = pafs.FileSelector(path, recursive=True)
        files = sorted(
            entry.path for entry in fs.get_file_info(selector)
            if entry.type == pafs.FileType.File and not _hidden(entry.path, path)
        )
    by_format: dict[str, list[str]] = {}
    for file in files:
        kind = SUFFIXES.get(PurePosixPath(file).suffix.lower())
        if kind:
            by_format.setdefault(kind, []).append(file)
    if format is None:
        if len(by_format) != 1:
            found = ", ".join(sorted(by_format)) or "no Parquet or CSV files"
            raise TrainingError(f"{uri}: cannot tell the format ({found}); pass format=")
        format = next(iter(by_format))
    if format not in ("parquet", "csv"):
        raise TrainingError(f"{uri}: format {format!r} is not supported (parquet, csv)")
    if not by_format.get(format):
        raise TrainingError(f"{uri}: no {format} files")
    return pads.dataset(by_format[format], format=format, filesystem=fs)


def _hidden(path: str, root: str) -> bool:
    relative = PurePosixPath(path).relative_to(root)
    return any(part.startswith((".", "_")) for part in relative.parts)


def to_numpy(
    dataset: pads.Dataset, label: str, features: list[str] | None = None, max_rows: int | None = None
) -> tuple[Any, Any]:
    """(features as a float32 matrix, labels) from a tabular dataset (its first `max_rows` rows)."""
    import numpy as np

    table = dataset.head(max_rows) if max_rows else dataset.to_table()
    if label not in table.column_names:
        raise TrainingError(f"label column {label!r} not in {table.column_names}")
    names = features or [name for name in table.column_names if name != label]
    x = np.stack([table.column(name).to_numpy().astype("float32") for name in names], axis=1)
    return x, table.column(label).to_numpy()


def to_tf_dataset(
    dataset: pads.Dataset,
    label: str,
    *,
    features: list[str] | None = None,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | None = None,
) -> tf.data.Dataset:
    """A batched `tf.data.Dataset` of (features matrix, label) from a tabular dataset.

    The whole table is read into memory: meant for datasets that fit in a worker's RAM.
    """
    import tensorflow as tf

    x, y = to_numpy(dataset, label, features)
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)
