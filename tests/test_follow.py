"""The fetch follower the CLI and p2pdata.load share: against a scripted control API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from p2pdata.display import follow_fetch
from p2pdata.errors import DaemonNotRunning


class Scripted:
    """A control API whose job reads and events follow a script."""

    def __init__(self, reads: list[dict[str, Any] | Exception], events: list[dict[str, Any]], *,
                 then_end: bool = False) -> None:
        self.reads = reads
        self._events = events
        self.then_end = then_end  # the stream ends after its events (the daemon stopping)
        self.closed = asyncio.Event()
        self.opened = asyncio.Event()

    async def call(self, method: str, path: str, payload: dict[str, Any] | None = None,
                   **query: Any) -> Any:
        assert (method, path) == ("GET", "/v1/jobs/j1")
        read = self.reads.pop(0)
        if isinstance(read, Exception):
            raise read
        return dict(read)

    async def _stream(self) -> AsyncIterator[dict[str, Any]]:
        self.opened.set()
        try:
            for event in self._events:
                yield event
            if not self.then_end:
                await asyncio.Event().wait()  # the stream stays open, quiet
        finally:
            self.closed.set()

    def events(self) -> AsyncIterator[dict[str, Any]]:
        return self._stream()


def job(state: str, done: int = 0) -> dict[str, Any]:
    return {"id": "j1", "ref": "clicks@1", "state": state, "done_bytes": done, "total_bytes": 100}


async def test_the_follower_reads_the_job_again_on_each_state_change_and_closes_the_stream() -> None:
    api = Scripted(
        reads=[job("swarming"), job("landing", 100), job("landed", 100)],
        events=[{"job": "other", "type": "fetch.state"},  # another job's: no read
                {"job": "j1", "type": "fetch.progress", "done_bytes": 50, "total_bytes": 100},
                {"job": "j1", "type": "fetch.state"},
                {"job": "j1", "type": "fetch.state"}],
    )
    ended = await asyncio.wait_for(follow_fetch(api, job("queued"), quiet=True), 10)
    assert ended["state"] == "landed" and api.reads == []
    assert api.closed.is_set()


async def test_a_follower_cancelled_closes_the_event_stream() -> None:
    api = Scripted(reads=[job("swarming")] * 10, events=[])
    follower = asyncio.create_task(follow_fetch(api, job("queued"), quiet=True))
    await asyncio.wait_for(api.opened.wait(), 10)  # following: the job read, the stream open
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
    assert api.closed.is_set()


async def test_an_event_stream_that_ends_leaves_the_job_reads_to_say_what_happened() -> None:
    # The daemon stopping ends its event stream: the follower reads the job at once, and
    # the read's own error names what failed (not an empty StopAsyncIteration).
    gone = DaemonNotRunning("lost the daemon at http://127.0.0.1:1")
    api = Scripted(reads=[job("swarming"), gone], events=[], then_end=True)
    with pytest.raises(DaemonNotRunning, match="lost the daemon"):
        await asyncio.wait_for(follow_fetch(api, job("queued"), quiet=True), 10)
    # A job that ended as the stream did is simply read as it ended.
    api = Scripted(reads=[job("swarming"), job("landed", 100)], events=[], then_end=True)
    ended = await asyncio.wait_for(follow_fetch(api, job("queued"), quiet=True), 10)
    assert ended["state"] == "landed"
