"""libtorrent's alerts handed to a callback on the event loop.

A pipe, not set_alert_notify: a Python callback needs the GIL inside libtorrent's alert
lock, and a session's destructor takes that lock while holding the GIL (a deadlock).
libtorrent writes a byte to the pipe when alerts wait; the loop watches the read end and
wakes the pump, which pops them and hands each to `dispatch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

import libtorrent as lt

log = logging.getLogger(__name__)


class AlertPump:
    """Start it with a running session; `stop()` before the session is destroyed (it then
    holds no reference to it), `close()` after (libtorrent may write to the pipe until then)."""

    def __init__(self, session: lt.session, dispatch: Callable[[lt.alert], None]) -> None:
        self._session: lt.session | None = session
        self._dispatch = dispatch
        self._wake = asyncio.Event()
        self._pipe = os.pipe()  # (read end, libtorrent's write end)
        for fd in self._pipe:
            os.set_blocking(fd, False)  # a full pipe already means "wake up"
        session.set_alert_fd(self._pipe[1])
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._pipe[0], self._ready)
        self._task = self._loop.create_task(self._pump())

    async def stop(self) -> None:
        self._session = None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def close(self) -> None:
        self._loop.remove_reader(self._pipe[0])
        for fd in self._pipe:
            os.close(fd)

    def _ready(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._pipe[0], 4096)
        self._wake.set()

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._session is None:
                return
            for alert in self._session.pop_alerts():
                try:
                    self._dispatch(alert)
                except Exception:  # one bad alert must not stop the others
                    log.exception("handling %s", type(alert).__name__)
