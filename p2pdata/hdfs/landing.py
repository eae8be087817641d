"""What a landing has to do, decided without I/O (the stores do the I/O around it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from p2pdata.catalog.manifest import FileEntry, Manifest
from p2pdata.errors import LandingError

MARKER = ".p2pdata-manifest"  # in a landed dataset's directory; holds the manifest id
TIER_FILE = ".p2pdata-tier"  # LocalStore only: the tier asked for (not enforced)


class HashMismatch(LandingError):
    def __init__(self, path: str, expected: FileEntry, size: int, sha256: bytes | None) -> None:
        got = f"{size} bytes" + ("" if sha256 is None else f" with SHA-256 {sha256.hex()}")
        super().__init__(
            f"{path}: got {got}, the manifest says "
            f"{expected.size} bytes with SHA-256 {expected.sha256.hex()}; nothing was landed"
        )
        self.path = path


class LandingConflict(LandingError):
    """The final path holds something that is not this manifest's dataset."""


class LandingState(enum.Enum):
    ALREADY_LANDED = "already_landed"
    WRITING = "writing"  # files still missing from .incoming
    VERIFIED = "verified"  # every file is in .incoming and verified: ready to rename


@dataclass(frozen=True)
class LandingProgress:
    name: str
    version: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


class LandingPlan:
    """The state of one landing: which files are verified, what is left, what comes next.

    ``final_marker`` is the marker found under the final path (None if there is no
    dataset there); ``final_exists`` says whether the final path exists at all.
    """

    def __init__(self, manifest: Manifest, final_marker: str | None,
                 final_exists: bool) -> None:
        self.manifest = manifest
        if final_exists and final_marker != manifest.id:
            what = f"manifest {final_marker}" if final_marker else "no p2pdata marker"
            raise LandingConflict(
                f"{manifest.ref} is already at its final path with {what}; "
                f"expected manifest {manifest.id}. Remove it or publish a new version."
            )
        self.already_landed = final_exists
        self._entries = {entry.path: entry for entry in manifest.files}
        self._done: set[str] = set()
        self.resumed = 0  # files found verified in .incoming from an earlier attempt
        self.written = 0
        self.bytes_written = 0

    @property
    def state(self) -> LandingState:
        if self.already_landed:
            return LandingState.ALREADY_LANDED
        if len(self._done) == len(self._entries):
            return LandingState.VERIFIED
        return LandingState.WRITING

    def entry(self, offered: FileEntry) -> FileEntry:
        """The manifest's entry for a file the source offers; unknown files are refused."""
        entry = self._entries.get(offered.path)
        if entry is None or entry != offered:
            raise LandingError(f"{self.manifest.ref}: the source offered {offered.path!r}, "
                               "which does not match any file of the manifest")
        return entry

    def resume(self, entry: FileEntry, recorded: tuple[int, bytes] | None) -> bool:
        """True if ``.incoming`` already holds this file verified (size, sha256): skip it."""
        if recorded == (entry.size, entry.sha256):
            if entry.path not in self._done:
                self._done.add(entry.path)
                self.resumed += 1
            return True
        return entry.path in self._done

    def finished(self, entry: FileEntry, size: int, sha256: bytes | None) -> None:
        """Record a file written to ``.incoming``; raises HashMismatch if it is not the one.

        ``sha256`` None: the source already checked the content (the swarm's v2 piece
        hashes, tied to the signed manifest), only the size is compared.
        """
        if size != entry.size or sha256 not in (None, entry.sha256):
            raise HashMismatch(entry.path, entry, size, sha256)
        if entry.path not in self._done:
            self._done.add(entry.path)
            self.written += 1
            self.bytes_written += size

    def missing(self) -> list[str]:
        return sorted(set(self._entries) - self._done)

    def check_complete(self) -> None:
        missing = self.missing()
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise LandingError(f"{self.manifest.ref}: the source ended before "
                               f"{len(missing)} file(s) arrived: {shown}")

    def progress(self) -> LandingProgress:
        done = [self._entries[path] for path in self._done]
        return LandingProgress(
            self.manifest.name, self.manifest.version, len(done), len(self._entries),
            sum(entry.size for entry in done), self.manifest.total_size,
        )
