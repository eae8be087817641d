"""A small in-process event hub: the daemon publishes, the SSE stream and status page listen."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

_QUEUE_LIMIT = 1000


class EventHub:
    """Fan-out of events to subscribers; a slow subscriber loses old events, never blocks us."""

    def __init__(self, history: int = 200) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._ids = itertools.count(1)
        self.recent: deque[dict[str, Any]] = deque(maxlen=history)

    def emit(self, kind: str, **data: Any) -> dict[str, Any]:
        event = {"id": next(self._ids), "type": kind, "time": int(time.time()), **data}
        self.recent.append(event)
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)
        return event

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Events from now on, until close()."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_QUEUE_LIMIT)
        self._subscribers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.discard(queue)

    def close(self) -> None:
        """End every subscription (open event streams would otherwise hold up shutdown)."""
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
