import pytest

from p2pdata.hdfs import TierError, parse_fsck, policy_name, resolve_tier
from p2pdata.hdfs.tiers import FsckBlock, expected_storage, parse_fsck_blocks, storage_counts


@pytest.mark.parametrize(("tier", "policy"), [
    ("ssd", "ALL_SSD"), ("one_ssd", "ONE_SSD"), ("hot", "HOT"), ("disk", "HOT"),
    ("warm", "WARM"), ("cold", "COLD"), ("archive", "COLD"), ("memory", "LAZY_PERSIST"),
    ("ALL_SSD", "ALL_SSD"), ("lazy_persist", "LAZY_PERSIST"), ("SSD", "ALL_SSD"),
])
def test_resolve_tier(tier: str, policy: str) -> None:
    assert resolve_tier(tier) == policy


def test_unknown_tier_names_the_choices() -> None:
    with pytest.raises(TierError, match=r"unknown tier .fast.*ssd.*ALL_SSD"):
        resolve_tier("fast")


def test_policy_ids() -> None:
    assert [policy_name(i) for i in (0, 2, 7, 12, 15, 99)] == \
        [None, "COLD", "HOT", "ALL_SSD", "LAZY_PERSIST", None]


def test_parse_fsck() -> None:
    text = """\
/d <dir>
/d/a 2000 bytes, 2 block(s):  OK
0. BP-1:blk_1_1 len=1000 repl=1 [DatanodeInfoWithStorage[127.0.0.1:1,DS-a,SSD]]
1. BP-1:blk_2_2 len=1000 repl=1 [DatanodeInfoWithStorage[127.0.0.1:1,DS-b,ARCHIVE]]

/d/b 0 bytes, 0 block(s):  OK
"""
    placement = parse_fsck(text)
    assert placement["/d/a"] == {"SSD": 1, "ARCHIVE": 1}
    assert placement["/d/b"] == {}


FSCK = """\
FSCK started by root (auth:SIMPLE) from /127.0.0.1 for path /d at Sat Nov 21 13:50:43 UTC 2026
/d <dir>
/d/multi file 2048 bytes, 2 block(s):  OK
0. BP-1-127.0.0.1-1:blk_1073741825_1001 len=1024 repl=1 [DatanodeInfoWithStorage[127.0.0.1:45239,DS-a,DISK]]
1. BP-1-127.0.0.1-1:blk_1073741826_1002 len=1024 repl=1 [DatanodeInfoWithStorage[127.0.0.1:45239,DS-b,ARCHIVE]]
/d/r3 100 bytes, 1 block(s):  Under replicated BP-1-127.0.0.1-1:blk_1073741827_1003. Target Replicas is 3 but found 1 replica(s).
0. BP-1-127.0.0.1-1:blk_1073741827_1003 len=100 repl=1 [DatanodeInfoWithStorage[127.0.0.1:45239,DS-b,ARCHIVE]]
/d/sub <dir>
/d/sub/empty 0 bytes, 0 block(s):  OK
Status: HEALTHY
"""


def test_parse_fsck_blocks() -> None:
    blocks = parse_fsck_blocks(FSCK)
    assert blocks == [
        FsckBlock("/d/multi file", "blk_1073741825_1001", 1, ("DISK",)),
        FsckBlock("/d/multi file", "blk_1073741826_1002", 1, ("ARCHIVE",)),
        FsckBlock("/d/r3", "blk_1073741827_1003", 3, ("ARCHIVE",)),
    ]
    assert storage_counts(blocks) == {"DISK": 1, "ARCHIVE": 2}
    assert parse_fsck(FSCK) == {"/d/multi file": {"DISK": 1, "ARCHIVE": 1},
                                "/d/r3": {"ARCHIVE": 1}, "/d/sub/empty": {}}


@pytest.mark.parametrize(("policy", "replication", "expected"), [
    ("HOT", 3, {"DISK": 3}),
    ("WARM", 1, {"DISK": 1}),
    ("WARM", 3, {"DISK": 1, "ARCHIVE": 2}),
    ("cold", 2, {"ARCHIVE": 2}),
    ("ONE_SSD", 3, {"SSD": 1, "DISK": 2}),
    ("ALL_SSD", 1, {"SSD": 1}),
    ("LAZY_PERSIST", 1, {"DISK": 1}),  # the memory replica caches one on DISK
])
def test_expected_storage(policy: str, replication: int, expected: dict[str, int]) -> None:
    assert expected_storage(policy, replication) == expected


@pytest.mark.parametrize(("policy", "replication", "storages", "ok"), [
    ("COLD", 1, ("ARCHIVE",), True),
    ("COLD", 1, ("DISK",), False),
    ("WARM", 1, ("ARCHIVE",), False),
    ("WARM", 3, ("ARCHIVE",), True),  # under-replicated: what exists is where WARM wants it
    ("WARM", 3, ("DISK", "DISK"), False),
    ("ONE_SSD", 2, ("SSD", "DISK"), True),
    ("LAZY_PERSIST", 1, ("RAM_DISK",), True),
    ("LAZY_PERSIST", 1, ("DISK",), True),
    ("ALL_SSD", 1, (), True),  # no live replica: nothing misplaced
])
def test_block_satisfies_policy(policy: str, replication: int, storages: tuple[str, ...],
                                ok: bool) -> None:
    assert FsckBlock("/f", "blk_1_1", replication, storages).satisfies(policy) is ok
