import pytest

from p2pdata.hdfs import TierError, parse_fsck, policy_name, resolve_tier


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
