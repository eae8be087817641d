"""Publishing a real directory: files, sizes, hashes, format, Arrow schema, and rejections."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from p2pdata.catalog import Access, Column, detect_format, scan_dataset
from p2pdata.errors import PublishError
from tests.catalog.conftest import NOW


def scan(directory: Path, **kw):
    kw.setdefault("name", "demo")
    kw.setdefault("version", "1.0")
    return scan_dataset(directory, owner="owner", now=NOW, **kw)


def sha(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def test_parquet_dataset(tmp_path: Path) -> None:
    table = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "label": ["a", "b", "c"],
                      "score": pa.array([0.5, 1.5, 2.5], pa.float32())})
    (tmp_path / "part").mkdir()
    pq.write_table(table, tmp_path / "part" / "b.parquet")
    pq.write_table(table.slice(0, 1), tmp_path / "a.parquet")
    (tmp_path / "_SUCCESS").write_bytes(b"")
    m = scan(tmp_path, description="d", tags=["vision", "ml"], license="MIT",
             access=Access("restricted", ("peer",)))
    assert [f.path for f in m.files] == ["_SUCCESS", "a.parquet", "part/b.parquet"]
    for entry in m.files:
        assert entry.size == (tmp_path / entry.path).stat().st_size
        assert entry.sha256 == sha(tmp_path / entry.path)
    assert m.format == "parquet"
    assert m.schema == (Column("id", "int64"), Column("label", "string"),
                        Column("score", "float"))
    assert (m.name, m.version, m.owner, m.created) == ("demo", "1.0", "owner", NOW)
    assert m.tags == ("vision", "ml") and m.license == "MIT" and m.access.mode == "restricted"
    assert m.total_size == sum(f.size for f in m.files)


def test_csv_dataset(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,name,weight\n1,x,2.5\n2,y,3.0\n")
    (tmp_path / "b.csv").write_text("id,name,weight\n3,z,1.0\n")
    m = scan(tmp_path)
    assert m.format == "csv"
    assert m.schema == (Column("id", "int64"), Column("name", "string"),
                        Column("weight", "double"))
    assert m.file("b.csv").sha256 == sha(tmp_path / "b.csv")


def test_big_file_hash_spans_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "blob.bin").write_bytes(data)
    (tmp_path / "empty.bin").write_bytes(b"")
    m = scan(tmp_path, workers=2)
    assert m.file("blob.bin").sha256 == hashlib.sha256(data).digest()
    assert m.file("empty.bin").size == 0
    assert m.format == "files" and m.schema == ()


def test_detect_format() -> None:
    assert detect_format(["a.tfrecord", "b.tfrecords", "_SUCCESS"]) == "tfrecord"
    assert detect_format(["x.CSV.GZ"]) == "csv"
    assert detect_format(["README"]) == "files"
    assert detect_format(["part-0.parquet", "README.md", "notes.txt"]) == "parquet"
    assert detect_format(["img/0.jpg", "img/1.jpg"]) == "files"


def test_a_mix_of_formats_says_so_unless_the_format_is_given(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    for i in range(3):
        (tmp_path / "img" / f"{i}.jpg").write_bytes(b"jpeg")
    (tmp_path / "labels.csv").write_text("file,label\n0.jpg,1\n")
    with pytest.raises(PublishError, match=r"mixes formats: 1 csv \(labels.csv\), 3 files \(img/0.jpg, …\).*--format files"):
        scan(tmp_path)
    assert scan(tmp_path, format="files").format == "files"


def test_symlink_inside_is_refused_not_published_twice(tmp_path: Path) -> None:
    (tmp_path / "real.bin").write_bytes(b"abc")
    (tmp_path / "alias.bin").symlink_to("real.bin")
    with pytest.raises(PublishError, match=r"alias\.bin is a link to real\.bin, which the dataset already holds"):
        scan(tmp_path)


def test_symlink_leaving_directory_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_text("x")
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.bin").write_text("y")
    (data / "leak").symlink_to("../secret")
    with pytest.raises(PublishError, match="leak is a link that leaves the dataset"):
        scan(data)


@pytest.mark.parametrize("target", ["missing", "sub"])
def test_dangling_and_directory_links_rejected(tmp_path: Path, target: str) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_text("x")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(PublishError, match="link"):
        scan(tmp_path)


def test_fifo_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_text("x")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(PublishError, match="pipe is a fifo"):
        scan(tmp_path)


def test_socket_rejected(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tmp_path / "s"))
        with pytest.raises(PublishError, match="s is a socket"):
            scan(tmp_path)
    finally:
        server.close()


def test_empty_dataset_rejected(tmp_path: Path) -> None:
    (tmp_path / "only-dirs" / "deeper").mkdir(parents=True)
    with pytest.raises(PublishError, match="no files"):
        scan(tmp_path)


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="not a directory"):
        scan(tmp_path / "nope")


@pytest.mark.parametrize(
    "kw",
    [{"name": "Bad"}, {"name": "-x"}, {"name": "a b"}, {"version": "V1"}, {"version": ""},
     {"tags": ["has space"]}, {"tags": [""]}],
)
def test_bad_names_rejected(tmp_path: Path, kw: dict) -> None:
    (tmp_path / "a").write_text("x")
    with pytest.raises(PublishError):
        scan(tmp_path, **kw)


def test_unsafe_file_name_rejected(tmp_path: Path) -> None:
    (tmp_path / "a\\b").write_text("x")
    with pytest.raises(PublishError, match="absolute"):
        scan(tmp_path)


def test_corrupt_parquet_names_file(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(PublishError, match=r"bad\.parquet"):
        scan(tmp_path)


def test_parquet_schemas_are_unified_or_rejected(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": [1]}), tmp_path / "1.parquet")
    pq.write_table(pa.table({"b": ["x"]}), tmp_path / "2.parquet")
    assert scan(tmp_path).schema == (Column("a", "int64"), Column("b", "string"))
    pq.write_table(pa.table({"a": ["text"]}), tmp_path / "3.parquet")
    with pytest.raises(PublishError, match=r"3\.parquet"):
        scan(tmp_path)
