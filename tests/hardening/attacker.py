"""A hostile HTTP server on loopback, in a thread: the malicious web page or peer of a test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web


class Attacker:
    """Serves `setup(app)`'s routes on 127.0.0.1 at `url` until `close()`."""

    def __init__(self, setup: Callable[[web.Application], None], **runner_options: object) -> None:
        self.loop = asyncio.new_event_loop()
        self.url = ""
        app = web.Application()
        setup(app)
        self.runner = web.AppRunner(app, **runner_options)
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        if not started.wait(10):
            raise RuntimeError("the attacker's server did not start")

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", 0).start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        started.set()
        self.loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
