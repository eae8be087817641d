"""The states of a fetch job, apart from the fetch room (`fetching`), so the CLI and the web
pages can name them without importing that room and libtorrent behind it."""

from __future__ import annotations

import enum


class FetchState(enum.StrEnum):
    QUEUED = "queued"
    TRANSFERRING = "transferring"  # swarming what is not held yet (landing files as they come)
    LANDING = "landing"  # every file verified in staging; the store is still writing
    LANDED = "landed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in ACTIVE_STATES


ACTIVE_STATES = (FetchState.QUEUED, FetchState.TRANSFERRING, FetchState.LANDING)
FINAL_STATES = (FetchState.LANDED, FetchState.FAILED, FetchState.CANCELLED)
