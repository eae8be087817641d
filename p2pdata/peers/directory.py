"""The peer directory: what each peer said of itself at its last good sync.

Who it is (`PeerInfo`: cluster id, key, torrent endpoints), which manifests it seeds, the
catalog ETag we hold from it, and which peers failed their last sync. The sync loop feeds
it; fetches (where to swarm from) and the restricted glue (whom to ask for a certificate)
read it. Plain: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from p2pdata.errors import NotFound
from p2pdata.peers.client import PeerInfo

Endpoint = tuple[str, int]


class PeerDirectory:
    def __init__(self) -> None:
        self._info: dict[str, PeerInfo] = {}  # peer url -> what /v1/info said
        self._have: dict[str, set[str]] = {}  # peer url -> manifest ids it seeds
        self._etags: dict[str, str] = {}  # peer url -> catalog ETag held
        self._unreachable: set[str] = set()  # peer urls whose last sync failed

    # ---- what the sync loop reports ---------------------------------------------------------

    def answered(self, url: str, info: PeerInfo) -> None:
        self._info[url] = info
        self._unreachable.discard(url)

    def seeds(self, url: str, have: Iterable[str]) -> None:
        self._have[url] = set(have)

    def catalog_held(self, url: str, etag: str) -> None:
        self._etags[url] = etag

    def catalog_dropped(self, url: str) -> None:
        """Its catalog was refused: ask for the whole of it next time."""
        self._etags.pop(url, None)

    def drop(self, url: str, *, unreachable: bool = False) -> None:
        """Forget what a peer said of itself: no source, no owner to ask, until it answers again."""
        self._info.pop(url, None)
        self._have.pop(url, None)
        if unreachable:
            self._unreachable.add(url)
        else:
            self._unreachable.discard(url)

    def forget(self, url: str) -> None:
        """A removed peer: nothing of it is kept."""
        self.drop(url)
        self._etags.pop(url, None)

    # ---- what fetches and the restricted glue read ------------------------------------------

    def etag(self, url: str) -> str | None:
        return self._etags.get(url)

    def info(self, url: str) -> PeerInfo | None:
        return self._info.get(url)

    def infos(self) -> list[PeerInfo]:
        return list(self._info.values())

    def knows_key(self, key: bytes) -> bool:
        """Some peer we sync with proved it holds this cluster key (anyone can claim one)."""
        return any(info.proven and info.public_key == key for info in self._info.values())

    def owner(self, cluster_id: str) -> tuple[str, bytes]:
        """The peer API URL and public key of cluster `cluster_id`: only a URL where it proved
        its key (never an impostor claiming its id and relaying our signed requests)."""
        for url, info in self._info.items():
            if info.cluster_id == cluster_id and info.proven:
                return url, info.public_key
        raise NotFound(f"the owner {cluster_id} of this restricted dataset is not among our "
                       "reachable peers")

    def seeders(self, manifest_ids: set[str]) -> list[Endpoint]:
        """Torrent endpoints of every peer seeding one of `manifest_ids` (the same files)."""
        found: list[Endpoint] = []
        for url, have in self._have.items():
            if have & manifest_ids and url in self._info:
                found.extend(self._info[url].torrent_endpoints)
        return found

    def seeding(self, manifest_ids: set[str]) -> list[str]:
        """Peer API URLs of the peers seeding one of `manifest_ids` (their trackers list them)."""
        return sorted(url for url, have in self._have.items() if have & manifest_ids and url in self._info)

    def ssl_seeders(self, manifest_id: str, owner: str) -> list[Endpoint]:
        """SSL torrent endpoints of every peer that has this restricted dataset, owner included."""
        found: list[Endpoint] = []
        for url, have in self._have.items():
            info = self._info.get(url)
            if info is not None and (manifest_id in have or info.cluster_id == owner):
                found.extend(info.ssl_torrent_endpoints)
        return found

    def unreachable(self) -> list[str]:
        """Peers whose last sync failed: they may have what we want, we cannot tell."""
        return sorted(self._unreachable)
