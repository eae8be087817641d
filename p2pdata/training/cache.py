"""`DatasetCache`: the launcher's `RunHooks` that keep a landed dataset in the store's cache
(HDFS centralized cache directives) while runs of jobs with `cache = true` train on it.

The store is passed in as a `DatasetCacher` (the HDFS store is one): this room does not
import the stores.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from p2pdata.errors import P2pdataError
from p2pdata.training.launcher import RunRecord

log = logging.getLogger(__name__)

CACHED = "cached: "
NOT_CACHED = "not cached: "


class CacheOutcome(Protocol):
    @property
    def cached(self) -> bool: ...

    @property
    def detail(self) -> str: ...


class DatasetCacher(Protocol):
    """A store that can pin a landed dataset in memory and unpin it."""

    async def cache(self, name: str, version: str) -> CacheOutcome: ...

    async def uncache(self, name: str, version: str) -> CacheOutcome: ...


class CachePins:
    """Which runs hold which dataset cached: a dataset is uncached when the last run holding
    it ends. A run this daemon did not see start (one a restart found over) holds nothing:
    what it may have left cached goes unless another run holds the dataset."""

    def __init__(self) -> None:
        self._held: dict[str, set[str]] = {}

    def pin(self, dataset: str, run_id: str) -> None:
        self._held.setdefault(dataset, set()).add(run_id)

    def unpin(self, dataset: str, run_id: str) -> bool:
        """Forget the run; True if no run holds the dataset any more: uncache it."""
        holders = self._held.get(dataset, set())
        holders.discard(run_id)
        if holders:
            return False
        self._held.pop(dataset, None)
        return True


def cache_state(run: RunRecord) -> bool | None:
    """What the run's latest cache note says: cached (True), not (False), nothing (None)."""
    for note in reversed(run.notes):
        if note.startswith((CACHED, NOT_CACHED)):
            return note.startswith(CACHED)
    return None


class DatasetCache:
    """`RunHooks` caching the dataset of every run whose spec says `cache = true`.

    `cacher` None: the store has no cache (`unavailable` says why). Nothing here fails a
    run: where caching cannot be had the run reads uncached, a note on the run says why,
    and each distinct reason is logged once.
    """

    def __init__(self, cacher: DatasetCacher | None, *, unavailable: str = "",
                 timeout: float = 120.0) -> None:
        self.cacher = cacher
        self.unavailable = unavailable
        self.timeout = timeout  # per call: a hung cluster tool is not waited for forever
        self.pins = CachePins()
        self._lock = asyncio.Lock()  # cache and uncache calls in the order pins decided them
        self._logged: set[str] = set()

    async def on_run_start(self, run: RunRecord) -> str | None:
        if not run.spec.get("cache"):
            return None
        if self.cacher is None:
            return self._not_cached(run, NOT_CACHED + self.unavailable)
        async with self._lock:
            try:
                outcome = await asyncio.wait_for(self.cacher.cache(*_split(run.dataset)),
                                                 self.timeout)
            except (P2pdataError, OSError, TimeoutError) as exc:
                # Perhaps half done: not a NOT_CACHED note, so the run's end uncaches.
                return self._not_cached(run, f"caching failed, read uncached: "
                                             f"{exc or 'timed out'}")
            if not outcome.cached:
                return self._not_cached(run, NOT_CACHED + outcome.detail)
            self.pins.pin(run.dataset, run.id)
        log.info("run %s: %s %s", run.id, CACHED, outcome.detail)
        return CACHED + outcome.detail

    async def on_run_end(self, run: RunRecord) -> str | None:
        # A run whose start found no cache to be had has nothing to undo.
        if not run.spec.get("cache") or self.cacher is None or cache_state(run) is False:
            return None
        async with self._lock:
            if not self.pins.unpin(run.dataset, run.id):
                return f"left cached: another run trains on {run.dataset}"
            try:
                outcome = await asyncio.wait_for(self.cacher.uncache(*_split(run.dataset)),
                                                 self.timeout)
            except (P2pdataError, OSError, TimeoutError) as exc:
                note = f"uncaching failed: {exc or 'timed out'}"
                log.warning("run %s: %s", run.id, note)
                return note
        log.info("run %s: uncached: %s", run.id, outcome.detail)
        return f"uncached: {outcome.detail}"

    def _not_cached(self, run: RunRecord, note: str) -> str:
        if note not in self._logged:  # once per reason, not once per run
            self._logged.add(note)
            log.warning("run %s asks for cache = true; %s", run.id, note)
        return note


def _split(dataset: str) -> tuple[str, str]:
    name, _, version = dataset.rpartition("@")
    return name, version
