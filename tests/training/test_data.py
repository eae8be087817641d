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
from p2pdata.training import open_dataset, to_numpy
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
