"""The landing decisions, without any I/O."""

import hashlib

import pytest

from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.errors import LandingError
from p2pdata.hdfs import HashMismatch, LandingConflict, LandingPlan, LandingState


def entry(path: str, data: bytes) -> FileEntry:
    return FileEntry(path, len(data), hashlib.sha256(data).digest())


A, B = entry("a", b"aaa"), entry("b", b"bbbb")
MANIFEST = Manifest("ds", "1", "owner", 0, "files", (A, B))


def test_fresh_landing_writes_everything_then_is_verified() -> None:
    plan = LandingPlan(MANIFEST, None, final_exists=False)
    assert plan.state is LandingState.WRITING
    assert not plan.resume(A, None)
    plan.finished(A, A.size, A.sha256)
    assert plan.missing() == ["b"]
    plan.finished(B, B.size, B.sha256)
    assert plan.state is LandingState.VERIFIED
    assert (plan.written, plan.resumed, plan.bytes_written) == (2, 0, 7)
    assert plan.progress().files_done == 2


def test_resume_skips_only_files_verified_with_the_same_hash() -> None:
    plan = LandingPlan(MANIFEST, None, final_exists=False)
    assert plan.resume(A, (A.size, A.sha256))
    assert not plan.resume(B, (B.size, b"\0" * 32))
    assert plan.resumed == 1 and plan.missing() == ["b"]


def test_mismatch_raises_and_leaves_file_missing() -> None:
    plan = LandingPlan(MANIFEST, None, final_exists=False)
    with pytest.raises(HashMismatch, match="a: got 3 bytes"):
        plan.finished(A, A.size, b"\1" * 32)
    assert plan.missing() == ["a", "b"]
    with pytest.raises(LandingError, match="2 file"):
        plan.check_complete()


def test_content_checked_by_the_source_still_needs_the_right_size() -> None:
    # sha256=None: the swarm's v2 piece hashes checked the bytes; the size is still compared.
    plan = LandingPlan(MANIFEST, None, final_exists=False)
    plan.finished(A, A.size, None)
    with pytest.raises(HashMismatch, match="b: got 3 bytes, the manifest says 4 bytes"):
        plan.finished(B, 3, None)
    assert plan.missing() == ["b"]


def test_already_landed_and_conflicts() -> None:
    assert LandingPlan(MANIFEST, MANIFEST.id, final_exists=True).state is \
        LandingState.ALREADY_LANDED
    with pytest.raises(LandingConflict, match="manifest other"):
        LandingPlan(MANIFEST, "other", final_exists=True)
    with pytest.raises(LandingConflict, match="no p2pdata marker"):
        LandingPlan(MANIFEST, None, final_exists=True)


def test_unknown_file_from_source_is_refused() -> None:
    plan = LandingPlan(MANIFEST, None, final_exists=False)
    with pytest.raises(LandingError, match="does not match"):
        plan.entry(entry("c", b"x"))
    with pytest.raises(LandingError):
        plan.entry(entry("a", b"different"))
