"""Which peer API request is let in: plain classes, a fake clock, real signatures."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from p2pdata.catalog import Identity
from p2pdata.catalog.access import H_SIGNATURE, sign_request
from p2pdata.web.ratelimit import Admission, SignedCallers

URL = "http://127.0.0.1:7000"
PATH = "/v1/catalog"
NOW = 1_000_000.0


class Counting(SignedCallers):
    """The real SignedCallers, counting the requests whose signature it checks and its reads of
    the clusters it knows (the trust store, in the daemon)."""

    checked = 0
    reads = 0

    def __init__(self, cluster_id: str, known: Callable[[str, bytes], bool]) -> None:
        def counted(cluster: str, key: bytes) -> bool:
            self.reads += 1
            return known(cluster, key)

        super().__init__(lambda: (URL,), cluster_id, counted)

    def proves(self, cluster: str, method: str, path: str, headers: Mapping[str, str], now: float) -> bool:
        self.checked += 1
        return super().proves(cluster, method, path, headers, now)


def setup(per_minute: int = 60) -> tuple[Admission, Counting, Identity]:
    owner, peer = Identity.generate(), Identity.generate()
    callers = Counting(owner.cluster_id, lambda cluster, key: cluster == peer.cluster_id)
    return Admission(per_minute, callers), callers, peer


def signed(peer: Identity) -> dict[str, str]:
    return sign_request(peer, "GET", PATH, URL, now=int(NOW), url=URL)


def admit(admission: Admission, headers: Mapping[str, str], address: str = "10.0.0.1") -> bool:
    return admission.admit(address, "GET", PATH, headers, now=0.0, wall=NOW)


def test_an_address_within_its_budget_is_let_in_without_a_signature_check():
    admission, callers, peer = setup()
    burst = int(admission.addresses.burst)
    assert all(admit(admission, signed(peer)) for _ in range(burst))
    assert callers.checked == 0


def test_an_address_over_its_budget_is_refused_before_any_signature_check():
    admission, callers, peer = setup()
    forged = {**signed(peer), H_SIGNATURE: signed(Identity.generate())[H_SIGNATURE]}
    while admit(admission, {}):  # unsigned requests use the address's budget up
        pass
    assert not admit(admission, {})
    assert callers.checked == 0  # unsigned: no claim to check
    refused = 0
    for _ in range(100):  # forged claims of the known cluster: a bounded number of checks
        refused += not admit(admission, forged)
    assert refused == 100
    assert 0 < callers.checked == int(admission.checks.burst)
    assert not admit(admission, signed(peer))  # its proofs are spent too: refused unchecked
    assert callers.checked == int(admission.checks.burst)


def test_a_known_cluster_past_its_addresss_budget_is_counted_on_its_own():
    admission, callers, peer = setup()
    while admit(admission, {}):  # a flood from the address the peer shares
        pass
    assert admit(admission, signed(peer))
    assert callers.checked == 1 and callers.reads == 1  # what we know of its claim read once
    assert not admit(admission, signed(Identity.generate()))  # a stranger: no claim worth a check
    assert callers.checked == 1
    assert admit(admission, signed(peer), address="10.0.0.2")  # another address: its own budget
    assert callers.checked == 1


def test_a_request_proves_only_the_cluster_that_signed_it():
    _, callers, peer = setup()
    assert not callers.proves(Identity.generate().cluster_id, "GET", PATH, signed(peer), NOW)
    assert callers.proves(peer.cluster_id, "GET", PATH, signed(peer), NOW)
