"""The I/O-free decision classes: staging ledger, job state, rates, finished files."""


import pytest

from p2pdata.catalog.manifest import FileEntry
from p2pdata.errors import StagingFull, TransferError
from p2pdata.transfer import StagingLedger, choose_piece_size
from p2pdata.transfer.state import (
    UNSAMPLED,
    FileOrder,
    FilePieces,
    JobMachine,
    JobState,
    RateMeter,
    UploadTally,
)
from p2pdata.transfer.torrents import MAX_PIECE, MIN_PIECE, FileSpan

MIB = 1024 * 1024


def test_piece_size_grows_with_the_dataset() -> None:
    assert choose_piece_size(1) == MIN_PIECE
    assert choose_piece_size(1536 * MIB) == MIB
    assert choose_piece_size(10**15) == MAX_PIECE


def test_ledger_refuses_what_cannot_fit_with_a_clear_message() -> None:
    ledger = StagingLedger(budget=100)
    ledger.reserve("a", 60, now=0)
    with pytest.raises(StagingFull, match=r"budget is 0\.0 MiB.*held by fetches in progress"):
        ledger.reserve("b", 50, now=1, what="demo@1")
    assert "b" not in ledger and ledger.used == 60


def test_ledger_evicts_idle_seeds_least_recently_used_first() -> None:
    ledger = StagingLedger(budget=100)
    ledger.add_seed("old", 30, now=0)
    ledger.add_seed("new", 30, now=5)
    ledger.reserve("busy", 30, now=6)
    ledger.touch("old", now=10)  # used since: now "new" is the least recently used
    assert ledger.reserve("x", 30, now=11) == ["new"]
    assert ledger.reserve("y", 30, now=12) == ["old"]
    assert ledger.used == 90


def test_ledger_never_evicts_active_entries_and_respects_disk_space() -> None:
    ledger = StagingLedger(budget=100)
    ledger.reserve("busy", 80, now=0)
    with pytest.raises(StagingFull):
        ledger.reserve("x", 30, now=1)
    ledger.release("busy", now=2)
    assert ledger.reserve("x", 30, now=3) == ["busy"]
    with pytest.raises(StagingFull, match=r"only 0\.0 MiB free"):
        ledger.reserve("y", 50, now=4, disk_free=10)
    assert ledger.reserve("y", 50, now=5, disk_free=10, on_disk=45) == []


def test_job_machine_transitions() -> None:
    machine = JobMachine()
    machine.pause()
    machine.checked()
    assert machine.state is JobState.PAUSED
    machine.resume()
    assert machine.state is JobState.DOWNLOADING
    assert machine.fail("disk full") and not machine.fail("again")
    assert machine.error == "disk full" and not machine.cancel()
    with pytest.raises(TransferError):
        machine.resume()


def test_rate_meter_uses_a_sliding_window() -> None:
    meter = RateMeter(window=2.0)
    assert meter.rate == 0 and meter.eta(10) is None
    for second in range(10):
        meter.add(float(second), second * 100 if second < 5 else 400 + (second - 4) * 10)
    assert meter.rate == pytest.approx(10, rel=0.01)
    assert meter.eta(100) == pytest.approx(10, rel=0.01)


def test_file_pieces_completes_once_every_piece_passed() -> None:
    span = FileSpan(7, FileEntry("f", 2560, b"\0" * 32), 4, 3, 1024)
    pieces = FilePieces(span)
    pieces.piece_done(6)
    pieces.piece_done(4)
    pieces.piece_done(4)  # reported twice (a recheck): counted once
    assert not pieces.complete
    pieces.piece_done(5)
    assert pieces.complete
    with pytest.raises(TransferError, match="not one of its pieces"):
        pieces.piece_done(7)


def test_file_order_smallest_first_then_biggest_and_the_window_moves_on() -> None:
    # index -> size: a big file, small ones, a middle one (a partial fetch: no index 2)
    order = FileOrder({0: 500, 1: 50, 3: 50, 4: 10, 5: 200}, window=2)
    assert order.order == [4, 0, 5, 1, 3]  # landing starts at once; the big lands while the rest comes
    top, default = FileOrder.TOP, FileOrder.DEFAULT
    assert order.priorities(set()) == {4: top, 0: top, 5: default, 1: default, 3: default}
    assert order.priorities({4}) == {4: default, 0: top, 5: top, 1: default, 3: default}
    # files completing out of order (a resumed fetch): the window is the next ones still missing
    assert order.priorities({0, 5}) == {4: top, 0: default, 5: default, 1: top, 3: default}
    assert set(order.priorities({0, 1, 3, 4, 5}).values()) == {default}
    assert FileOrder({7: 1}).priorities(set()) == {7: top}
    with pytest.raises(ValueError, match="window"):
        FileOrder({0: 1}, window=0)


def test_file_order_top_follows_a_job_whose_files_only_complete() -> None:
    order = FileOrder({0: 500, 1: 50, 3: 50, 4: 10, 5: 200}, window=2)  # order 4, 0, 5, 1, 3
    complete: set[int] = set()
    assert order.top(complete) == [4, 0]
    complete |= {1}  # out of order (sequential download): the window does not move
    assert order.top(complete) == [4, 0]
    complete |= {4, 0}
    assert order.top(complete) == [5, 3]
    complete |= {5, 3}
    assert order.top(complete) == []
    # the same answers as priorities(): the files it puts on top
    fresh = FileOrder({0: 500, 1: 50, 3: 50, 4: 10, 5: 200}, window=2)
    for done in ({1}, {1, 4}, {0, 1, 4}):
        on_top = {i for i, p in fresh.priorities(done).items() if p == FileOrder.TOP}
        assert set(fresh.top(done)) == on_top


def test_upload_tally_counts_per_dataset_exactly_and_per_peer_across_reconnects() -> None:
    tally = UploadTally()
    a, b = ("10.0.0.1", 5000), ("10.0.0.2", 6000)
    qbt, ours = ("10.0.0.1", "qBittorrent/4.5.2"), ("10.0.0.2", "p2pdata")
    tally.sample("o/x@1", 150, [(a, qbt[1], 100), (b, ours[1], 50)])
    # b closed after sending 30 more than its last sample showed: the torrent's counter knows.
    tally.sample("o/x@1", 380, [(a, qbt[1], 300)])
    tally.sample("o/x@1", 410, [(a, qbt[1], 20), (b, ours[1], 10)])  # both reconnected
    tally.sample("o/y@1", 5, [])  # a connection that came and went between two samples
    tally.sample("o/y@1", 2, [])  # the torrent was re-added: its counter restarted
    assert tally.by_dataset == {"o/x@1": 410, "o/y@1": 7} and tally.total == 417
    assert tally.by_peer == {qbt: 320, ours: 90, UNSAMPLED: 7}
