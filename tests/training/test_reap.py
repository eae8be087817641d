"""Reaping killed workers: in a daemon thread, shielded (a cancellation ends the wait, not the reaping)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from p2pdata.training import procs


class Stuck:
    """A popen whose wait blocks (a worker in uninterruptible I/O) until it is let go."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.waited = threading.Event()

    def wait(self) -> int:
        self.waited.set()
        assert self.go.wait(30), "never let go"
        return -9


class Dead:
    def __init__(self) -> None:
        self.reaped = False

    def wait(self) -> int:
        self.reaped = True
        return -9


async def test_a_stuck_worker_blocks_neither_the_loop_nor_the_others_reaping_when_cancelled() -> None:
    stuck, dead, released = Stuck(), Dead(), asyncio.Event()
    popens: list[Any] = [stuck, dead]
    task = asyncio.create_task(procs.reap(popens, then=released.set))
    assert await asyncio.to_thread(stuck.waited.wait, 10)
    await asyncio.sleep(0)  # the loop runs on meanwhile (a blocking wait would hang here)
    assert not task.done()
    task.cancel()  # e.g. the daemon stopping while a launch is released
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not released.is_set() and not dead.reaped  # not reaped yet: not released yet
    stuck.go.set()
    await asyncio.wait_for(released.wait(), 10)  # the reaping went on, and then the release
    assert dead.reaped


def test_a_worker_stuck_for_good_does_not_keep_the_event_loop_from_ending() -> None:
    # The daemon stopping while a worker never dies: asyncio.run returns (it joins the
    # default executor's threads, so the reaping must not run there).
    stuck, ended = Stuck(), threading.Event()

    async def main() -> None:
        task = asyncio.create_task(procs.reap([stuck]))  # type: ignore[list-item]
        assert await asyncio.to_thread(stuck.waited.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    def run() -> None:
        asyncio.run(main())
        ended.set()

    threading.Thread(target=run, daemon=True).start()
    try:
        assert ended.wait(10), "asyncio.run still waits for the stuck worker"
    finally:
        stuck.go.set()
