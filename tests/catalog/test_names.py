"""Publisher names in references: labels beat self-given names, ambiguity is refused."""

from __future__ import annotations

import pytest

from p2pdata.catalog import PublisherNames
from p2pdata.errors import Ambiguous, NotFound

OWN, LAB_A, IMPOSTOR, LAB_B, LAB_B2 = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc", "dddddddddddddddd", "eeeeeeeeeeeeeeee"


def names() -> PublisherNames:
    return PublisherNames(
        own=(OWN, "home"),
        labels={LAB_A: "lab-a", LAB_B: None},
        claimed={IMPOSTOR: "lab-a", LAB_B: "lab-b", LAB_B2: "lab-b"},
    )


def test_a_label_the_user_gave_beats_a_name_a_peer_claims() -> None:
    assert names().ref("lab-a/taxi-trips@1") == f"{LAB_A}/taxi-trips@1"
    assert names().of(IMPOSTOR) == "lab-a" and names().label(IMPOSTOR) == IMPOSTOR
    assert names().label(LAB_A) == "lab-a" and names().cluster("home") == OWN


def test_a_name_two_clusters_claim_is_ambiguous_and_lists_them() -> None:
    with pytest.raises(Ambiguous, match=f"{LAB_B}, {LAB_B2}"):
        names().ref("lab-b/x@1")
    assert names().label(LAB_B) == LAB_B  # a search result shows the id, which always works


def test_ids_and_refs_without_a_publisher_pass_through() -> None:
    assert names().ref(f"{LAB_B2}/x@1") == f"{LAB_B2}/x@1"
    assert names().ref("x@1") == "x@1"
    assert names().cluster("ffffffffffffffff") == "ffffffffffffffff"  # unknown yet well-formed id
    with pytest.raises(NotFound, match="no publisher named 'lab-z'"):
        names().ref("lab-z/x@1")
