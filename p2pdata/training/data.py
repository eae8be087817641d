"""Reading a landed dataset from inside a training script.

The daemon imports this module too, so TensorFlow is only imported inside `to_tf_dataset`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from p2pdata.catalog.publish import NOTES  # beside a table, they never make it a `files` dataset
from p2pdata.errors import TrainingError

if TYPE_CHECKING:
    import tensorflow as tf

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
HDFS_USER = "P2PDATA_HDFS_USER"


def filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it for a `file://` or `hdfs://` URI."""
    parts = urlsplit(uri)
    if (parts.scheme or "file") == "file":
        return pafs.LocalFileSystem(), unquote(parts.path)
    fs, path = fsspec_for(uri)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def fsspec_for(uri: str) -> tuple[Any, str]:
    """An fsspec filesystem and the path inside it for a `file://` or `hdfs://` URI.

    `hdfs://HOST:PORT/path` names the NameNode's RPC address, read over HDFS's own
    protocol (hdfs-native); `webhdfs://` and `swebhdfs://` (TLS) its HTTP address.
    """
    import fsspec  # only readers pay for it

    parts = urlsplit(uri)
    scheme = parts.scheme or "file"
    path = unquote(parts.path)
    if scheme == "file":
        return fsspec.filesystem("file"), path
    if scheme in ("hdfs", "webhdfs", "swebhdfs"):
        from p2pdata.hdfs.errors import HdfsError
        from p2pdata.hdfs.fs import fsspec_for as hdfs_fsspec  # only readers of HDFS pay for it

        try:
            return hdfs_fsspec(uri, os.environ.get(HDFS_USER))
        except HdfsError as exc:
            raise TrainingError(str(exc)) from exc
    raise TrainingError(f"{uri}: unsupported scheme {scheme!r} (use file:// or hdfs://)")


def open_dataset(uri: str, format: str | None = None) -> pads.Dataset:
    """A pyarrow dataset over the Parquet or CSV files of a landed dataset (file or directory).

    Without `format`, it is taken from the file suffixes, and data files of another kind
    (the images beside an image folder's `labels.csv`) are an error rather than silently
    left out: pass `format=` to read only the tables. Hidden files and names starting with
    `_` (`_SUCCESS`, `.incoming`) are skipped, as are notes such as README.md. Hive-style
    folders (`date=2024-03-01/`) become partition columns, as pandas reads them.
    """
    fs, path = filesystem_for(uri)
    files = list_files(uri)
    by_format: dict[str, list[str]] = {}
    for file in files:
        suffix = PurePosixPath(file).suffix.lower()
        kind = SUFFIXES.get(suffix) or ("notes" if suffix in NOTES else "other")
        by_format.setdefault(kind, []).append(file)
    tables = sorted(set(by_format) & set(SUFFIXES.values()))
    if format is None:
        if len(tables) != 1:
            found = ", ".join(tables) or "no Parquet or CSV files"
            raise TrainingError(f"{uri}: cannot tell the format ({found}); pass format=")
        if "other" in by_format:
            others = by_format["other"]
            raise TrainingError(
                f"{uri}: besides its {tables[0]} files it holds {len(others)} other data files "
                f"(such as {PurePosixPath(others[0]).name}): read it as files, or pass "
                f"format={tables[0]!r} to read only the {tables[0]} files"
            )
        format = tables[0]
    if format not in ("parquet", "csv"):
        raise TrainingError(f"{uri}: format {format!r} is not supported (parquet, csv)")
    if not by_format.get(format):
        raise TrainingError(f"{uri}: no {format} files")
    single = fs.get_file_info(path).type == pafs.FileType.File
    return pads.dataset(
        by_format[format], format=format, filesystem=fs,
        partitioning=None if single else "hive", partition_base_dir=None if single else path,
    )


def list_files(uri: str) -> list[str]:
    """Paths (inside the URI's filesystem) of the data files under a landed dataset, sorted.

    Hidden files and names starting with `_` are left out: they are markers, not data.
    """
    fs, path = filesystem_for(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise TrainingError(f"{uri}: no such file or directory")
    if info.type == pafs.FileType.File:
        return [path]
    selector = pafs.FileSelector(path, recursive=True)
    return sorted(
        entry.path for entry in fs.get_file_info(selector)
        if entry.type == pafs.FileType.File and not _hidden(entry.path, path)
    )


def _hidden(path: str, root: str) -> bool:
    relative = PurePosixPath(path).relative_to(root)
    return any(part.startswith((".", "_")) for part in relative.parts)


def to_numpy(
    dataset: pads.Dataset, label: str, features: list[str] | None = None, max_rows: int | None = None
) -> tuple[Any, Any]:
    """(features as a float32 matrix, labels) from a tabular dataset (its first `max_rows` rows)."""
    table = dataset.head(max_rows) if max_rows else dataset.to_table()
    return _arrays(table, label, features)


def _arrays(table: Any, label: str | None, features: list[str] | None) -> tuple[Any, Any]:
    import numpy as np

    if label is not None and label not in table.column_names:
        raise TrainingError(f"label column {label!r} not in {table.column_names}")
    names = features or [name for name in table.column_names if name != label]
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise TrainingError(f"feature columns {missing} not in {table.column_names}")
    x = np.stack([_floats(table, name) for name in names], axis=1)
    return x, None if label is None else table.column(label).to_numpy()


def _floats(table: Any, name: str) -> Any:
    column = table.column(name)
    try:
        return column.to_numpy().astype("float32")
    except (ValueError, TypeError) as exc:
        raise TrainingError(
            f"column {name!r} ({column.type}) is not numeric ({exc}): leave it out with "
            f"features=[...] or encode it first"
        ) from None


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


def to_pandas(dataset: pads.Dataset, columns: list[str] | None = None) -> Any:
    """The dataset as a pandas DataFrame (partition columns included); needs the `pandas` extra."""
    try:
        import pandas  # noqa: F401  (only to say what is missing)
    except ImportError:
        raise TrainingError("to_pandas needs pandas: pip install 'p2pdata[pandas]'") from None
    return dataset.to_table(columns=columns).to_pandas()


def iter_batches(
    dataset: pads.Dataset,
    label: str | None = None,
    *,
    features: list[str] | None = None,
    batch_size: int = 1024,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[tuple[Any, Any]]:
    """(float32 feature matrix, labels or None) batches, streamed file by file, never all in RAM.

    `shard=(index, count)` reads only every count-th file from the index-th: what each
    data-loader worker does so that together they read every row once.
    """
    index, count = shard
    fragments = list(dataset.get_fragments())[index::count]
    if not fragments:
        return
    names = dataset.schema.names
    if label is not None and label not in names:
        raise TrainingError(f"label column {label!r} not in {names}")
    columns = features or [name for name in names if name != label]
    wanted = columns + ([label] if label is not None else [])
    part = (
        pads.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
        if count > 1 else dataset
    )
    for batch in part.to_batches(columns=wanted, batch_size=batch_size):
        if batch.num_rows:
            yield _arrays(pa.Table.from_batches([batch]), label, columns)


def to_torch(
    dataset: pads.Dataset,
    label: str | None = None,
    *,
    features: list[str] | None = None,
    batch_size: int = 1024,
) -> Any:
    """A torch `IterableDataset` of (features, label) tensor batches (features alone without
    `label`); use it with `DataLoader(..., batch_size=None)`. Each DataLoader worker reads its
    own share of the files. Needs the `torch` extra."""
    try:
        import torch
        from torch.utils.data import IterableDataset, get_worker_info
    except ImportError:
        raise TrainingError("to_torch needs PyTorch: pip install 'p2pdata[torch]'") from None

    class Batches(IterableDataset):  # type: ignore[misc, type-arg]
        def __iter__(self) -> Iterator[Any]:
            worker = get_worker_info()
            shard = (worker.id, worker.num_workers) if worker else (0, 1)
            for x, y in iter_batches(dataset, label, features=features, batch_size=batch_size, shard=shard):
                yield (torch.from_numpy(x), torch.from_numpy(y)) if y is not None else torch.from_numpy(x)

    return Batches()
