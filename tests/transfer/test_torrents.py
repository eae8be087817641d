"""Torrents from publish's single read are exactly the torrents libtorrent itself would make."""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from pathlib import Path

import libtorrent as lt
import pytest

from p2pdata.catalog import scan_for_publish
from p2pdata.catalog.merkle import BLOCK, V2Hasher
from p2pdata.config import load_config
from p2pdata.errors import ConfigError, TransferError
from p2pdata.transfer import choose_piece_size, make_torrent

PIECE = 256 * 1024
# Edges of blocks and pieces, an empty file, and files spanning many pieces.
SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK, PIECE - 1, PIECE, PIECE + 1, 700_000,
         5 * PIECE, 5 * PIECE + 100, 33 * PIECE + 7]
CERT = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def libtorrent_made(files: list, root: Path, piece: int, cert: bytes | None,
                    hybrid: bool = False) -> dict:
    """The reference: libtorrent reading the files and hashing them (set_piece_hashes)."""
    creator = lt.create_torrent([lt.create_file_entry(f"dataset/{e.path}", e.size) for e in files],
                                piece, 0 if hybrid else lt.create_torrent.v2_only)
    if cert is not None:
        creator.set_root_cert(cert.decode())
    with tempfile.TemporaryDirectory() as parent:
        os.symlink(root.resolve(), Path(parent) / "dataset")
        lt.set_piece_hashes(creator, parent)
    return creator.generate()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = random.Random(21)
    (root / "sub").mkdir()
    for index, size in enumerate(SIZES):
        (root / f"{'sub/' if index % 3 == 0 else ''}f{index:02d}.bin").write_bytes(rng.randbytes(size))
    return root


@pytest.mark.parametrize("piece", [PIECE, 4 * PIECE])
@pytest.mark.parametrize("cert", [None, CERT])
def test_one_read_torrent_equals_libtorrents_own(tree: Path, piece: int, cert: bytes | None) -> None:
    scan = scan_for_publish(tree, name="d", version="1", owner="o", now=0,
                            piece_size_for=lambda _: piece)
    ours = make_torrent(scan.manifest.files, tree, v2=scan.v2, root_cert=cert)
    reference = libtorrent_made(list(scan.manifest.files), tree, piece, cert)
    decoded = lt.bdecode(ours.data)
    assert decoded[b"info"] == reference[b"info"]
    assert decoded[b"piece layers"] == reference[b"piece layers"]
    assert ours.info_hash == lt.torrent_info(lt.bencode(reference)).info_hashes().v2.to_bytes()


@pytest.mark.parametrize("piece", [PIECE, 4 * PIECE])
def test_hybrid_torrent_equals_libtorrents_own(tree: Path, piece: int) -> None:
    scan = scan_for_publish(tree, name="d", version="1", owner="o", now=0,
                            piece_size_for=lambda _: piece, hybrid=True)
    ours = make_torrent(scan.manifest.files, tree, v2=scan.v2, hybrid=True)
    reference = libtorrent_made(list(scan.manifest.files), tree, piece, None, hybrid=True)
    assert lt.bdecode(ours.data)[b"info"] == reference[b"info"]
    info = lt.torrent_info(ours.data)
    assert info.info_hashes().has_v1() and info.info_hashes().has_v2()
    # v2-only hashes given for a hybrid torrent are completed by reading the files.
    v2_only = scan_for_publish(tree, name="d", version="1", owner="o", now=0,
                               piece_size_for=lambda _: piece)
    again = make_torrent(v2_only.manifest.files, tree, v2=v2_only.v2, hybrid=True)
    assert lt.bdecode(again.data)[b"info"] == reference[b"info"]


def test_hybrid_order_is_the_file_trees_even_where_libtorrents_creator_errs(tmp_path: Path) -> None:
    # Whole-path order ("a-b" < "a.bin" < "a/x") differs from the tree's ("a/x" first):
    # libtorrent 2.1 lists v1 files by whole path and then refuses its own torrent.
    for path, size in (("a/x", 5000), ("a.bin", 3000), ("a-b", 100), ("b", 0)):
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_bytes(os.urandom(size))
    scan = scan_for_publish(tmp_path, name="d", version="1", owner="o", now=0,
                            piece_size_for=lambda _: PIECE, hybrid=True)
    info = lt.torrent_info(make_torrent(scan.manifest.files, tmp_path, v2=scan.v2, hybrid=True).data)
    files = info.layout()
    listed = [files.file_path(i) for i in range(files.num_files())
              if not files.file_flags(i) & lt.file_storage.flag_pad_file]
    assert listed == ["dataset/a/x", "dataset/a-b", "dataset/a.bin", "dataset/b"]
    with pytest.raises(RuntimeError, match="v1 and v2 file metadata does not match"):
        lt.torrent_info(lt.bencode(libtorrent_made(list(scan.manifest.files), tmp_path, PIECE,
                                                   None, hybrid=True)))


def test_hashes_at_another_piece_size_are_recomputed(tree: Path) -> None:
    scan = scan_for_publish(tree, name="d", version="1", owner="o", now=0,
                            piece_size_for=lambda _: PIECE)
    recomputed = make_torrent(scan.manifest.files, tree, v2=scan.v2, piece_size=2 * PIECE)
    reference = libtorrent_made(list(scan.manifest.files), tree, 2 * PIECE, None)
    assert lt.bdecode(recomputed.data)[b"info"] == reference[b"info"]


def test_a_file_changed_since_the_scan_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    scan = scan_for_publish(tmp_path, name="d", version="1", owner="o", now=0,
                            piece_size_for=choose_piece_size)
    (tmp_path / "a.bin").write_bytes(b"x" * 999)
    with pytest.raises(TransferError, match="manifest says 1000 bytes"):
        make_torrent(scan.manifest.files, tmp_path, v2=scan.v2)


def test_hasher_rejects_bad_piece_sizes_and_short_blocks_midway() -> None:
    with pytest.raises(ValueError, match="power of two"):
        V2Hasher(3 * BLOCK)
    hasher = V2Hasher(PIECE)
    hasher.update(b"x" * 100)
    with pytest.raises(ValueError, match="short block"):
        hasher.update(b"x" * BLOCK)


def test_torrent_format_is_checked_in_the_config(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[transfer]\ntorrent_format = "v1"\n')
    with pytest.raises(ConfigError, match=r"transfer\.torrent_format: expected 'v2' or 'hybrid'"):
        load_config(tmp_path)
    (tmp_path / "config.toml").write_text('[transfer]\ntorrent_format = "hybrid"\n')
    assert load_config(tmp_path).transfer.torrent_format == "hybrid"


def test_a_single_file_hashed_on_two_threads_gives_the_same_torrent(tmp_path: Path) -> None:
    # Fewer files than workers: v2 hashing runs beside the SHA-256, chunk by chunk.
    data = os.urandom(5 * 1024 * 1024 + 12345)
    (tmp_path / "big.bin").write_bytes(data)
    scan = scan_for_publish(tmp_path, name="d", version="1", owner="o", now=0, workers=2,
                            piece_size_for=lambda _: PIECE, hybrid=True)
    assert scan.manifest.files[0].sha256 == hashlib.sha256(data).digest()
    ours = make_torrent(scan.manifest.files, tmp_path, v2=scan.v2, hybrid=True)
    reference = libtorrent_made(list(scan.manifest.files), tmp_path, PIECE, None, hybrid=True)
    assert lt.bdecode(ours.data)[b"info"] == reference[b"info"]
    assert lt.bdecode(ours.data)[b"piece layers"] == reference[b"piece layers"]
