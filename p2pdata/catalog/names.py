"""Publishers' human names: shown beside cluster ids, accepted in place of them in references.

A name is only a convenience: the cluster id is what is checked. The label the user gave
a publisher (`p2pdata trust add ID --name lab-a`) wins over the name a peer gives itself,
so a stranger calling itself `lab-a` cannot take the name of a labelled publisher; a name
that still leads to two clusters is refused as ambiguous, listing their ids.
"""

from __future__ import annotations

from collections.abc import Mapping

from p2pdata.catalog.manifest import parse_ref
from p2pdata.catalog.trust import CLUSTER_ID
from p2pdata.errors import Ambiguous, NotFound


class PublisherNames:
    def __init__(
        self,
        own: tuple[str, str],
        labels: Mapping[str, str | None],
        claimed: Mapping[str, str],
    ) -> None:
        """`own` is (our cluster id, our name); `labels` the trust store's names by cluster id;
        `claimed` the names peers gave themselves, by cluster id."""
        self._labels = {cluster: name for cluster, name in labels.items() if name}
        self._labels.setdefault(own[0], own[1])
        self._claimed = {c: n for c, n in claimed.items() if n and c not in self._labels}

    def of(self, cluster_id: str | None) -> str | None:
        if cluster_id is None:
            return None
        return self._labels.get(cluster_id) or self._claimed.get(cluster_id)

    def label(self, cluster_id: str) -> str:
        """What to write in a reference for this publisher: its name when that name leads
        back to it alone, else its id."""
        name = self.of(cluster_id)
        try:
            return name if name and self.cluster(name) == cluster_id else cluster_id
        except Ambiguous:
            return cluster_id

    def as_dict(self) -> dict[str, str]:
        return {**self._claimed, **self._labels}

    def cluster(self, name_or_id: str) -> str:
        """The cluster id a publisher name (or id) stands for."""
        if name_or_id in self._labels or name_or_id in self._claimed:
            return name_or_id  # already an id we know
        for names in (self._labels, self._claimed):
            ids = sorted(cluster for cluster, name in names.items() if name == name_or_id)
            if len(ids) > 1:
                raise Ambiguous(
                    f"publisher name {name_or_id!r} is used by {len(ids)} clusters ({', '.join(ids)}); "
                    "use the cluster id, or label one with `p2pdata trust add ID --name NAME`"
                )
            if ids:
                return ids[0]
        if CLUSTER_ID.fullmatch(name_or_id):
            return name_or_id
        raise NotFound(f"no publisher named {name_or_id!r} (see `p2pdata peers` and `p2pdata trust list`)")

    def ref(self, ref: str) -> str:
        """`lab-a/taxi-trips@1` → `<cluster id>/taxi-trips@1`; refs without a publisher unchanged."""
        cluster, _, rest = ref.rpartition("/")
        parse_ref(ref)  # a malformed ref fails with the usual message
        return f"{self.cluster(cluster)}/{rest}" if cluster else ref
