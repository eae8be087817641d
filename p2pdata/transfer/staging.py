"""The staging area: a directory and a byte budget shared by fetches and seeds."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from p2pdata.errors import StagingFull


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@dataclass
class _Entry:
    size: int
    active: bool  # a fetch writes it or landing still reads it: not evictable
    last_used: float


class StagingLedger:
    """Decides which datasets may occupy staging, and which seeds to evict.

    No I/O: the caller gives sizes, the free disk space and the time, and
    carries out the evictions it is told to.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._entries: dict[str, _Entry] = {}

    @property
    def used(self) -> int:
        return sum(entry.size for entry in self._entries.values())

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def reserve(self, key: str, size: int, now: float, *, what: str = "",
                disk_free: int | None = None, on_disk: int = 0) -> list[str]:
        """Make room for `key` (`size` bytes) and mark it active.

        Returns the seeds to evict first, least recently used first. Raises
        StagingFull if even evicting every idle seed would not make room.
        `on_disk` is how much of `key` is already in staging (a resumed fetch).
        """
        what = what or key
        existing = self._entries.pop(key, None)
        try:
            need = size - (self.budget - self.used)
            evict: list[str] = []
            if need > 0:
                idle = sorted((e.last_used, k) for k, e in self._entries.items() if not e.active)
                for _, victim in idle:
                    if need <= 0:
                        break
                    evict.append(victim)
                    need -= self._entries[victim].size
            if need > 0:
                active = sum(e.size for e in self._entries.values() if e.active)
                raise StagingFull(
                    f"{what} needs {_mib(size)} of staging, but the budget is {_mib(self.budget)}"
                    f" and {_mib(active)} is held by fetches in progress; raise the staging"
                    " budget, fetch fewer files, or wait for other fetches to land"
                )
            freed = sum(self._entries[k].size for k in evict)
            if disk_free is not None and size - on_disk > disk_free + freed:
                raise StagingFull(
                    f"{what} needs {_mib(size - on_disk)} more on the staging disk, which has"
                    f" only {_mib(disk_free + freed)} free (counting seeds it may evict)"
                )
        except StagingFull:
            if existing is not None:
                self._entries[key] = existing
            raise
        for victim in evict:
            del self._entries[victim]
        self._entries[key] = _Entry(size, True, now)
        return evict

    def add_seed(self, key: str, size: int, now: float) -> None:
        """Register data found in staging (e.g. at start-up) as an idle seed."""
        self._entries[key] = _Entry(size, False, now)

    def release(self, key: str, now: float) -> None:
        """The fetch is done and landed: the data may be evicted when room is needed."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.active = False
            entry.last_used = now

    def touch(self, key: str, now: float) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.last_used = now

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)


class Staging:
    """The staging directory: one folder per dataset torrent, named by info hash."""

    def __init__(self, directory: Path, budget: int,
                 disk_free: Callable[[Path], int] | None = None) -> None:
        self.dir = directory
        self.ledger = StagingLedger(budget)
        self._disk_free = disk_free or (lambda path: shutil.disk_usage(path).free)

    def open(self, now: float) -> None:
        """Create the directory and register what an earlier run left as idle seeds."""
        # 0700: restricted datasets are staged here too, outside the home when configured so.
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for child in self.dir.iterdir():
            if child.is_dir() and len(child.name) == 64 and not child.name.startswith("."):
                self.ledger.add_seed(child.name, _du(child), child.stat().st_mtime)

    def path(self, key: str) -> Path:
        return self.dir / key

    def reserve(self, key: str, size: int, now: float, what: str = "") -> list[str]:
        folder = self.path(key)
        return self.ledger.reserve(key, size, now, what=what, disk_free=self._disk_free(self.dir),
                                   on_disk=_du(folder) if folder.exists() else 0)

    def remove(self, key: str) -> None:
        self.ledger.forget(key)
        shutil.rmtree(self.path(key), ignore_errors=True)


def _du(folder: Path) -> int:
    """Bytes actually allocated under `folder` (files are sparse while downloading)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())
