"""Tier names, HDFS storage policies and where fsck says blocks are."""

from __future__ import annotations

import re
from collections import Counter

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

# Where a policy puts the blocks of a file with replication 1.
POLICY_STORAGE = {
    "HOT": "DISK",
    "WARM": "DISK",
    "COLD": "ARCHIVE",
    "ONE_SSD": "SSD",
    "ALL_SSD": "SSD",
    "LAZY_PERSIST": "RAM_DISK",
}


def resolve_tier(name: str) -> str:
    """A tier name (ssd, hot, cold, memory, ...) or a raw policy name -> the policy name."""
    key = name.strip()
    if key.lower() in TIERS:
        return TIERS[key.lower()]
    if key.upper() in POLICY_IDS:
        return key.upper()
    raise TierError(
        f"unknown tier {name!r}: use one of {', '.join(TIERS)} "
        f"or a storage policy ({', '.join(POLICY_IDS)})"
    )


def policy_name(policy_id: int | None) -> str | None:
    """GETFILESTATUS's numeric storagePolicy -> name; None when unset (0) or unknown."""
    return POLICY_NAMES.get(policy_id or 0)


_FILE_LINE = re.compile(r"^(/\S*) (\d+) bytes, (\d+) block\(s\)")
_LOCATION = re.compile(r"DatanodeInfoWithStorage\[[^,\]]+,[^,\]]+,(\w+)\]")


def parse_fsck(text: str) -> dict[str, Counter[str]]:
    """``fsck -files -blocks -locations`` output -> {file path: Counter(storage type: replicas)}."""
    placement: dict[str, Counter[str]] = {}
    current: Counter[str] | None = None
    for line in text.splitlines():
        match = _FILE_LINE.match(line)
        if match:
            current = placement.setdefault(match[1], Counter())
            continue
        if current is not None:
            current.update(_LOCATION.findall(line))
    return placement
