"""open_dataset on local files, and the daemon-side promise not to import TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from p2pdata.errors import TrainingError
from p2pdata.training import iter_batches, open_dataset, to_numpy, to_pandas, to_torch
from p2pdata.training.data import filesystem_for
from tests.training.conftest import REPO, load_example


def test_importing_training_does_not_import_tensorflow() -> None:
    code = ("import sys, p2pdata.training, p2pdata.training.launcher; "
            "sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_open_parquet_directory_skips_hidden_and_other_files(tmp_path: Path) -> None:
    paths = load_example("make_dataset").make_classification(tmp_path / "ds", rows=100)
    assert len(paths) == 2
    (tmp_path / "ds" / "_SUCCESS").write_text("")
    (tmp_path / "ds" / "README.md").write_text("about")
    (tmp_path / "ds" / ".incoming").mkdir()
    pq.write_table(pa.table({"f0": [1.0]}), tmp_path / "ds" / ".incoming" / "x.parquet")
    dataset = open_dataset(f"file://{tmp_path / 'ds'}")
    assert dataset.count_rows() == 100
    x, y = to_numpy(dataset, "label")
    assert x.shape == (100, 4) and x.dtype == "float32" and set(y) <= {0, 1}


def test_open_csv_file_and_directory(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    pacsv.write_csv(pa.table({"a": [1, 2, 3], "label": [0, 1, 0]}), tmp_path / "csv" / "d.csv")
    assert open_dataset(f"file://{tmp_path / 'csv'}").count_rows() == 3
    assert open_dataset(f"file://{tmp_path / 'csv' / 'd.csv'}").to_table().num_columns == 2


def test_open_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no such file"):
        open_dataset(f"file://{tmp_path / 'missing'}")
    (tmp_path / "mixed").mkdir()
    pq.write_table(pa.table({"a": [1]}), tmp_path / "mixed" / "a.parquet")
    pacsv.write_csv(pa.table({"a": [1]}), tmp_path / "mixed" / "b.csv")
    with pytest.raises(TrainingError, match="cannot tell the format"):
        open_dataset(f"file://{tmp_path / 'mixed'}")
    assert open_dataset(f"file://{tmp_path / 'mixed'}", format="csv").count_rows() == 1
    with pytest.raises(TrainingError, match="unsupported scheme"):
        open_dataset("s3://bucket/x")
    with pytest.raises(TrainingError, match="HOST:PORT"):
        open_dataset("hdfs:///root/x")
    with pytest.raises(TrainingError, match="label column"):
        to_numpy(open_dataset(f"file://{tmp_path / 'mixed'}", format="csv"), "label")


def test_webhdfs_uri_uses_webhdfs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2PDATA_HDFS_USER", "alice")
    fs, path = filesystem_for("webhdfs://namenode.example:9870/datasets/toy/1")
    assert path == "/datasets/toy/1"
    handler = fs.handler.fs  # the fsspec filesystem behind pyarrow's wrapper
    assert handler.url == "http://namenode.example:9870/webhdfs/v1"
    assert handler.pars.get("user.name") == "alice"


def test_hive_partition_columns_are_kept_as_pandas_keeps_them(tmp_path: Path) -> None:
    import pandas as pd

    table = pa.table({"fare": [1.5, 2.5, 3.5], "vendor": [1, 2, 1], "date": ["2024-03-01", "2024-03-01", "2024-03-02"]})
    pq.write_to_dataset(table, tmp_path / "trips", partition_cols=["date"])
    dataset = open_dataset(f"file://{tmp_path / 'trips'}")
    assert sorted(dataset.schema.names) == sorted(pd.read_parquet(tmp_path / "trips").columns)
    assert sorted(to_pandas(dataset)["date"]) == ["2024-03-01", "2024-03-01", "2024-03-02"]


def test_an_image_folder_is_not_silently_read_as_its_labels_csv(tmp_path: Path) -> None:
    (tmp_path / "images" / "train").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "images" / "train" / f"{i}.jpg").write_bytes(b"\xff\xd8 not really")
    pacsv.write_csv(pa.table({"file": ["0.jpg"], "label": [1]}), tmp_path / "images" / "labels.csv")
    with pytest.raises(TrainingError, match=r"3 other data files \(such as 0.jpg\).*format='csv'"):
        open_dataset(f"file://{tmp_path / 'images'}")
    assert open_dataset(f"file://{tmp_path / 'images'}", format="csv").count_rows() == 1


def test_to_numpy_names_the_column_it_cannot_convert(tmp_path: Path) -> None:
    pq.write_table(pa.table({"vendor": ["VTS", "CMT"], "fare": [1.0, 2.0], "tip": [0, 1]}), tmp_path / "t.parquet")
    dataset = open_dataset(f"file://{tmp_path / 't.parquet'}")
    with pytest.raises(TrainingError, match=r"column 'vendor' \(string\) is not numeric.*'VTS'"):
        to_numpy(dataset, "tip")
    x, y = to_numpy(dataset, "tip", features=["fare"])
    assert x.tolist() == [[1.0], [2.0]] and y.tolist() == [0, 1]
    with pytest.raises(TrainingError, match="feature columns"):
        to_numpy(dataset, "tip", features=["nope"])


def test_batches_stream_and_shards_read_every_row_once(tmp_path: Path) -> None:
    for part in range(3):
        pq.write_table(pa.table({"x": [float(part * 10 + i) for i in range(5)], "y": [part] * 5}),
                       tmp_path / f"part-{part}.parquet")
    dataset = open_dataset(f"file://{tmp_path}")
    seen = [
        value
        for shard in range(2)
        for x, y in iter_batches(dataset, "y", batch_size=2, shard=(shard, 2))
        for value in x[:, 0].tolist()
    ]
    assert sorted(seen) == sorted(float(p * 10 + i) for p in range(3) for i in range(5))
    batches = list(iter_batches(dataset, batch_size=4))
    assert all(y is None and x.shape[1] == 2 and len(x) <= 4 for x, y in batches)


def test_to_torch_gives_tensor_batches_across_loader_workers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")  # the `torch` extra: not installed in CI (see README)
    for part in range(2):
        pq.write_table(pa.table({"x": [1.0, 2.0], "y": [part, part]}), tmp_path / f"p{part}.parquet")
    loader = torch.utils.data.DataLoader(
        to_torch(open_dataset(f"file://{tmp_path}"), "y"), batch_size=None, num_workers=2
    )
    labels = sorted(int(v) for _, y in loader for v in y)
    assert labels == [0, 0, 1, 1]
