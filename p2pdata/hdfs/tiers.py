"""Tier names, HDFS storage policies and where fsck says blocks are."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from p2pdata.hdfs.errors import TierError

# Policy ids as GETFILESTATUS/LISTSTATUS report them (the same in Hadoop 2.6 to 3.x).
POLICY_IDS = {
    "HOT": 7,
    "WARM": 5,
    "COLD": 2,
    "ONE_SSD": 10,
    "ALL_SSD": 12,
    "LAZY_PERSIST": 15,
}
POLICY_NAMES = {number: name for name, number in POLICY_IDS.items()}

TIERS = {
    "ssd": "ALL_SSD",
    "one_ssd": "ONE_SSD",
    "hot": "HOT",
    "disk": "HOT",
    "warm": "WARM",
    "cold": "COLD",
    "archive": "COLD",
    "memory": "LAZY_PERSIST",
}

# Tiers that also erasure-code their files (set on the empty .incoming directory before
# writing: HDFS cannot re-code existing files in place). XOR-2-1 needs three DataNodes.
EC_TIERS = {"cold-ec": ("COLD", "XOR-2-1-1024k")}

# The storage types of each policy (Hadoop's BlockStoragePolicySuite): replica i goes to
# the i-th type, replicas beyond the list to its last type.
POLICY_TYPES = {
    "HOT": ("DISK",),
    "WARM": ("DISK", "ARCHIVE"),
    "COLD": ("ARCHIVE",),
    "ONE_SSD": ("SSD", "DISK"),
    "ALL_SSD": ("SSD",),
    "LAZY_PERSIST": ("RAM_DISK", "DISK"),
}


def resolve_tier(name: str) -> str:
    """A tier name (ssd, hot, cold, memory, ...) or a raw policy name -> the policy name."""
    key = name.strip()
    if key.lower().replace("_", "-") in EC_TIERS:
        return EC_TIERS[key.lower().replace("_", "-")][0]
    if key.lower() in TIERS:
        return TIERS[key.lower()]
    if key.upper() in POLICY_IDS:
        return key.upper()
    raise TierError(
        f"unknown tier {name!r}: use one of {', '.join([*TIERS, *EC_TIERS])} "
        f"or a storage policy ({', '.join(POLICY_IDS)})"
    )


def resolve_ec(name: str | None) -> str | None:
    """The erasure coding policy a tier asks for (cold-ec: XOR-2-1-1024k), else None."""
    if name is None:
        return None
    spec = EC_TIERS.get(name.strip().lower().replace("_", "-"))
    return spec[1] if spec else None


def policy_name(policy_id: int | None) -> str | None:
    """GETFILESTATUS's numeric storagePolicy -> name; None when unset (0) or unknown."""
    return POLICY_NAMES.get(policy_id or 0)


def expected_storage(policy: str, replication: int) -> Counter[str]:
    """The storage types ``policy`` wants for a block's ``replication`` replicas.

    Like HDFS, RAM_DISK is never expected: LAZY_PERSIST's memory replica is a cache of
    one on DISK.
    """
    types = [t for t in POLICY_TYPES[resolve_tier(policy)] if t != "RAM_DISK"]
    return Counter(types[min(i, len(types) - 1)] for i in range(replication))


@dataclass(frozen=True)
class FsckBlock:
    path: str  # the file the block belongs to
    block: str  # blk_<id>_<generation stamp>
    replication: int  # the file's target replication
    storages: tuple[str, ...]  # the storage type of each replica found

    def satisfies(self, policy: str) -> bool:
        """Every replica is on a storage type the policy wants (what the Mover checks)."""
        wanted = expected_storage(policy, max(self.replication, len(self.storages)))
        found = Counter("DISK" if s == "RAM_DISK" else s for s in self.storages)
        return not found - wanted


# Hadoop 3 adds "replicated: replication=N, " or "erasure-coded: policy=P, ".
_FILE_LINE = re.compile(r"^(/.*?) (\d+) bytes, (?:replicated: replication=\d+, |"
                        r"erasure-coded: policy=\S+, )?(\d+) block\(s\):(.*)$")
_TARGET = re.compile(r"Target Replicas is (\d+)")
# An erasure-coded block group has negative ids and counts its internal blocks as Live_repl.
_BLOCK_LINE = re.compile(r"^\d+\. \S*?(blk_-?\d+_\d+) len=\d+ (?:Live_)?repl=(\d+)")
_LOCATION = re.compile(r"DatanodeInfoWithStorage\[[^,\]]+,[^,\]]+,(\w+)\]")


def parse_fsck_blocks(text: str) -> list[FsckBlock]:
    """``fsck PATH -files -blocks -locations`` output -> one FsckBlock per block."""
    blocks = []
    path: str | None = None
    target = 0
    for line in text.splitlines():
        match = _FILE_LINE.match(line)
        if match:
            # Only an under-replicated file's line names its target replication.
            path, wanted = match[1], _TARGET.search(match[4])
            target = int(wanted[1]) if wanted else 0
            continue
        block = _BLOCK_LINE.match(line)
        if path is not None and block:
            blocks.append(FsckBlock(path, block[1], max(target, int(block[2])),
                                    tuple(_LOCATION.findall(line))))
    return blocks


def parse_fsck(text: str) -> dict[str, Counter[str]]:
    """``fsck -files -blocks -locations`` output -> {file path: Counter(storage type: replicas)}."""
    placement: dict[str, Counter[str]] = {}
    for match in map(_FILE_LINE.match, text.splitlines()):
        if match:
            placement[match[1]] = Counter()
    for block in parse_fsck_blocks(text):
        placement[block.path].update(block.storages)
    return placement


def storage_counts(blocks: Iterable[FsckBlock]) -> dict[str, int]:
    """{storage type: block replicas} over ``blocks``."""
    counts: Counter[str] = Counter()
    for block in blocks:
        counts.update(block.storages)
    return dict(counts)
