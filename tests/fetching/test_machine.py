"""The fetch job's decisions alone: states, stall reasons and time-outs, with an injected clock."""

from __future__ import annotations

import errno

import pytest

from p2pdata.errors import P2pdataError, StoreError
from p2pdata.fetching import FetchJob, FetchMachine, FetchState, Sources, describe_failure, stall_reason
from p2pdata.hdfs import HdfsConnectionError, open_store


def machine(stall_timeout: float = 60.0) -> FetchMachine:
    job = FetchJob(id="f-1", ref="c/d@1", manifest_id="m", publisher="c", total_bytes=100, tier="hot")
    return FetchMachine(job, stall_timeout=stall_timeout, hint_after=2.0)


def test_a_fetch_goes_through_landing_to_landed():
    m = machine()
    m.start(0.0)
    assert m.state is FetchState.TRANSFERRING
    m.observe(1.0, 100, Sources(endpoints=1, connected=1))
    m.transferred(2.0)
    assert m.state is FetchState.LANDING  # 100 % but the store still writes: said so
    m.landed(3.0, "file:///d/1")
    assert (m.state, m.job.uri, m.job.done_bytes) == (FetchState.LANDED, "file:///d/1", 100)
    with pytest.raises(P2pdataError, match="only a failed or cancelled"):
        m.retry(4.0)
    assert not m.cancel(4.0) and not m.fail(4.0, "late")


@pytest.mark.parametrize(("sources", "reason"), [
    (Sources(), "no peer has this dataset"),
    (Sources(unreachable=2), "2 known peer(s) are unreachable"),
    (Sources(endpoints=1, banned=1), "the only seed was banned for sending bad pieces"),
    (Sources(endpoints=2), "2 peer endpoint(s) have it, but none accepts a connection"),
    (Sources(endpoints=1, connected=1), "connected to 1 peer(s), but none sends data"),
])
def test_a_fetch_without_progress_says_why_within_seconds(sources, reason):
    m = machine()
    m.start(0.0)
    m.observe(1.0, 0, sources)
    assert m.job.waiting is None  # too early to tell
    m.observe(2.5, 0, sources)
    assert reason in (m.job.waiting or "")
    assert reason in stall_reason(sources)


def test_a_stalled_fetch_fails_after_the_stall_timeout_naming_the_cause():
    m = machine(stall_timeout=30.0)
    m.start(100.0)
    m.observe(101.0, 0, Sources(endpoints=1, connected=1))
    m.observe(110.0, 10, Sources(endpoints=1, connected=1))
    m.observe(125.0, 10, Sources())  # the seed went away
    assert m.tick(139.0) is None  # 29 s since the last byte
    error = m.tick(140.0)
    assert error == "no progress for 30 s: no peer has this dataset"
    assert m.fail(140.0, error)
    assert (m.state, m.job.error, m.job.waiting) == (FetchState.FAILED, error, None)
    assert m.job.to_dict()["retryable"]


def test_bytes_arriving_reset_the_stall_watch_and_the_reason():
    m = machine(stall_timeout=30.0)
    m.start(0.0)
    m.observe(20.0, 0, Sources())
    assert m.job.waiting == "no peer has this dataset"
    m.observe(29.0, 5, Sources(endpoints=1, connected=1))
    assert m.job.waiting is None
    assert m.tick(58.0) is None
    assert m.tick(59.0) is not None


def test_landing_is_never_timed_out_as_a_stall():
    m = machine(stall_timeout=5.0)
    m.start(0.0)
    m.transferred(1.0)
    m.observe(100.0, 100, Sources())
    assert m.tick(100.0) is None and m.job.waiting is None


def test_a_failed_job_is_retried_from_queued_and_a_cancelled_one_too():
    m = machine()
    m.start(0.0)
    m.transferred(1.0)
    assert m.fail(2.0, "store disk full at /data")
    m.retry(3.0)
    assert (m.state, m.job.error) == (FetchState.QUEUED, None)
    m.start(4.0)
    assert m.cancel(5.0)
    assert m.state is FetchState.CANCELLED
    assert not m.fail(6.0, "the runner saw the cancel")  # a cancel is not turned into a failure
    m.retry(7.0)
    assert m.state is FetchState.QUEUED


def test_a_job_the_daemon_stopped_under_is_queued_again():
    m = machine()
    m.start(0.0)
    m.transferred(1.0)
    m.requeue(2.0)
    assert m.state is FetchState.QUEUED


def test_the_record_round_trips_with_its_state_as_an_enum():
    m = machine()
    m.start(0.0)
    data = m.job.to_dict()
    assert data["state"] == "transferring" and not data["retryable"]
    again = FetchJob.from_dict(data)
    assert again.state is FetchState.TRANSFERRING and again == m.job


def test_failures_name_the_store_never_a_bare_repr(tmp_path):

    store = open_store("local", str(tmp_path))
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))
    wrapped = StoreError("writing x: no space")
    wrapped.__cause__ = full
    assert describe_failure(full, store) == describe_failure(wrapped, store) == f"store disk full at {tmp_path}"
    denied = PermissionError(errno.EACCES, "Permission denied", "/d/x")
    assert describe_failure(denied, store) == f"local store at {tmp_path}: Permission denied (/d/x)"
    assert describe_failure(StoreError("namenode is in safe mode"), store) == \
        f"local store at {tmp_path}: namenode is in safe mode"
    assert describe_failure(KeyError("k"), store) == "internal error (KeyError): 'k'"


def test_an_unreachable_hdfs_is_named_by_its_url():

    store = open_store("hdfs", "/p2pdata", webhdfs_url="http://127.0.0.1:9870")
    error = HdfsConnectionError("WebHDFS MKDIRS /p2pdata/.incoming: ClientConnectorError(...)")
    error.__cause__ = ConnectionRefusedError("Cannot connect to host 127.0.0.1:9870")
    assert describe_failure(error, store) == \
        "HDFS at http://127.0.0.1:9870 is unreachable: Cannot connect to host 127.0.0.1:9870"
